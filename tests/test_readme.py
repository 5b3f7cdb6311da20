"""Every command and snippet of the README and docs/ runs as written (against the fake LLM).

The blocks that need a server or Temporal run in tests/test_server.py, tests/test_aegra.py and
tests/test_temporal.py; docs/development.md says which test runs which page.
"""

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.docs import DOCS, PAGES, README, ROOT, blocks, section

FANOUT = str(Path(sys.executable).with_name("fanout"))


SERVER_URL = "http://127.0.0.1:2024"  # blocks using the server run in tests/test_server.py
PRODUCTION_URL = "http://127.0.0.1:2026"  # blocks using Aegra run in tests/test_aegra.py
TEMPORAL_ADDRESS = "127.0.0.1:7233"  # blocks using Temporal run in tests/test_temporal.py


def snippets() -> list[Any]:  # pytest.param()s
    """The Python blocks of every page that need no server and no Temporal."""
    return [
        pytest.param(block, id=f"{page.name}-{i}")
        for page in PAGES
        for i, block in enumerate(blocks(page.read_text(), "python"), 1)
        if not any(url in block for url in (SERVER_URL, PRODUCTION_URL, TEMPORAL_ADDRESS))
    ]


def run(command: list[str], cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120, **kwargs)
    assert result.returncode == 0, f"{command}\nstdout:{result.stdout}\nstderr:{result.stderr}"
    return result


@pytest.mark.parametrize("snippet", snippets())
def test_python_snippets_run(fake_llm, tmp_path, snippet):
    fake_llm.configure(default_items=3)

    result = run([sys.executable, "-c", snippet], tmp_path)

    assert fake_llm.log(), "the snippet made no LLM call"
    assert "Traceback" not in result.stderr


def cli_commands() -> str:
    """The command block of docs/cli.md, every ``fanout`` command but ``worker``."""
    (commands, *_) = blocks((DOCS / "cli.md").read_text(), "bash")
    return commands


@pytest.mark.cli
def test_cli_commands_run(fake_llm, tmp_path):
    commands = [line.split("  #")[0].strip() for line in cli_commands().splitlines()]
    thread_id = None
    for command in filter(None, commands):
        command = command.replace("fanout ", f"{FANOUT} ")
        if "THREAD_ID" in command:
            command = command.replace("THREAD_ID", thread_id)
        result = run(["bash", "-c", command], tmp_path)
        if "--json" in command:
            thread_id = json.loads(result.stdout)["thread_id"]
    assert thread_id is not None
    listing = run([FANOUT, "runs", "--json"], tmp_path)
    assert {r["graph"] for r in json.loads(listing.stdout)} == {"evaluation", "article", "research"}


def test_the_readme_tour_holds_commands_the_docs_run():
    cli = section(README, "## The `fanout` CLI")
    (tour,) = blocks(cli, "bash")
    assert set(tour.splitlines()) <= set(cli_commands().splitlines())
    server = section(README, "## Server and Studio")
    served = blocks((DOCS / "server.md").read_text(), "bash")
    assert blocks(server, "bash") and all(block in served for block in blocks(server, "bash"))


def test_make_targets_named_in_the_docs_exist():
    makefile = (ROOT / "Makefile").read_text()
    named = {
        target
        for page in PAGES
        for target in re.findall(r"(?:^|`)make ([\w-]+)", page.read_text(), flags=re.M)
    }
    assert {"demo", "test", "serve", "serve-production", "bench"} <= named
    for target in named:
        assert re.search(rf"^{target}:", makefile, re.M), target
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci


@pytest.mark.parametrize(
    ("settings", "builds"),
    [
        pytest.param({}, True, id="no-key"),
        pytest.param({"OPENAI_API_KEY": "sk-unused"}, False, id="key"),
        pytest.param({"OPENAI_API_KEY": "sk-unused", "FANOUT_MODEL": "local"}, True, id="local"),
    ],
)
def test_make_demo_builds_llama_cpp_only_to_run_on_it(settings: dict[str, str], builds: bool):
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "FANOUT_MODEL")}
    planned = run(["make", "--dry-run", "--always-make", "demo"], ROOT, env=env | settings)
    assert ("llama-cpp-python" in planned.stdout) is builds, planned.stdout
    assert "bin/fanout article" in planned.stdout


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def prose(page: Path) -> str:
    """``page`` without its fenced blocks."""
    return re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)


