"""The server's checkpointer refuses a SQLite file where replicas could not share it.

``langgraph build`` bakes ``langgraph.json``'s checkpointer into the Agent Server image; that
server sets ``LANGGRAPH_RUNTIME_EDITION=postgres`` (``langgraph dev`` sets ``inmem``, and
``tests/test_server.py`` runs it on SQLite).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from langgraph_fanout.persistence.urls import DatabaseError
from langgraph_fanout.server.checkpointer import checkpointer, server_checkpointer

ROOT = Path(__file__).resolve().parent.parent
LANGGRAPH = str(Path(sys.executable).with_name("langgraph"))


def test_the_agent_server_image_loads_this_checkpointer(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    subprocess.run(
        [LANGGRAPH, "dockerfile", "-c", str(ROOT / "langgraph.json"), str(dockerfile)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    (line,) = [x for x in dockerfile.read_text().splitlines() if "LANGGRAPH_CHECKPOINTER" in x]
    config = json.loads(line.split("=", 1)[1].strip("'"))
    assert config["path"].endswith("/server/checkpointer.py:checkpointer")


@pytest.mark.parametrize("fanout_db", [None, "checkpoints.sqlite", "sqlite:///checkpoints.sqlite"])
async def test_a_multi_replica_server_refuses_sqlite_and_creates_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fanout_db: str | None
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LANGGRAPH_RUNTIME_EDITION", "postgres")
    if fanout_db is None:
        monkeypatch.delenv("FANOUT_DB", raising=False)
    else:
        monkeypatch.setenv("FANOUT_DB", fanout_db)

    with pytest.raises(DatabaseError) as refused:
        async with server_checkpointer():
            pytest.fail("opened a SQLite checkpointer on a multi-replica server")

    message = str(refused.value)
    assert "LANGGRAPH_RUNTIME_EDITION=postgres" in message
    assert ("is unset" if fanout_db is None else "names a SQLite file") in message
    assert "Set FANOUT_DB to a postgresql:// URL" in message
    assert not any(tmp_path.iterdir())  # noqa: ASYNC240 (a test: a directory listing)


async def test_a_multi_replica_server_never_prints_the_refused_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LANGGRAPH_RUNTIME_EDITION", "postgres")
    monkeypatch.setenv("FANOUT_DB", "sqlite://u:SECRET@host/file")

    with pytest.raises(DatabaseError) as refused:
        async with server_checkpointer():
            pass
    assert "SECRET" not in str(refused.value) and "host" not in str(refused.value)


@pytest.mark.postgres
async def test_a_multi_replica_server_opens_postgresql(
    monkeypatch: pytest.MonkeyPatch, postgres_url: str
) -> None:
    monkeypatch.setenv("LANGGRAPH_RUNTIME_EDITION", "postgres")
    monkeypatch.setenv("FANOUT_DB", postgres_url)
    config = {"configurable": {"thread_id": "server-checkpointer-test", "checkpoint_ns": ""}}
    async with checkpointer() as saver:
        assert await saver.aget_tuple(config) is None


@pytest.mark.parametrize("edition", [None, "inmem"])
async def test_langgraph_dev_keeps_sqlite(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, edition: str | None
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FANOUT_DB", raising=False)
    if edition is None:
        monkeypatch.delenv("LANGGRAPH_RUNTIME_EDITION", raising=False)
    else:
        monkeypatch.setenv("LANGGRAPH_RUNTIME_EDITION", edition)
    async with checkpointer():
        pass
    assert (tmp_path / ".fanout" / "checkpoints.sqlite").is_file()
