"""A batch's finished tasks, saved in the database as each one finishes.

So a retried batch runs again only the tasks that had not finished, whenever its worker died
(its heartbeats lag up to 2 s behind): :mod:`langgraph_fanout.persistence.task_results`. A
database that cannot be reached, or not within :data:`WAIT`, costs no task: the batch goes
on, and a retry falls back on what its heartbeats recorded.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from temporalio import activity
from temporalio.api.common.v1 import Payload

from langgraph_fanout.persistence.task_results import TaskResults
from langgraph_fanout.persistence.urls import DatabaseError
from langgraph_fanout.temporal.payloads import database_url
from langgraph_fanout.temporal.policy import CALLS_KEY, count_from, spent_so_far

logger = logging.getLogger("langgraph_fanout.temporal.worker")

WAIT = 5.0
"""Seconds a batch waits for the database to save or read its tasks (a locked SQLite file, a
PostgreSQL host that does not answer) before it goes on without."""


class FinishedTasks:
    """The running batch activity's finished tasks in the worker's database.

    A batch of one task keeps none: its result reports it as soon as it finishes.
    """

    def __init__(self, size: int) -> None:
        self.kept = size > 1
        info = activity.info()
        self.batch = f"{info.workflow_run_id}/{info.activity_id}"
        self.first_attempt = info.attempt == 1
        self.table = TaskResults.of(database_url(activity.client().data_converter))
        self.converter = activity.payload_converter()
        self.warned = False  # a database down warns once a batch, not once a task

    async def earlier(self) -> dict[int, Any]:
        """The updates of the tasks that earlier attempts finished, by index.

        What those attempts had spent when they saved them counts on in this one
        (``policy.count_from``): their last heartbeats may not have said it.
        """
        if self.first_attempt or not self.kept:
            return {}
        try:
            async with asyncio.timeout(WAIT):
                rows = await self.table.read(self.batch)
        except (DatabaseError, TimeoutError) as exc:
            self._warn(exc, "the tasks this batch's heartbeats missed run again")
            return {}
        saved = {i: self.converter.from_payload(Payload.FromString(d)) for i, d in rows.items()}
        spent = [spent for _, spent in saved.values() if spent]
        count_from(max(spent, key=lambda s: int(s[CALLS_KEY]), default=None))
        return {i: update for i, (update, _) in saved.items()}

    async def save(self, index: int, update: dict[str, Any]) -> None:
        """Save task ``index``'s update, and what the attempt has spent so far.

        Returns once it is committed, or could not be.
        """
        if not self.kept:
            return
        data = self.converter.to_payload([update, spent_so_far()]).SerializeToString()
        try:
            async with asyncio.timeout(WAIT):
                await self.table.save(self.batch, index, data)
        except (DatabaseError, TimeoutError) as exc:
            self._warn(exc, "if this batch is retried, its finished tasks may run again")

    def _warn(self, exc: Exception, consequence: str) -> None:
        if not self.warned:
            self.warned = True
            what = str(exc) or f"the database did not answer within {WAIT:g} s"
            logger.warning("%s: %s", what, consequence)
