"""Every command and snippet in the README runs as written (against the fake LLM)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
FANOUT = str(Path(sys.executable).with_name("fanout"))


SERVER_URL = "http://127.0.0.1:2024"  # blocks using the server run in tests/test_server.py
TEMPORAL_ADDRESS = "127.0.0.1:7233"  # blocks using Temporal run in tests/test_temporal.py


def blocks(language: str) -> list[str]:
    found = re.findall(rf"```{language}\n(.*?)```", README, re.S)
    return [block for block in found if SERVER_URL not in block and TEMPORAL_ADDRESS not in block]


def run(command: list[str], cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120, **kwargs)
    assert result.returncode == 0, f"{command}\nstdout:{result.stdout}\nstderr:{result.stderr}"
    return result


@pytest.mark.parametrize("snippet", blocks("python"), ids=lambda s: s.split("\n")[0][:40])
def test_python_snippets_run(fake_llm, tmp_path, snippet):
    fake_llm.configure(default_items=3)

    result = run([sys.executable, "-c", snippet], tmp_path)

    assert fake_llm.log(), "the snippet made no LLM call"
    assert "Traceback" not in result.stderr


def test_cli_commands_run(fake_llm, tmp_path):
    (cli,) = [b for b in blocks("bash") if b.startswith("fanout ")]
    commands = [line.split("  #")[0].strip() for line in cli.splitlines() if line.strip()]
    thread_id = None
    for command in commands:
        command = command.replace("fanout ", f"{FANOUT} ")
        if "THREAD_ID" in command:
            command = command.replace("THREAD_ID", thread_id)
        result = run(["bash", "-c", command], tmp_path)
        if "--json" in command:
            thread_id = json.loads(result.stdout)["thread_id"]
    assert thread_id is not None
    listing = run([FANOUT, "runs", "--json"], tmp_path)
    assert {r["graph"] for r in json.loads(listing.stdout)} == {"evaluation", "article", "research"}


def test_make_targets_named_in_the_readme_exist():
    makefile = (Path(__file__).resolve().parent.parent / "Makefile").read_text()
    for target in set(re.findall(r"`make (\w+)", README)):
        assert re.search(rf"^{target}:", makefile, re.M), target
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert "make test" in ci
