"""The lifecycle of work: one small, pure state machine (no I/O, no clock).

The unit of work is the **tile**. A layer that is not tiled (a particle sim, an assemble) has one
tile per frame covering the whole frame, so the dispatcher, the database and the reports deal with
one kind of unit. Frames, layers and jobs never hold a state of their own: their state is a
*rollup* of their children's states, computed by :func:`rollup`.

Transitions are named by intent and return a :class:`Transition` with a reason that is stored
with the change. The dispatcher and the API call these functions; nobody sets a state by hand.

Tile lifecycle::

    WAITING --dependencies_met--> PENDING --dispatched--> RUNNING --succeeded--> DONE
       |                             ^                      |
       |                             +---attempt_failed-----+  (attempts left)
       |                             +---requeued-----------+  (dispatcher restart; not counted)
       +--upstream_failed--> CANCELLED                      +--attempt_failed--> FAILED (none left)
                                     +---preempted----------+  (rush reclaim; not counted)

    RUNNING --inputs_lost--> WAITING     an assemble whose input tiles proved corrupt
    RUNNING --node_lost--> PENDING       its Ray node died (not counted; the node is recorded)
    DONE --output_lost--> PENDING|FAILED a render tile whose file proved corrupt
    FAILED|CANCELLED --retried--> PENDING|WAITING   a user asked for it again (new budget)
    WAITING|PENDING|RUNNING --cancelled--> CANCELLED  a user cancelled the job

Job control (pause, resume, cancel, retry, priority) is a second, job-level set of rules
(:func:`job_control`): each checks that the action makes sense for the job as it is and returns a
:class:`JobChange` whose reason goes into the job's event stream; the tile moves it causes go
through the tile rules above.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class TileState(StrEnum):
    """State of one tile (the unit of work), and the rollup state of frames, layers and jobs."""

    WAITING = "waiting"
    """Its frame's dependencies (an upstream layer's same frame) are not done yet."""
    PENDING = "pending"
    """Ready to run; waits for the dispatcher to place it on a pool."""
    RUNNING = "running"
    """Sent to Ray; an attempt is in flight."""
    DONE = "done"
    """Finished; its output blob is recorded."""
    FAILED = "failed"
    """Failed on every allowed attempt; the reason says why."""
    CANCELLED = "cancelled"
    """Will not run: an upstream frame failed, or a user cancelled the job."""


FrameState = TileState
"""A frame's state is the rollup of its tiles' states."""
LayerState = TileState
"""A layer's state is the rollup of its frames' states."""
JobState = TileState
"""A job's state is the rollup of its layers' states."""

TERMINAL: frozenset[TileState] = frozenset({TileState.DONE, TileState.FAILED, TileState.CANCELLED})
"""States that end a tile's work. DONE is left only when its output file proves corrupt."""

ALLOWED: frozenset[tuple[TileState, TileState]] = frozenset(
    {
        (TileState.WAITING, TileState.PENDING),
        (TileState.WAITING, TileState.CANCELLED),
        (TileState.PENDING, TileState.RUNNING),
        (TileState.PENDING, TileState.CANCELLED),
        (TileState.RUNNING, TileState.DONE),
        (TileState.RUNNING, TileState.PENDING),
        (TileState.RUNNING, TileState.FAILED),
        (TileState.RUNNING, TileState.CANCELLED),
        (TileState.RUNNING, TileState.WAITING),
        (TileState.DONE, TileState.PENDING),
        (TileState.DONE, TileState.FAILED),
        (TileState.FAILED, TileState.PENDING),
        (TileState.FAILED, TileState.WAITING),
        (TileState.CANCELLED, TileState.PENDING),
        (TileState.CANCELLED, TileState.WAITING),
    }
)
"""Every legal ``(from, to)`` pair of the tile lifecycle."""


class IllegalTransition(ValueError):
    """A rule was asked to move a tile along an edge the lifecycle does not have."""


class Attempt(StrEnum):
    """What a transition does to the tile's attempt count (``attempts``, ``forgiven``).

    Attempt numbers only grow while attempts are recorded, so usage records stay unique per
    (tile, attempt); the budget (``max_attempts``) counts ``attempts - forgiven``.
    """

    NONE = "none"
    START = "start"
    """A new attempt begins: ``attempts + 1``."""
    COUNT = "count"
    """The attempt ends and counts against the budget."""
    FORGIVE = "forgive"
    """The attempt ends, is recorded, but does not count (its node died, its input was bad)."""
    ERASE = "erase"
    """The attempt is undone, never recorded (preempted, or its dispatcher is gone)."""
    RESET = "reset"
    """A fresh budget (a user's retry): every attempt so far is forgiven."""