def test_links_between_pages_resolve():
    broken, checked = [], 0
    for page in PAGES:
        for target, anchor in re.findall(r"\]\(([\w./-]+\.md)(?:#([\w-]+))?\)", prose(page)):
            checked += 1
            linked = page.parent / target
            if not linked.is_file():
                broken.append(f"{page.name}: {target} does not exist")
            elif anchor and anchor not in map(slug, re.findall(r"^#+ (.*)$", prose(linked), re.M)):
                broken.append(f"{page.name}: {target} has no heading #{anchor}")
    assert broken == []
    assert checked >= len(PAGES)


PATH = re.compile(r"[\w.-]+(/[\w.-]+)*/?")
MADE_BY_RUNS = (".", "benchmarks/results/")  # files and folders that runs create


def named_paths(text: str) -> list[str]:
    """Files and folders of the repository named in ``text``'s inline code."""
    spans = re.findall(r"`([^`\n]+)`", text)
    paths = [s for s in spans if "/" in s and PATH.fullmatch(s) and not s.startswith(MADE_BY_RUNS)]
    return paths + [s for s in spans if re.fullmatch(r"[\w.-]+\.(py|md|json|txt)", s)]


def named_objects(page: Path) -> list[str]:
    """Modules (``python -m ...``, in blocks too) and dotted names of the project in ``page``."""
    modules = re.findall(r"python -m ([\w.]+)", page.read_text())
    dotted = re.findall(r"`((?:state|graphs|nodes|langgraph_fanout)(?:\.\w+)+)`", prose(page))
    return modules + dotted


def resolves(name: str) -> bool:
    """Whether ``name`` is a module, or an attribute of one."""
    module, _, attribute = name.rpartition(".")
    try:
        importlib.import_module(name)
    except ModuleNotFoundError:
        try:
            return bool(module) and hasattr(importlib.import_module(module), attribute)
        except ModuleNotFoundError:
            return False
    return True


def test_the_files_and_modules_named_exist():
    missing, checked = [], 0
    for page in PAGES:
        text = prose(page)
        for path in named_paths(text):
            checked += 1
            if not (ROOT / path).exists():
                missing.append(f"{page.name}: {path}")
        for name in named_objects(page):
            checked += 1
            if not resolves(name):
                missing.append(f"{page.name}: {name}")
    assert missing == []
    assert checked >= 50


def layout_paths() -> list[str]:
    """The files and folders the Layout block of docs/development.md names.

    A line that starts with a folder (``graphs/``, indented: a folder of the one above) or a
    file opens an entry; each ``*.py`` file its text names is in that entry's folder.
    """
    (block,) = re.findall(
        r"^```\n(.*?)^```", section(DOCS / "development.md", "## Layout"), re.M | re.S
    )
    paths, folders = [], {}  # indent -> folder
    for line in block.splitlines():
        if entry := re.match(r"( {0,2})([\w.-]+/|[\w.-]+\.py)\s", line):
            indent = len(entry[1])
            parent = folders.get(indent - 2, "") if indent else ""
            folders = {k: v for k, v in folders.items() if k < indent}
            if entry[2].endswith("/"):
                folders[indent] = parent + entry[2]
                paths.append(parent + entry[2])
            else:
                paths.append(parent + entry[2])
                continue
        folder = folders[max(folders)] if folders else ""
        text = line if entry is None else line[entry.end() :]
        paths += [folder + name for name in re.findall(r"(?<![\w/.])([\w-]+\.py)\b", text)]
    return paths


def test_the_layout_names_files_that_exist():
    paths = layout_paths()
    assert "langgraph_fanout/llm/call.py" in paths and "graphs/article.py" in paths
    assert [p for p in paths if not (ROOT / p).exists()] == []


def test_temporal_md_names_everything_the_build_id_hashes():
    versioning = pytest.importorskip("langgraph_fanout.temporal.versioning")
    text = " ".join(section(DOCS / "temporal.md", "## Upgrades").split())
    assert [name for name in versioning.CODE if f"`{name}`" not in text] == []
    assert [name for name in versioning.LIBRARIES if name not in text] == []
