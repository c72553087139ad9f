"""The tile lifecycle and rollups, as tables, plus a randomised walk of whole tiles."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from farm.states import (
    ALLOWED,
    TERMINAL,
    IllegalTransition,
    TileState,
    Transition,
    on_attempt_failed,
    on_dependencies_met,
    on_dispatched,
    on_inputs_lost,
    on_node_lost,
    on_output_lost,
    on_preempted,
    on_requeued,
    on_succeeded,
    on_upstream_failed,
    rollup,
)

S = TileState


@pytest.mark.parametrize(
    ("transition", "before", "after"),
    [
        (on_dependencies_met(S.WAITING), S.WAITING, S.PENDING),
        (on_dispatched(S.PENDING, pool="cpu"), S.PENDING, S.RUNNING),
        (on_succeeded(S.RUNNING), S.RUNNING, S.DONE),
        (on_attempt_failed(S.RUNNING, attempts=1, max_attempts=3, error="x"), S.RUNNING, S.PENDING),
        (on_attempt_failed(S.RUNNING, attempts=3, max_attempts=3, error="x"), S.RUNNING, S.FAILED),
        (on_requeued(S.RUNNING), S.RUNNING, S.PENDING),
        (on_upstream_failed(S.WAITING, upstream="sim frame"), S.WAITING, S.CANCELLED),
        (on_inputs_lost(S.RUNNING, tiles=2), S.RUNNING, S.WAITING),
        (on_output_lost(S.DONE, attempts=1, max_attempts=3), S.DONE, S.PENDING),
        (on_output_lost(S.DONE, attempts=3, max_attempts=3), S.DONE, S.FAILED),
    ],
)
def test_rules_move_tiles_along_the_lifecycle(
    transition: Transition, before: TileState, after: TileState
) -> None:
    assert (transition.before, transition.after) == (before, after)
    assert transition.reason


def test_failure_reason_keeps_the_error_and_counts() -> None:
    change = on_attempt_failed(S.RUNNING, attempts=3, max_attempts=3, error="disk full")
    assert change.reason == "failed 3 times: disk full"
    assert change.counts_attempt
    assert not on_requeued(S.RUNNING).counts_attempt


@pytest.mark.parametrize("before", [S.WAITING, S.DONE, S.FAILED, S.CANCELLED])
def test_dispatching_a_tile_that_is_not_pending_is_illegal(before: TileState) -> None:
    with pytest.raises(IllegalTransition):
        on_dispatched(before, pool="cpu")


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ({}, S.DONE),
        ({S.DONE: 4}, S.DONE),
        ({S.DONE: 3, S.FAILED: 1}, S.FAILED),
        ({S.RUNNING: 1, S.FAILED: 1}, S.RUNNING),
        ({S.WAITING: 1, S.FAILED: 1}, S.RUNNING),
        ({S.FAILED: 1, S.CANCELLED: 2, S.DONE: 1}, S.FAILED),
        ({S.DONE: 3, S.CANCELLED: 1}, S.CANCELLED),
        ({S.DONE: 1, S.PENDING: 3}, S.RUNNING),
        ({S.RUNNING: 1, S.WAITING: 3}, S.RUNNING),
        ({S.PENDING: 2, S.WAITING: 2}, S.PENDING),
        ({S.WAITING: 5}, S.WAITING),
        ({S.WAITING: 0, S.DONE: 2}, S.DONE),
    ],
)
def test_rollup(counts: dict[TileState, int], expected: TileState) -> None:
    assert rollup(counts) == expected


def _walk(rng: random.Random, *, max_attempts: int) -> tuple[TileState, str, int]:
    """One tile from PENDING to its end through the rules, events drawn at random.

    Checks on the way that every change is a legal edge, that the attempts the rules count
    (``counts_attempt``, one per attempt ended) are the tile's own count (``attempts_after``),
    and that they never pass ``max_attempts``. Returns the end state, its reason, and the
    successes that still stand (a lost output voids its success).
    """
    state, attempts, forgiven = S.PENDING, 0, 0
    counted = successes = 0
    reason = ""
    for _step in range(500):
        if state in TERMINAL and not (state is S.DONE and rng.random() < 0.2):
            return state, reason, successes  # a done tile's output is found lost 1 time in 5
        budget = attempts - forgiven  # what the dispatcher passes: the attempts that count
        if state is S.WAITING:
            change = on_dependencies_met(state)
        elif state is S.PENDING:
            change = on_dispatched(state, pool="cpu")
        elif state is S.DONE:
            change = on_output_lost(state, attempts=budget, max_attempts=max_attempts)
            successes -= 1
        else:
            event = rng.choice(["ok", "fail", "fail", "requeue", "preempt", "node", "inputs"])
            if event == "ok":
                change = on_succeeded(state)
                successes += 1
            elif event == "fail":
                change = on_attempt_failed(
                    state, attempts=budget, max_attempts=max_attempts, error="boom"
                )
            elif event == "requeue":
                change = on_requeued(state)
            elif event == "preempt":
                change = on_preempted(state, why="rush job")
            elif event == "node":
                change = on_node_lost(state, node="n1")
            else:
                change = on_inputs_lost(state, tiles=1)
        assert (change.before, change.after) in ALLOWED
        assert change.reason
        if change.counts_attempt and change.before is S.RUNNING:
            counted += 1
        attempts, forgiven = change.attempts_after(attempts, forgiven)
        state, reason = change.after, change.reason
        in_flight = 1 if state is S.RUNNING else 0
        assert counted == attempts - forgiven - in_flight
        assert counted <= max_attempts
    raise AssertionError(f"the walk did not end in 500 steps (tile {state})")


def test_random_walks_end_with_one_success_or_a_reasoned_failure() -> None:
    """Invariant: every tile ends DONE exactly once, or FAILED with a reason, never in between."""
    rng = random.Random(1234)
    max_attempts = 3
    ends: Counter[TileState] = Counter()
    for _ in range(500):
        state, reason, successes = _walk(rng, max_attempts=max_attempts)
        ends[state] += 1
        if state is S.DONE:
            assert successes == 1
        else:
            assert state is S.FAILED
            assert successes == 0
            assert reason in (
                f"failed {max_attempts} times: boom",
                f"output missing or corrupt after {max_attempts} attempts",
            )
    # Both endings happen, so the checks above ran on each.
    assert ends[S.DONE] > 50
    assert ends[S.FAILED] > 50