@dataclass(frozen=True)
class Transition:
    """One state change, with the reason stored beside it and its effect on the attempts."""

    before: TileState
    after: TileState
    reason: str
    attempt: Attempt = Attempt.NONE

    def __post_init__(self) -> None:
        if (self.before, self.after) not in ALLOWED:
            raise IllegalTransition(f"a tile cannot go from {self.before} to {self.after}")

    @property
    def counts_attempt(self) -> bool:
        """True when this change ends an attempt that counts against ``max_attempts``."""
        return self.attempt is Attempt.COUNT

    def attempts_after(self, attempts: int, forgiven: int) -> tuple[int, int]:
        """``(attempts, forgiven)`` of the tile once this change is applied."""
        if self.attempt is Attempt.START:
            return attempts + 1, forgiven
        if self.attempt is Attempt.FORGIVE:
            return attempts, forgiven + 1
        if self.attempt is Attempt.ERASE:
            return attempts - 1, forgiven
        if self.attempt is Attempt.RESET:
            return attempts, attempts
        return attempts, forgiven


def on_dependencies_met(state: TileState) -> Transition:
    """Upstream frames are done: the tile may run."""
    return Transition(state, TileState.PENDING, reason="dependencies met")


def on_upstream_failed(state: TileState, *, upstream: str) -> Transition:
    """An upstream frame failed for good, so this tile can never get its input."""
    return Transition(state, TileState.CANCELLED, reason=f"upstream {upstream} failed")


def on_dispatched(state: TileState, *, pool: str) -> Transition:
    """The dispatcher sent the tile to Ray on ``pool``."""
    return Transition(
        state, TileState.RUNNING, reason=f"dispatched to pool {pool}", attempt=Attempt.START
    )


def on_succeeded(state: TileState) -> Transition:
    """The attempt returned an output that passed its checks."""
    return Transition(state, TileState.DONE, reason="done", attempt=Attempt.COUNT)


def on_attempt_failed(
    state: TileState, *, attempts: int, max_attempts: int, error: str
) -> Transition:
    """Requeue until attempts run out.

    Args:
        state: the tile's current state (RUNNING).
        attempts: attempts made so far, *including* the one that just failed.
        max_attempts: attempts allowed in all.
        error: one line saying what went wrong; kept in the reason.
    """
    if attempts < max_attempts:
        return Transition(
            state,
            TileState.PENDING,
            reason=f"attempt {attempts} of {max_attempts} failed, retrying: {error}",
            attempt=Attempt.COUNT,
        )
    return Transition(
        state, TileState.FAILED, reason=f"failed {attempts} times: {error}", attempt=Attempt.COUNT
    )


def on_out_of_memory(
    state: TileState,
    *,
    attempts: int,
    max_attempts: int,
    had_gb: float,
    next_gb: float | None,
) -> Transition:
    """The attempt ran out of memory: the next one asks for more (twice, up to a whole node).

    It counts as an attempt (the tile's own need, not the node's fault); with no more memory to
    give (``next_gb`` None: it already had a whole node) the tile fails at once, since another
    try could only end the same way.

    Args:
        state: RUNNING.
        attempts: attempts made so far, including this one.
        max_attempts: attempts allowed in all.
        had_gb: memory the attempt was granted, GiB.
        next_gb: memory the next attempt gets, or None when ``had_gb`` was a whole node.
    """
    if next_gb is None:
        return Transition(
            state,
            TileState.FAILED,
            reason=f"out of memory with a whole node's {had_gb:g} GiB: split the work into "
            "more tiles or use a pool with bigger nodes",
            attempt=Attempt.COUNT,
        )
    if attempts < max_attempts:
        return Transition(
            state,
            TileState.PENDING,
            reason=f"attempt {attempts} of {max_attempts} ran out of memory with {had_gb:g} "
            f"GiB; retrying with {next_gb:g} GiB",
            attempt=Attempt.COUNT,
        )
    return Transition(
        state,
        TileState.FAILED,
        reason=f"failed {attempts} times, the last out of memory with {had_gb:g} GiB",
        attempt=Attempt.COUNT,
    )


