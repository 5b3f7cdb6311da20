"""The runtime that runs graphs in this process, durable in a checkpointer (SQLite, PostgreSQL).

One process at a time runs a thread: each run and resume holds the thread's lock
(``langgraph_fanout.persistence.thread_lock``) and stops at once if another process takes it.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Coroutine
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from langgraph_fanout.cli.arguments import (
    EXIT_TAKEN_OVER,
    UsageError,
    check_run_models,
    run_context,
)
from langgraph_fanout.cli.output import raised_limits, stderr
from langgraph_fanout.cli.review import Reviewer, ReviewStopped
from langgraph_fanout.cli.runtime import Finished, RunFailed, RunLost, Runtime, SpendingPaused
from langgraph_fanout.persistence.checkpointer import aopen_checkpointer
from langgraph_fanout.persistence.run_records import RunRecord, find_run, recent_runs, thread_config
from langgraph_fanout.persistence.thread_lock import HeldThread, ThreadTakenOverError, thread_lock
from langgraph_fanout.persistence.urls import db_url, exists, has_secret, redact
from langgraph_fanout.run_status import RunStatus
from langgraph_fanout.workflows import WORKFLOWS, Workflow
from state.spending import NOTHING_SPENT, counts, is_spending_pause

if TYPE_CHECKING:
    from langgraph.types import StateSnapshot

    from langgraph_fanout.persistence.batched_writes import BatchedWrites

T = TypeVar("T")


class InProcess(Runtime):
    """Runs in this process, saved in ``--db`` (see the module)."""

    _saver: BatchedWrites | None = None
    _held: HeldThread | None = None

    def check(self) -> None:
        """Refuse Temporal's options; a malformed database URL before the models load."""
        if self.request.move or self.request.renames:
            raise UsageError("--move and --rename move a Temporal run: add --temporal HOST:PORT")
        db_url(self.request.db)

    async def saver(self) -> BatchedWrites:
        """The checkpointer, opened on first use (the database is created if need be)."""
        if self._saver is None:
            self._saver = await self.resources.enter_async_context(
                aopen_checkpointer(self.request.db)
            )
        return self._saver

    async def _hold(self, thread_id: str) -> None:
        """Take the thread's lock until the command ends.

        Raises:
            ThreadBusyError: another process runs it.
        """
        self._held = await self.resources.enter_async_context(
            thread_lock(self.request.db, thread_id)
        )

    async def start(self, workflow: Workflow, record: RunRecord, payload: dict[str, Any]) -> bool:
        """Take the thread; refuse one that holds another graph's run or an unfinished one."""
        saver = await self.saver()
        await self._hold(record.thread_id)
        thread_id = self.request.thread_id
        if thread_id is None:
            return False
        checkpoint = await saver.aget_tuple(thread_config(thread_id))
        if checkpoint is None:
            return False
        found = RunRecord.from_metadata(thread_id, dict(checkpoint.metadata))
        if found is None or found.graph != workflow.name:
            held = f"a {found.graph} run" if found else "a run fanout did not start"
            raise UsageError(f"thread {thread_id!r} already holds {held}; pick another --thread")
        status = await self.status(found)
        if status != RunStatus.DONE:
            raise UsageError(
                f"thread {thread_id!r} holds an unfinished {workflow.name} run ({status}); "
                f"finish it with `fanout resume {thread_id}` or pick another --thread"
            )
        return False

    async def find(self, thread_id: str) -> RunRecord:
        """The run's record in the database (else why there is none)."""
        if not exists(self.request.db):
            raise self._no_run(thread_id)
        saver = await self.saver()
        record = await find_run(saver, thread_id)
        if record is not None:
            return record
        checkpoint = await saver.aget_tuple(thread_config(thread_id))
        if checkpoint is None:
            raise self._no_run(thread_id)
        graph = checkpoint.metadata.get("graph_id")
        made_by = f"a {graph} run made through the server API" if graph else "a run of another tool"
        raise UsageError(
            f"thread {thread_id!r} holds {made_by}; read or continue it where it was started "
            f"(for the langgraph dev server: GET /threads/{thread_id}/state)"
        )

    def _no_run(self, thread_id: str) -> UsageError:
        return UsageError(
            f"no run with thread id {thread_id!r} in {redact(db_url(self.request.db))} (a run "
            f"started with --temporal is in Temporal: `fanout show {thread_id} --temporal "
            "HOST:PORT`)"
        )

    async def _snapshot(self, record: RunRecord) -> tuple[RunStatus, StateSnapshot]:
        graph = WORKFLOWS[record.graph].compile(await self.saver())
        snapshot = await graph.aget_state(thread_config(record.thread_id))
        if not snapshot.next and not snapshot.tasks:
            return RunStatus.DONE, snapshot
        if snapshot.interrupts:
            if is_spending_pause(snapshot.interrupts[0].value):
                return RunStatus.AT_LIMIT, snapshot
            return RunStatus.PAUSED, snapshot
        # Tasks but no next step: the run broke off between two steps (it saved no step since).
        failed = not snapshot.next or any(t.error for t in snapshot.tasks)
        return (RunStatus.FAILED if failed else RunStatus.INCOMPLETE), snapshot

    async def status(self, record: RunRecord) -> RunStatus:
        """From the thread's latest checkpoint."""
        return (await self._snapshot(record))[0]

    async def reopen(self, record: RunRecord) -> RunRecord:
        """Take the thread; the run goes on with the settings of the command line."""
        await self._hold(record.thread_id)
        record = replace(record, context=run_context(self.request, record.context))
        check_run_models(record.context)
        return record

    async def prepare(self, record: RunRecord) -> None:
        """Nothing: the run goes on as it is saved."""

    async def follow(
        self, record: RunRecord, payload: dict[str, Any] | None, reviewer: Reviewer | None
    ) -> Finished:
        """Run (``payload``) or resume (None) the graph here, saving as it goes."""
        from langgraph_fanout.cli.progress import RunProgress
        from langgraph_fanout.cli.stream import stream_run
        from langgraph_fanout.llm.call import with_admission

        saver, held = await self.saver(), self._held
        assert held is not None, "start or reopen takes the thread first"
        progress = RunProgress(stderr, durable=True)
        saver.saved_listeners.append(progress.saved)  # "done" once a task's result is committed
        graph = WORKFLOWS[record.graph].compile(saver)
        config = held.fenced(record.config([progress], self.request.max_concurrency))
        config = with_admission(config, held.admit)  # calls start only while the thread is ours
        try:
            output = await _while_held(
                held, stream_run(graph, payload, config, record.context, progress, reviewer)
            )
        except ThreadTakenOverError as exc:  # the lock was lost and another process took it
            raise RunLost("stopped", str(exc), self._show_hint(record), EXIT_TAKEN_OVER) from exc
        except (SpendingPaused, ReviewStopped):
            raise
        except Exception as exc:
            failed = [(t.node, t.label, t.error) for t in progress.failed()]
            raise RunFailed(failed, f"{type(exc).__name__}: {exc}") from exc
        return Finished(output, progress.usage())

    async def shown(self, record: RunRecord) -> dict[str, Any]:
        """The latest checkpoint: where the run stands, its spending, its values."""
        status, snapshot = await self._snapshot(record)
        return {
            "thread_id": record.thread_id,
            "graph": record.graph,
            "status": status,
            "started": record.started,
            "door": record.door,
            "next": list(snapshot.next),
            "pending": [
                {"node": t.name, "error": t.error}
                for t in snapshot.tasks
                if t.error or not t.result
            ],
            "review": [  # the plan a run paused at its review shows
                i.value for i in snapshot.interrupts if not is_spending_pause(i.value)
            ],
            "spent": counts(snapshot.values.get("spent", NOTHING_SPENT)),
            "limits": record.context.limits_set(),
            "values": snapshot.values,
        }

    async def runs(self, limit: int) -> tuple[list[dict[str, str]], str]:
        """The runs every door recorded in the database."""
        rows: list[dict[str, str]] = []
        if exists(self.request.db):
            for record in await recent_runs(await self.saver(), limit):
                rows.append(
                    {
                        "thread_id": record.thread_id,
                        "graph": record.graph,
                        "status": await self.status(record),
                        "started": record.started,
                        "door": record.door,
                        "input": record.input_head,
                    }
                )
        return rows, redact(db_url(self.request.db))

    def resume_hint(self, thread_id: str, pause: dict[str, Any] | None = None) -> str:
        """``fanout resume`` with the database, never a password (nor an unusable ``***``)."""
        db = self.request.db
        thread = shlex.quote(thread_id) + (raised_limits(pause) if pause else "")
        if db and has_secret(db):
            return (
                f'finished work is saved; resume with: fanout resume {thread} --db "$FANOUT_DB" '
                f"(with FANOUT_DB set to the URL of {redact(db)}, password included)"
            )
        option = f" --db {shlex.quote(db)}" if db else ""
        return f"finished work is saved; resume with: fanout resume {thread}{option}"

    def stopped_hint(self, thread_id: str) -> str:
        """Interrupted: finished work is saved."""
        return f"interrupted; {self.resume_hint(thread_id)}"

    def failure_hint(self, thread_id: str) -> str:
        """Resume it: finished work is saved."""
        return self.resume_hint(thread_id)

    def _show_hint(self, record: RunRecord) -> str:
        db = f" --db {shlex.quote(redact(self.request.db))}" if self.request.db else ""
        thread = shlex.quote(record.thread_id)
        return f"the thread's run goes on there; see it with: fanout show {thread}{db}"


async def _while_held(held: HeldThread, work: Coroutine[Any, Any, T]) -> T:
    """``work``, stopped at once if another process takes the thread.

    Raises:
        ThreadTakenOverError: it did (nothing of this process reaches the thread after it).
    """
    task = asyncio.ensure_future(work)
    held.lost.add_done_callback(lambda _: task.cancel())
    try:
        return await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if held.lost.done() and current is not None and not current.cancelling():
            raise held.lost.result() from None
        raise
