"""Job-level rules (pause, resume, cancel, retry), frame rules and attempt effects of
``farm.states``: each allowed change says why, each refused one says what is wrong."""

from __future__ import annotations

import pytest

from farm.states import (
    Attempt,
    IllegalTransition,
    JobAction,
    frame_cancelled,
    frame_inputs_lost,
    frame_planned,
    frame_retried,
    job_control,
    on_attempt_failed,
    on_dispatched,
    on_inputs_lost,
    on_node_lost,
    on_preempted,
    on_requeued,
    on_retried,
    on_succeeded,
)
from farm.states import TileState as S


def test_attempt_numbers_only_grow_while_recorded_and_the_budget_counts_what_counts() -> None:
    attempts, forgiven = 0, 0
    for change in (
        on_dispatched(S.PENDING, pool="cpu"),  # 1 starts
        on_node_lost(S.RUNNING, node="n1"),  # 1 forgiven: its node died
        on_dispatched(S.PENDING, pool="cpu"),  # 2 starts
        on_inputs_lost(S.RUNNING, tiles=1),  # 2 forgiven: its input was gone
        on_dispatched(S.PENDING, pool="cpu"),  # 3 starts
        on_preempted(S.RUNNING, why="rush"),  # 3 erased: never recorded
        on_dispatched(S.PENDING, pool="cpu"),  # 3 again
        on_attempt_failed(S.RUNNING, attempts=1, max_attempts=2, error="boom"),  # counted
    ):
        attempts, forgiven = change.attempts_after(attempts, forgiven)
    assert (attempts, forgiven) == (3, 2)  # one attempt of two used
    attempts, forgiven = on_attempt_failed(
        S.RUNNING, attempts=attempts - forgiven, max_attempts=2, error="x"
    ).attempts_after(attempts, forgiven)
    retried = on_retried(S.FAILED, by="ana", ready=True)
    assert retried.attempt is Attempt.RESET and retried.after == S.PENDING
    assert retried.attempts_after(attempts, forgiven) == (3, 3)  # a fresh budget
    assert on_retried(S.CANCELLED, by="ana", ready=False).after == S.WAITING
    assert on_requeued(S.RUNNING).attempt is Attempt.ERASE
    assert on_succeeded(S.RUNNING).counts_attempt
    assert not on_node_lost(S.RUNNING, node="n1").counts_attempt
    assert "n1" in on_node_lost(S.RUNNING, node="n1").reason


def test_tile_rules_refuse_edges_the_lifecycle_does_not_have() -> None:
    with pytest.raises(IllegalTransition):
        on_retried(S.DONE, by="ana", ready=True)
    with pytest.raises(IllegalTransition):
        on_node_lost(S.PENDING, node="n1")


def test_frame_rules_name_their_reason_and_refuse_the_rest() -> None:
    assert frame_planned(S.WAITING).after == S.PENDING
    assert frame_cancelled(S.RUNNING, by="ana").reason == "cancelled by ana"
    assert frame_inputs_lost(S.PENDING).after == S.WAITING
    assert frame_retried(S.FAILED, by="ana").after == S.WAITING
    with pytest.raises(IllegalTransition, match="frame cannot go from done to cancelled"):
        frame_cancelled(S.DONE, by="ana")
    with pytest.raises(IllegalTransition):
        frame_planned(S.PENDING)


@pytest.mark.parametrize(
    ("action", "state", "paused", "retryable", "refused"),
    [
        (JobAction.PAUSE, S.RUNNING, False, 0, None),
        (JobAction.PAUSE, S.RUNNING, True, 0, "already paused"),
        (JobAction.PAUSE, S.DONE, False, 0, "already ended"),
        (JobAction.RESUME, S.RUNNING, True, 0, None),
        (JobAction.RESUME, S.RUNNING, False, 0, "not paused"),
        (JobAction.CANCEL, S.PENDING, True, 0, None),
        (JobAction.CANCEL, S.CANCELLED, False, 0, "already ended"),
        (JobAction.RETRY, S.FAILED, False, 3, None),
        (JobAction.RETRY, S.RUNNING, False, 1, None),  # a failed tile while others run
        (JobAction.RETRY, S.DONE, False, 0, "nothing to retry"),
    ],
)
def test_job_control_allows_what_makes_sense_and_says_why_not(
    action: JobAction, state: S, paused: bool, retryable: int, refused: str | None
) -> None:
    if refused is None:
        change = job_control(action, state=state, paused=paused, by="ana", retryable=retryable)
        assert change.action is action and "by ana" in change.reason
    else:
        with pytest.raises(IllegalTransition, match=refused):
            job_control(action, state=state, paused=paused, by="ana", retryable=retryable)


def test_priority_and_rush_are_rules_too_and_refuse_a_job_that_ended() -> None:
    assert job_control(JobAction.PRIORITY, state=S.RUNNING, paused=False, by="ana", priority=80)
    assert job_control(JobAction.RUSH, state=S.PENDING, paused=True, by="ops").reason == (
        "rush set by ops"
    )
    with pytest.raises(IllegalTransition, match=r"already ended \(done\); nothing left to rush"):
        job_control(JobAction.RUSH, state=S.DONE, paused=False, by="ops")
    with pytest.raises(IllegalTransition, match="nothing left to reorder"):
        job_control(JobAction.PRIORITY, state=S.FAILED, paused=False, by="ana", priority=80)
    with pytest.raises(IllegalTransition, match="needs the new priority"):
        job_control(JobAction.PRIORITY, state=S.RUNNING, paused=False, by="ana")


def test_out_of_memory_asks_for_more_and_fails_when_a_node_is_not_enough() -> None:
    from farm.states import TileState, on_out_of_memory

    retry = on_out_of_memory(TileState.RUNNING, attempts=1, max_attempts=3, had_gb=4, next_gb=8)
    assert retry.after == TileState.PENDING and retry.counts_attempt
    assert retry.reason == "attempt 1 of 3 ran out of memory with 4 GiB; retrying with 8 GiB"
    last = on_out_of_memory(TileState.RUNNING, attempts=3, max_attempts=3, had_gb=16, next_gb=32)
    assert last.after == TileState.FAILED
    assert last.reason == "failed 3 times, the last out of memory with 16 GiB"
    whole = on_out_of_memory(
        TileState.RUNNING, attempts=1, max_attempts=3, had_gb=128, next_gb=None
    )
    assert whole.after == TileState.FAILED and "whole node's 128 GiB" in whole.reason