def on_requeued(state: TileState) -> Transition:
    """The dispatcher that sent this tile is gone (restart): run it again without counting it."""
    return Transition(
        state, TileState.PENDING, reason="requeued after dispatcher restart", attempt=Attempt.ERASE
    )


def on_preempted(state: TileState, *, why: str) -> Transition:
    """The planner stopped the tile to give its slot back (a rush job, accelerated work).

    Not a failure: no attempt is counted, and the tile runs again from the start later.
    """
    return Transition(state, TileState.PENDING, reason=why, attempt=Attempt.ERASE)


def on_inputs_lost(state: TileState, *, tiles: int) -> Transition:
    """An assemble found input tiles missing or corrupt: wait for them to be rendered again."""
    return Transition(
        state,
        TileState.WAITING,
        reason=f"{tiles} input(s) missing or corrupt; the tiles that made them run again",
        attempt=Attempt.FORGIVE,
    )


def on_output_lost(state: TileState, *, attempts: int, max_attempts: int) -> Transition:
    """A done tile's output file is missing or corrupt: that attempt failed after all."""
    if attempts < max_attempts:
        return Transition(
            state,
            TileState.PENDING,
            reason=f"output of attempt {attempts} missing or corrupt, retrying",
            attempt=Attempt.COUNT,
        )
    return Transition(
        state,
        TileState.FAILED,
        reason=f"output missing or corrupt after {attempts} attempts",
        attempt=Attempt.COUNT,
    )


def on_node_lost(state: TileState, *, node: str) -> Transition:
    """The Ray node running the attempt died: run the tile again, elsewhere, uncounted.

    The tile did nothing wrong, so no attempt is counted; the lost attempt keeps its number and
    its usage record (with the node), so attempts and usage records still match one to one.
    """
    return Transition(
        state,
        TileState.PENDING,
        reason=f"node {node or '?'} was lost; runs again",
        attempt=Attempt.FORGIVE,
    )


def on_cancelled(state: TileState, *, by: str) -> Transition:
    """A user cancelled the job."""
    return Transition(state, TileState.CANCELLED, reason=f"cancelled by {by}")


def on_retried(state: TileState, *, by: str, ready: bool) -> Transition:
    """A user retries a failed or cancelled tile: it gets a fresh budget of attempts.

    Args:
        state: FAILED or CANCELLED.
        by: who asked.
        ready: its frame's upstream is done, so it may run at once (else it waits for it).
    """
    if state not in (TileState.FAILED, TileState.CANCELLED):
        raise IllegalTransition(f"only a failed or cancelled tile is retried, not a {state} one")
    return Transition(
        state,
        TileState.PENDING if ready else TileState.WAITING,
        reason=f"retried by {by}",
        attempt=Attempt.RESET,
    )


class JobAction(StrEnum):
    """What a user may do to a whole job while it exists."""

    PAUSE = "pause"
    """Nothing new is dispatched; what runs finishes."""
    RESUME = "resume"
    CANCEL = "cancel"
    """Every unfinished tile is cancelled; running ones are stopped."""
    RETRY = "retry"
    """Failed and cancelled tiles (of some layers or frames) run again with fresh attempts."""
    PRIORITY = "priority"
    """The job's place among its studio's jobs."""
    RUSH = "rush"
    """An operator's mark (on or off): the job's tiles go first in its studio, and may preempt."""


@dataclass(frozen=True)
class JobChange:
    """A job-level change a rule allowed, with the reason kept in the job's events."""

    action: JobAction
    reason: str


