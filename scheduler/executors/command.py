"""The command executor: one task of an OpenJD step, run by ``openjd-sessions``.

Each attempt rebuilds the job from the template and parameter values the job stored
(:func:`farm.openjd.build_job`), takes its step's task at the frame's index in the parameter
space, and runs it in a fresh ``openjd.sessions.Session``: the job's environments, then the
step's, are entered in order, the task runs, and the environments are exited in reverse
order whatever happened (a session per task: simple, and correct because a failed action
ends its session and the next task gets a fresh one). Embedded files, format strings,
``openjd_env`` lines and PATH parameters are the session's work, as the specification says.

A cancel (``ray.cancel``, a preemption) arrives as ``KeyboardInterrupt``: the running action
is cancelled the way its template says (notify, then terminate after the grace period), the
environments are exited, and the interrupt goes on. Everything the session logged (the
commands' stdout and stderr included) is stored as a blob, the tile's log, success or not.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from datetime import timedelta
from typing import Any

from farm import schemas
from farm.storage import BlobStore
from scheduler.executors.base import ExecutorOutput, TileTask

POLL_S = 0.02
"""How often the session's state is read while an action runs."""
CANCEL_GRACE_S = 30.0
"""Longest wait for a cancelled action to stop (its template's notify period, capped)."""
LIVE_EVERY_S = 0.5
"""How often a running task's new log lines go to the live-log actor."""
MAX_LOG_BYTES = 16 << 20
"""A task's log keeps its last this many bytes (a runaway print loop must not fill the store)."""


class TaskFailed(RuntimeError):
    """The task's action failed; ``outputs`` still holds its log."""

    def __init__(self, message: str, outputs: dict[str, str]) -> None:
        super().__init__(message)
        self.outputs = outputs


class _Capture(logging.Handler):
    """Collects the log lines of one session (openjd-sessions tags each with its id) and
    sends the new ones, every :data:`LIVE_EVERY_S`, to the farm's live-log actor, so
    ``farm log`` shows a running task's output (``executors.livelog``)."""

    def __init__(self, session_id: str, tile_id: int = 0, attempt: int = 0) -> None:
        super().__init__(logging.INFO)
        self.session_id = session_id
        self.lines: list[str] = []
        self.size = 0
        self._lock = threading.Lock()
        self._tile = (tile_id, attempt)
        self._sent = 0
        self._live: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start_live(self) -> None:
        from scheduler.executors import livelog

        self._live = livelog.actor()
        if self._live is not None:
            self._thread = threading.Thread(target=self._pump, name="delta-live-log", daemon=True)
            self._thread.start()

    def stop_live(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        if self._live is not None:
            with contextlib.suppress(Exception):
                self._live.close.remote(*self._tile)

    def _pump(self) -> None:
        while not self._stop.wait(LIVE_EVERY_S):
            with self._lock:
                fresh = self.lines[self._sent :] if self._sent <= len(self.lines) else self.lines
                self._sent = len(self.lines)
            if fresh:
                with contextlib.suppress(Exception):  # best effort: the blob is the record
                    self._live.append.remote(*self._tile, "\n".join(fresh) + "\n")

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "session_id", None) != self.session_id:
            return
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        line = f"{stamp} {record.getMessage()}"
        with self._lock:
            self.lines.append(line)
            self.size += len(line) + 1
            while self.size > MAX_LOG_BYTES and len(self.lines) > 1:
                self.size -= len(self.lines.pop(0)) + 1
                self._sent = max(0, self._sent - 1)

    def text(self) -> str:
        with self._lock:
            return "\n".join(self.lines) + "\n"


def run_command(task: TileTask, store: BlobStore) -> ExecutorOutput:
    from openjd.model import StepParameterSpaceIterator
    from openjd.sessions import LOG, Session

    from farm.openjd import build_job

    assert task.openjd is not None, "a command tile carries its job's template"
    source = schemas.OpenJDSource.model_validate(task.openjd)
    environments, values, built = build_job(source)
    step_name = task.layer_spec["openjd_step"]
    step = next(s for s in built.job.steps if s.name == step_name)
    space = StepParameterSpaceIterator(space=step.parameterSpace)
    parameters = space[task.frame - 1]
    session_id = f"job{task.job_id}-{task.layer}-{task.frame}-a{task.attempt}"
    capture = _Capture(session_id, task.tile_id, task.attempt)
    LOG.addHandler(capture)
    capture.start_live()
    entered: list[Any] = []
    failure: str | None = None
    try:
        with Session(
            session_id=session_id,
            job_parameter_values=values,
            job_name=built.job.name,
            os_env_vars={"DELTA_JOB": str(task.job_id), "DELTA_TASK": str(task.frame)},
        ) as session:
            step_table = built.step_symbol_tables.get(step.name)
            scopes = [
                *((t.environment, built.job_symbol_table, None) for t in environments),
                *((env, built.job_symbol_table, None) for env in built.job.jobEnvironments or ()),
                *((env, step_table, step.name) for env in step.stepEnvironments or ()),
            ]
            for environment, table, in_step in scopes:
                identifier = session.enter_environment(
                    environment=environment, step_name=in_step, resolved_symtab=table
                )
                entered.append((identifier, table))
                failure = _wait(session, f"entering environment {environment.name!r}")
                if failure:
                    break
            if failure is None:
                session.run_task(
                    step_script=step.script,
                    task_parameter_values=parameters,
                    step_name=step.name,
                    resolved_symtab=step_table,
                )
                failure = _wait(session, f"task {task.frame} of step {step.name!r}")
            for identifier, table in reversed(entered):
                session.exit_environment(identifier=identifier, resolved_symtab=table)
                exit_failure = _wait(session, "exiting an environment")
                failure = failure or exit_failure
    finally:
        LOG.removeHandler(capture)
        capture.stop_live()
        log_hash = store.put_bytes(capture.text().encode()).content_hash
    outputs = {"log_hash": log_hash}
    if failure is not None:
        raise TaskFailed(failure, outputs)
    return ExecutorOutput(output_hash=None, outputs=outputs)


def _wait(session: Any, doing: str) -> str | None:
    """Wait for the session's running action; None when it succeeded, else why it did not.

    A ``KeyboardInterrupt`` (Ray's cancel) cancels the action as its template says, waits for
    it to stop, and is raised again.
    """
    from openjd.sessions import ActionState, SessionState

    try:
        while session.state == SessionState.RUNNING:
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        if session.state == SessionState.RUNNING:
            session.cancel_action()
            deadline = time.monotonic() + CANCEL_GRACE_S
            while session.state in (SessionState.RUNNING, SessionState.CANCELING):
                if time.monotonic() > deadline:
                    session.cancel_action(time_limit=timedelta(0))
                    deadline = float("inf")
                time.sleep(POLL_S)
        raise
    status = session.action_status
    if status is None or status.state == ActionState.SUCCESS:
        return None
    why = status.fail_message or (
        f"exit code {status.exit_code}" if status.exit_code is not None else status.state.value
    )
    return f"{doing} failed: {why}"
