"""docs/development.md, "Adding a workflow": a 4th workflow from tests/fixtures on every door.

``translate`` (a planner picks 2-4 languages, ``Send`` fans out one translator each, a join
collects them) is registered through ``$FANOUT_WORKFLOWS``, as a user's own module would be,
and runs through ``fanout``, ``langgraph dev`` and Temporal with no other edit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fake_llm import FakeLLM
from tests.fanout_cli import FANOUT, RUN_TIMEOUT, fanout_env
from tests.langgraph_server import PROJECT_ROOT, server_env, start_server

REGISTER = {
    "FANOUT_WORKFLOWS": "tests.fixtures.translate.workflow",
    "PYTHONPATH": str(PROJECT_ROOT),
}
TEXT = "The tide comes in twice a day."


def run_fanout(fake: FakeLLM, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``fanout *args`` in a fresh process that registers the translate workflow."""
    env = fanout_env(fake) | REGISTER
    return subprocess.run(
        [*FANOUT, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT
    )


def translations(output: dict[str, Any]) -> list[str]:
    return [t["language"] for t in output["translations"]]


def expect_one_translator_per_language(fake: FakeLLM, output: dict[str, Any]) -> None:
    languages = translations(output)
    assert 2 <= len(languages) <= 4
    assert len(fake.log()) == 1 + len(languages)  # the planner, then one call per language
    assert all(t["text"] for t in output["translations"])


@pytest.mark.cli
@pytest.mark.timeout(120)
def test_the_cli_runs_it(fake_llm: FakeLLM, tmp_path: Path) -> None:
    result = run_fanout(fake_llm, tmp_path, "translate", TEXT, "--json")

    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    expect_one_translator_per_language(fake_llm, output)
    assert "translate [" in result.stderr  # its workers show labelled (Worker.label)

    printed = run_fanout(fake_llm, tmp_path, "translate", TEXT)
    assert printed.returncode == 0, printed.stderr
    assert f"{output['translations'][0]['language']}: " in printed.stdout  # its render


@pytest.mark.server
def test_langgraph_dev_serves_it(fake_llm: FakeLLM, tmp_path: Path) -> None:
    config = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json; from langgraph_fanout.workflows import "
            "server_configs; print(json.dumps(server_configs()['langgraph.json']))",
        ],
        env=os.environ | REGISTER,
        capture_output=True,
        text=True,
        check=True,
    )
    served = json.loads(config.stdout)
    assert served["graphs"]["translate"]["path"] == "./tests/fixtures/translate/served.py:translate"
    server = start_server(
        tmp_path, server_env(fake_llm, tmp_path / "checkpoints.sqlite") | REGISTER, config=served
    )
    try:
        output = server.sync_client().runs.wait(None, "translate", input={"text": TEXT})
    finally:
        server.kill()

    assert isinstance(output, dict)
    expect_one_translator_per_language(fake_llm, output)


@pytest.mark.temporal
@pytest.mark.timeout(240)
def test_temporal_runs_it(fake_llm: FakeLLM, tmp_path: Path, address: str, task_queue: str) -> None:
    on_temporal = ["--temporal", address, "--task-queue", task_queue]
    worker = subprocess.Popen(
        [*FANOUT, "worker", *on_temporal],
        cwd=tmp_path,
        env=fanout_env(fake_llm) | REGISTER,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "worker.err").open("w"),
    )
    try:
        result = run_fanout(fake_llm, tmp_path, "translate", TEXT, "--json", *on_temporal)
    finally:
        worker.terminate()
        worker.wait(30)

    assert result.returncode == 0, result.stderr + (tmp_path / "worker.err").read_text()
    expect_one_translator_per_language(fake_llm, json.loads(result.stdout))
