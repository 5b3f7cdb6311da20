"""Durable runs of the workflows against a checkpointer: what a thread's checkpoints say.

Every run records, in the metadata of its checkpoints, which workflow it runs, the head of its
input, when it started, its settings and the door it came in by: ``fanout`` writes the record of
its runs, the served graphs (``langgraph_fanout/server/one_writer.py``) that of the runs the
LangGraph API servers make. So ``fanout runs`` on a database the servers share lists them all.

Importing this module is cheap (no LangGraph, no LangChain): a graph is built on first use,
so the CLI can reject bad input at once.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from langgraph_fanout.workflows import WORKFLOWS, Workflow
from state.context import Context

if TYPE_CHECKING:
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.base import BaseCheckpointSaver

CLI = "fanout"
"""The door of the runs ``fanout`` starts."""
INPUT_HEAD_CHARS = 60
RUNS_PAGE = 200
"""Checkpoints read per query when listing runs."""


@dataclass(frozen=True)
class RunRecord:
    """What a thread's checkpoints say about the run in it (kept in checkpoint metadata)."""

    thread_id: str
    graph: str
    input_head: str
    started: str
    context: Context
    door: str = CLI
    """Where the run came in: ``fanout``, ``langgraph-api`` (``langgraph dev``) or ``aegra``."""

    @classmethod
    def new(
        cls,
        workflow: Workflow,
        value: str,
        context: Context,
        thread_id: str | None,
        door: str = CLI,
    ) -> RunRecord:
        """A record for a run about to start on ``thread_id`` (a new id when None)."""
        return cls(
            thread_id=thread_id or str(uuid.uuid4()),
            graph=workflow.name,
            input_head=" ".join(value.split())[:INPUT_HEAD_CHARS],
            started=datetime.now(UTC).isoformat(timespec="seconds"),
            context=context,
            door=door,
        )

    @classmethod
    def from_metadata(cls, thread_id: str, metadata: dict[str, Any]) -> RunRecord | None:
        """The record stored with a checkpoint, or None for a thread this tool did not start."""
        if metadata.get("fanout_graph") not in WORKFLOWS:
            return None
        known = {f.name for f in fields(Context)}
        saved = json.loads(metadata.get("fanout_context") or "{}")
        return cls(
            thread_id=thread_id,
            graph=metadata["fanout_graph"],
            input_head=metadata.get("fanout_input", ""),
            started=metadata.get("fanout_started", ""),
            context=Context(**{k: v for k, v in saved.items() if k in known}),
            door=metadata.get("fanout_door", CLI),
        )

    @property
    def metadata(self) -> dict[str, str]:
        """The record as checkpoint metadata (what :meth:`from_metadata` reads)."""
        return {
            "fanout_graph": self.graph,
            "fanout_input": self.input_head,
            "fanout_started": self.started,
            "fanout_context": json.dumps(asdict(self.context)),
            "fanout_door": self.door,
        }

    def config(
        self, callbacks: list[BaseCallbackHandler], max_concurrency: int | None
    ) -> RunnableConfig:
        """The run config: thread, metadata persisted with every checkpoint, callbacks."""
        config: RunnableConfig = {
            "configurable": {"thread_id": self.thread_id},
            "metadata": self.metadata,
            "callbacks": callbacks,
        }
        if max_concurrency:
            config["max_concurrency"] = max_concurrency
        return config


def thread_config(thread_id: str) -> RunnableConfig:
    """The config that names the latest checkpoint of ``thread_id``."""
    return {"configurable": {"thread_id": thread_id}}


async def find_run(saver: BaseCheckpointSaver, thread_id: str) -> RunRecord | None:
    """The record of the run on ``thread_id``, or None if there is none."""
    checkpoint = await saver.aget_tuple(thread_config(thread_id))
    if checkpoint is None:
        return None
    return RunRecord.from_metadata(thread_id, dict(checkpoint.metadata))


async def recent_runs(
    saver: BaseCheckpointSaver, limit: int, page: int = RUNS_PAGE
) -> list[RunRecord]:
    """The newest ``limit`` runs, newest start first (one per thread).

    Reads only the input checkpoint that starts each run, ``page`` at a time, so listing
    stays cheap however many checkpoints the database holds.
    """
    runs: dict[str, RunRecord] = {}
    before: RunnableConfig | None = None
    while len(runs) < limit:
        starts = saver.alist(None, filter={"source": "input"}, before=before, limit=page)
        batch = [c async for c in starts]  # read whole: a saver may hold a lock while it yields
        for checkpoint in batch:
            configurable = checkpoint.config["configurable"]
            thread_id = configurable["thread_id"]
            if thread_id in runs or configurable.get("checkpoint_ns"):
                continue
            record = RunRecord.from_metadata(thread_id, dict(checkpoint.metadata))
            if record is not None:
                runs[thread_id] = record
        if len(batch) < page:
            break
        before = batch[-1].config
    return list(runs.values())[:limit]
