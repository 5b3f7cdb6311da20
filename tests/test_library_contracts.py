"""What the project assumes of library internals, checked: a library upgrade that changes them
fails here, before it corrupts a checkpoint.

``langgraph_fanout/persistence`` batches the writes of the checkpoint savers: on SQLite it
writes the rows ``AsyncSqliteSaver.aput_writes`` writes, with the same SQL; on PostgreSQL it
calls ``AsyncPostgresSaver``'s ``_cursor`` and ``_dump_writes`` (not public).
tests/test_batched_writes.py checks the rows themselves on both databases.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from langgraph_fanout.persistence.batched_sqlite import SQLITE_INSERT, SQLITE_UPSERT

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("graphs", "nodes", "state", "langgraph_fanout", "benchmarks", "tests")


def test_the_sqlite_saver_writes_with_the_sql_the_batched_saver_copies() -> None:
    source = inspect.getsource(AsyncSqliteSaver.aput_writes)
    assert f'"{SQLITE_UPSERT}"' in source
    assert f'"{SQLITE_INSERT}"' in source


def test_the_postgres_saver_internals_the_batched_saver_calls_are_as_expected() -> None:
    cursor = inspect.signature(AsyncPostgresSaver._cursor)
    assert list(cursor.parameters) == ["self", "pipeline"]
    assert cursor.parameters["pipeline"].kind == inspect.Parameter.KEYWORD_ONLY
    dump = inspect.signature(AsyncPostgresSaver._dump_writes)
    assert list(dump.parameters) == [
        "self", "thread_id", "checkpoint_ns", "checkpoint_id", "task_id", "task_path", "writes",
    ]  # fmt: skip
    for query in ("UPSERT_CHECKPOINT_WRITES_SQL", "INSERT_CHECKPOINT_WRITES_SQL"):
        assert "checkpoint_writes" in getattr(AsyncPostgresSaver, query)


def test_no_module_of_the_project_imports_a_private_module() -> None:
    private = re.compile(
        r"^\s*(from|import)\s+(?!__future__)([\w.]*\.)?_\w"  # a private module: a._b, _a
        r"|^\s*from\s+[\w.]+\s+import\s+\(?\s*_[a-z]",  # a private name: from a import _b
        re.MULTILINE,
    )
    offenders = [
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if private.search(path.read_text())
    ]
    assert offenders == []
