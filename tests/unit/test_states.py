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
    on_output_lost,
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


def test_random_walks_end_with_one_success_or_a_reasoned_failure() -> None:
    """Invariant: every tile ends DONE exactly once, or FAILED with a reason, never in between."""
    rng = random.Random(1234)
    max_attempts = 3
    for _ in range(500):
        state, attempts, successes, reason = S.PENDING, 0, 0, ""
        for _step in range(50):
            if state in TERMINAL:
                break
            if state is S.PENDING:
                change = on_dispatched(state, pool="cpu")
                attempts += 1
            else:
                event = rng.choice(["ok", "fail", "fail", "requeue"])
                if event == "ok":
                    change = on_succeeded(state)
                    successes += 1
                elif event == "fail":
                    change = on_attempt_failed(
                        state, attempts=attempts, max_attempts=max_attempts, error="boom"
                    )
                else:
                    change = on_requeued(state)
                    attempts -= 1
            assert (change.before, change.after) in ALLOWED
            state, reason = change.after, change.reason
        assert state in TERMINAL
        assert (state is S.DONE and successes == 1) or (
            state is S.FAILED and successes == 0 and "failed 3 times" in reason
        )
    assert Counter([S.DONE]) == Counter([S.DONE])