def job_control(
    action: JobAction,
    *,
    state: TileState,
    paused: bool,
    by: str,
    retryable: int = 0,
    priority: int | None = None,
) -> JobChange:
    """Whether ``action`` makes sense for a job as it is now; raises IllegalTransition if not.

    Args:
        action: what the user asked.
        state: the job's rolled-up state.
        paused: whether the job is paused now.
        by: who asked (kept in the reason).
        retryable: for RETRY, how many tiles or frames the selection would retry.
        priority: for PRIORITY, the new priority.
    """
    finished = state in TERMINAL
    if action is JobAction.PAUSE:
        if finished:
            raise IllegalTransition(f"the job has already ended ({state}); nothing to pause")
        if paused:
            raise IllegalTransition("the job is already paused; resume it first")
        return JobChange(action, f"paused by {by}")
    if action is JobAction.RESUME:
        if not paused:
            raise IllegalTransition("the job is not paused")
        return JobChange(action, f"resumed by {by}")
    if action is JobAction.CANCEL:
        if finished:
            raise IllegalTransition(f"the job has already ended ({state}); nothing to cancel")
        return JobChange(action, f"cancelled by {by}")
    if action is JobAction.RETRY:
        if retryable <= 0:
            raise IllegalTransition(
                "nothing to retry: no failed or cancelled tile in the job (or in the layers and "
                "frames you named)"
            )
        return JobChange(action, f"{retryable} tile(s) or frame(s) retried by {by}")
    if action is JobAction.RUSH:
        if finished:
            raise IllegalTransition(f"the job has already ended ({state}); nothing left to rush")
        return JobChange(action, f"rush set by {by}")
    if priority is None:
        raise IllegalTransition("a priority change needs the new priority (0-100)")
    if finished:
        raise IllegalTransition(f"the job has already ended ({state}); nothing left to reorder")
    return JobChange(action, f"priority set to {priority} by {by}")


FRAME_RULES: frozenset[tuple[TileState, TileState]] = frozenset(
    {
        (TileState.WAITING, TileState.PENDING),  # planned: cut into tiles
        (TileState.WAITING, TileState.CANCELLED),  # upstream failed, or its job was cancelled
        (TileState.PENDING, TileState.CANCELLED),
        (TileState.RUNNING, TileState.CANCELLED),
        (TileState.RUNNING, TileState.WAITING),  # an input proved lost: it waits for it again
        (TileState.PENDING, TileState.WAITING),
        (TileState.FAILED, TileState.WAITING),  # retried before it was ever cut into tiles
        (TileState.CANCELLED, TileState.WAITING),
    }
)
"""The frame changes that are not a rollup of its tiles (a frame without tiles, or one whose
tiles are not the whole story); every other frame state is :func:`rollup` of its tiles."""


@dataclass(frozen=True)
class FrameChange:
    """A frame's own state change (see :data:`FRAME_RULES`), with its reason."""

    before: TileState
    after: TileState
    reason: str

    def __post_init__(self) -> None:
        if (self.before, self.after) not in FRAME_RULES:
            raise IllegalTransition(
                f"a frame cannot go from {self.before} to {self.after} by itself ({self.reason})"
            )


def frame_planned(state: TileState) -> FrameChange:
    """Its upstream is done and it was cut into tiles, all pending."""
    return FrameChange(state, TileState.PENDING, "planned")


def frame_upstream_failed(state: TileState, *, upstream: str) -> FrameChange:
    return FrameChange(state, TileState.CANCELLED, f"upstream {upstream} failed")


def frame_cancelled(state: TileState, *, by: str) -> FrameChange:
    return FrameChange(state, TileState.CANCELLED, f"cancelled by {by}")


def frame_inputs_lost(state: TileState) -> FrameChange:
    """A tile of the frame found an input gone: the frame waits for it to be made again."""
    return FrameChange(state, TileState.WAITING, "an input is made again")


def frame_retried(state: TileState, *, by: str) -> FrameChange:
    """A frame that never had tiles (failed or cancelled before) is retried: it waits again."""
    return FrameChange(state, TileState.WAITING, f"retried by {by}")


def rollup(counts: Mapping[TileState, int]) -> TileState:
    """The parent's state from its children's state counts.

    Rules, in order: no children or all done -> DONE; all finished with some failed -> FAILED;
    all finished with some cancelled -> CANCELLED; anything running, or a mix of finished and
    unfinished -> RUNNING (a failure shows in the counts, but siblings still run); some pending
    -> PENDING; otherwise WAITING.
    """
    live = {state: n for state, n in counts.items() if n > 0}
    total = sum(live.values())
    if total == 0 or live.get(TileState.DONE, 0) == total:
        return TileState.DONE
    if all(state in TERMINAL for state in live):
        return TileState.FAILED if TileState.FAILED in live else TileState.CANCELLED
    if TileState.RUNNING in live or any(state in TERMINAL for state in live):
        return TileState.RUNNING
    if TileState.PENDING in live:
        return TileState.PENDING
    return TileState.WAITING
