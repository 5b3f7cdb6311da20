"""``fanout ... --review`` and ``--plan FILE``, and the live view, in real ``fanout`` processes.

Interactive runs go through a pseudo-terminal (``pexpect``); ``$EDITOR`` is a small Python
script that records the plan it was shown and writes the next of the edits it was given.
"""

from __future__ import annotations

import io
import json
import re
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

import pexpect
import pytest
from rich.console import Console

from langgraph_fanout.cli.review import edit
from tests.docs import DOCS, blocks, section
from tests.fake_llm import FakeLLM
from tests.fanout_cli import FANOUT, RUN_TIMEOUT, fanout, fanout_env, json_result

pytestmark = [pytest.mark.cli, pytest.mark.timeout(180)]

B = r"(?:\x1b\[[0-9;]*m)*"  # bold on or off: the prompt's choices are styled
PROMPT = rf"Run this plan, edit it, or reject it\? {B}\[run/edit/reject\]{B} {B}\(run\){B}: "
AGAIN = (
    rf"Edit it again, run it as planned, or reject it\? {B}\[run/edit/reject\]{B} {B}\(edit\){B}: "
)
ANSI = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]")
EDITOR = """\
import json, pathlib, sys
here = pathlib.Path(__file__).parent
edits = json.loads((here / "edits.json").read_text())
seen = sorted(here.glob("seen-*.yaml"))
pathlib.Path(here / f"seen-{len(seen)}.yaml").write_text(pathlib.Path(sys.argv[1]).read_text())
pathlib.Path(sys.argv[1]).write_text(edits[len(seen)])
"""


def spawn(fake: FakeLLM, cwd: Path, *args: str, editor_edits: list[str] = ()) -> pexpect.spawn:
    """``fanout *args`` on a 120 x 40 pseudo-terminal, its output logged to ``cwd/tty.log``."""
    env = fanout_env(fake)
    env["PYTHONFAULTHANDLER"] = "1"  # SIGABRT prints every thread's stack: see finish()
    if editor_edits:
        (cwd / "editor.py").write_text(EDITOR)
        (cwd / "edits.json").write_text(json.dumps(list(editor_edits)))
        env["EDITOR"] = f"{sys.executable} {cwd / 'editor.py'}"
    child = pexpect.spawn(
        FANOUT[0],
        [*FANOUT[1:], *args],
        cwd=cwd,
        env=env,
        encoding="utf-8",
        dimensions=(40, 120),
        timeout=RUN_TIMEOUT,
        preexec_fn=as_a_foreground_job,
    )
    child.logfile_read = (cwd / "tty.log").open("w")
    return child


def as_a_foreground_job() -> None:
    """Give the child Ctrl-C as a terminal's shell would, whatever this test inherited.

    A job a non-interactive shell starts in the background (``make test &``) inherits
    SIGINT ignored, and Python then keeps ignoring it, as it should.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def finish(child: pexpect.spawn) -> int:
    """Wait for the end of ``child``; its exit code (else fail with its threads' stacks)."""
    try:
        child.expect(pexpect.EOF)
    except pexpect.TIMEOUT:
        child.kill(signal.SIGABRT)
        child.expect(pexpect.EOF, timeout=10)
        raise AssertionError(f"fanout did not exit; its threads:\n{before(child)}") from None
    child.close()
    assert child.exitstatus is not None, child.signalstatus
    return int(child.exitstatus)


def before(child: pexpect.spawn) -> str:
    """What ``child`` printed before its last match, without escape codes."""
    return ANSI.sub("", child.before).replace("\r", "")


def screen(cwd: Path) -> str:
    """Everything the terminal got, without escape codes."""
    return ANSI.sub("", (cwd / "tty.log").read_text()).replace("\r", "")


def calls(log: list[dict[str, Any]]) -> dict[str, list[str]]:
    """The planner's and the section writers' requests."""
    return {
        "plan": [r["last_user"] for r in log if r["schema"] == "Sections"],
        "sections": sorted(
            re.search(r"Section: (.*)\n", r["last_user"])[1]  # type: ignore[index]
            for r in log
            if r["last_user"].startswith("Article topic")
        ),
    }


PLANNED = [f"Fake name {i} for: Topic: Tides" for i in (1, 2, 3)]


# --- at the terminal ----------------------------------------------------------------------------


def test_review_shows_the_plan_and_runs_it(fake_llm: FakeLLM, tmp_path: Path) -> None:
    child = spawn(fake_llm, tmp_path, "article", "Tides", "--review")

    child.expect(PROMPT)
    shown = before(child)
    assert calls(fake_llm.log()) == {"plan": ["Topic: Tides"], "sections": []}  # paused
    child.sendline("run")

    assert finish(child) == 0
    assert "Plan: 3 sections (at most 8)" in shown
    for i, name in enumerate(PLANNED, 1):
        assert f"{i}. {name}" in shown
    assert calls(fake_llm.log())["sections"] == PLANNED
    assert "## Fake name 3 for: Topic: Tides" in screen(tmp_path)


def test_review_edit_runs_the_edited_plan(fake_llm: FakeLLM, tmp_path: Path) -> None:
    edited = "sections:\n- name: Spring tides\n  description: |\n    Sun and moon\n    aligned.\n"
    edited += "- name: Neap tides\n"
    child = spawn(fake_llm, tmp_path, "article", "Tides", "--review", editor_edits=[edited])

    child.expect(PROMPT)
    child.sendline("edit")

    assert finish(child) == 0
    shown = (tmp_path / "seen-0.yaml").read_text()
    assert shown.startswith("# The article plan: at most 8 sections")
    assert "- name: 'Fake name 1 for: Topic: Tides'" in shown
    assert calls(fake_llm.log())["sections"] == ["Neap tides", "Spring tides"]
    (spring,) = [r for r in fake_llm.log() if "Section: Spring tides" in r["last_user"]]
    assert "What it covers: Sun and moon aligned." in spring["last_user"]
    out = screen(tmp_path)
    assert "Plan: 2 sections" in out
    assert (
        "## Spring tides" in out
        and "## Neap tides" in out
        and "Fake name 1" not in out.split("Plan: 2 sections")[1]
    )


def test_a_bad_edit_is_refused_and_asked_again(fake_llm: FakeLLM, tmp_path: Path) -> None:
    too_many = "sections:\n" + "".join(f"- name: S{i}\n" for i in range(4))
    control = 'sections:\n- name: "Bad\\u0007name"\n'
    good = "sections:\n- name: Only this one\n"
    child = spawn(
        fake_llm,
        tmp_path,
        "article",
        "Tides",
        "--review",
        "--max-sections",
        "3",
        editor_edits=["{not yaml", too_many, control, good],
    )

    child.expect(PROMPT)
    child.sendline("edit")
    for problem in ("not valid YAML", "4 sections; at most 3", "must not contain control"):
        child.expect(AGAIN)
        assert problem in before(child), before(child)
        child.sendline("")  # edit again (the default)

    assert finish(child) == 0
    # the last edit, not lost (click.edit ends the file it hands the editor with a newline)
    assert (tmp_path / "seen-1.yaml").read_text() == "{not yaml\n"
    assert calls(fake_llm.log())["sections"] == ["Only this one"]


def test_review_reject_ends_without_workers(fake_llm: FakeLLM, tmp_path: Path) -> None:
    child = spawn(fake_llm, tmp_path, "article", "Tides", "--review", "--json")

    child.expect(PROMPT)
    child.sendline("reject")
    child.expect(r"Why \(optional\)")
    child.sendline("too broad")

    assert finish(child) == 3
    assert calls(fake_llm.log())["sections"] == []
    out = screen(tmp_path)
    assert "plan rejected at review: too broad; no worker ran" in out
    output = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    assert output["review"] == {"decision": "rejected", "reason": "too broad"}
    assert output["article"] == "" and output["completed_sections"] == []


# --- the session docs/cli.md shows -------------------------------------------------------------


def documented_session() -> tuple[list[str], list[str], str]:
    """The command, the transcript and the plan in the editor that docs/cli.md shows."""
    text = section(DOCS / "cli.md", "## Review the plan at the terminal")
    (console,) = blocks(text, "console")
    (plan,) = blocks(text, "yaml")
    command, *transcript = console.splitlines()
    return shlex.split(command.removeprefix("$ ")), transcript, plan


def as_pattern(line: str) -> str:
    """A regex for ``line`` with any number where it has one."""
    return re.sub(r"\d+", r"\\d+", re.escape(line.strip()))


@pytest.mark.parametrize("answer", ["run", "edit"])
def test_the_documented_review_session(fake_llm: FakeLLM, tmp_path: Path, answer: str) -> None:
    (command, *args), transcript, plan = documented_session()
    (asked,) = [line for line in transcript if line.startswith("Run this plan")]
    (shown,) = [line for line in transcript if line.startswith("Plan: ")]
    (done,) = [line for line in transcript if line.startswith("done: ")]
    nodes = {line.split()[0] for line in transcript if re.match(r" [a-z_]+ ", line)}
    assert command == "fanout" and asked.endswith(": run") and "node" in nodes
    child = spawn(fake_llm, tmp_path, *args, editor_edits=[plan])

    child.expect(PROMPT)
    child.sendline(answer)

    assert finish(child) == 0
    out = screen(tmp_path)
    assert re.search(r"^thread: [0-9a-f-]{36}$", out, flags=re.M)
    assert asked.removesuffix("run") in out
    assert re.search(as_pattern(shown), out) and re.search(as_pattern(done), out)
    assert nodes <= {line.split()[0] for line in out.splitlines() if line.startswith(" ")}
    assert "\n# Heat pumps\n" in out
    sections = calls(fake_llm.log())["sections"]
    if answer == "edit":
        seen = (tmp_path / "seen-0.yaml").read_text()
        header = [line for line in plan.splitlines() if line.startswith("#")]
        assert seen.splitlines()[: len(header)] == header
        assert sections == ["Energy Efficiency", "Heat Pumps"]  # the plan the page shows
    else:
        assert sections == [f"Fake name {i} for: Topic: Heat pumps" for i in (1, 2, 3)]


# --- without a terminal: --plan FILE ------------------------------------------------------------


def test_review_without_a_terminal_or_plan_is_a_usage_error(
    fake_llm: FakeLLM, tmp_path: Path
) -> None:
    result = fanout(fake_llm, tmp_path, "article", "Tides", "--review")

    assert result.returncode == 2, result.stderr
    assert "pass --plan FILE" in result.stderr
    assert not (tmp_path / ".fanout").exists()
    assert fake_llm.log() == []


@pytest.mark.parametrize(
    ("name", "text", "code", "decision", "sections"),
    [
        ("approve.json", '{"approve": true}', 0, "approved", PLANNED),
        (
            "same.yaml",
            "sections:\n"
            + "".join(
                f"- name: '{n}'\n  description: 'Fake description {i} for: Topic: Tides'\n"
                for i, n in enumerate(PLANNED, 1)
            ),
            0,
            "approved",
            PLANNED,
        ),
        ("edit.yaml", "sections:\n- name: Moon\n- name: Sun\n", 0, "edited", ["Moon", "Sun"]),
        ("reject.yml", "reject: true\nreason: not now\n", 3, "rejected", []),
    ],
    ids=["approve-json", "same-plan-yaml", "edit-yaml", "reject-yaml"],
)
def test_plan_file_decides_without_a_prompt(
    fake_llm: FakeLLM,
    tmp_path: Path,
    name: str,
    text: str,
    code: int,
    decision: str,
    sections: list[str],
) -> None:
    (tmp_path / name).write_text(text)

    result = fanout(fake_llm, tmp_path, "article", "Tides", "--plan", name, "--json")

    assert result.returncode == code, result.stderr
    output = json.loads(result.stdout)
    assert output["review"]["decision"] == decision
    assert calls(fake_llm.log()) == {"plan": ["Topic: Tides"], "sections": sorted(sections)}


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("missing.json", None, "cannot read --plan missing.json"),
        ("bad.json", "{'sections': []}", "bad.json: not valid JSON"),
        ("bad.yaml", "sections: [", "bad.yaml: not valid YAML"),
        ("empty.yaml", "# nothing\n", "empty.yaml: the file holds no plan"),
        ("list.json", '["A", "B"]', 'expected {"sections": [...]}'),
        (
            "many.json",
            json.dumps({"sections": [{"name": str(i)} for i in range(3)]}),
            "3 sections; at most 2",
        ),
        ("ctrl.json", '{"sections": [{"name": "A\\u0000"}]}', "must not contain control"),
        ("research.json", '{"questions": ["A?", "B?"]}', "got the keys ['questions']"),
    ],
)
def test_a_bad_plan_file_is_a_usage_error_before_anything_runs(
    fake_llm: FakeLLM, tmp_path: Path, name: str, text: str | None, message: str
) -> None:
    if text is not None:
        (tmp_path / name).write_text(text)

    result = fanout(fake_llm, tmp_path, "article", "Tides", "--max-sections", "2", "--plan", name)

    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert not (tmp_path / ".fanout").exists()
    assert fake_llm.log() == []


def test_research_plan_file(fake_llm: FakeLLM, tmp_path: Path) -> None:
    (tmp_path / "plan.yaml").write_text("questions:\n- Why do tides happen?\n- When?\n")

    result = fanout(fake_llm, tmp_path, "research", "Tides", "--plan", "plan.yaml", "--json")

    output = json_result(result)
    assert [f["question"] for f in output["findings"]] == ["Why do tides happen?", "When?"]
    assert output["review"] == {"decision": "edited", "reason": ""}


# --- durable: a run killed while it waits for its review ---------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return str(tmp_path / "runs.sqlite")


def test_a_run_killed_at_its_review_resumes_at_the_review(
    fake_llm: FakeLLM, tmp_path: Path, db: str
) -> None:
    thread = f"paused-{tmp_path.name}"
    child = spawn(
        fake_llm, tmp_path, "article", "Tides", "--review", "--thread", thread, "--db", db
    )
    child.expect(PROMPT)
    child.kill(signal.SIGKILL)
    child.wait()
    assert child.signalstatus == signal.SIGKILL

    runs = json.loads(fanout(fake_llm, tmp_path, "runs", "--db", db, "--json").stdout)
    shown = json.loads(fanout(fake_llm, tmp_path, "show", thread, "--db", db, "--json").stdout)
    refused = fanout(fake_llm, tmp_path, "resume", thread, "--db", db)  # no terminal, no --plan
    assert [(r["thread_id"], r["status"]) for r in runs if r["thread_id"] == thread] == [
        (thread, "paused")
    ]
    assert shown["review"] == [
        {
            "sections": [
                {"name": n, "description": n.replace("name", "description")} for n in PLANNED
            ]
        }
    ]
    assert refused.returncode == 2 and "pass --plan FILE" in refused.stderr

    fake_llm.reset()
    child = spawn(fake_llm, tmp_path, "resume", thread, "--db", db)
    child.expect(PROMPT)
    assert "1. Fake name 1 for: Topic: Tides" in before(child)
    child.sendline("run")

    assert finish(child) == 0
    assert calls(fake_llm.log()) == {"plan": [], "sections": PLANNED}  # no second plan
    runs = json.loads(fanout(fake_llm, tmp_path, "runs", "--db", db, "--json").stdout)
    assert [r["status"] for r in runs if r["thread_id"] == thread] == ["done"]


def test_resume_with_a_plan_file_answers_a_paused_run(fake_llm: FakeLLM, tmp_path: Path) -> None:
    db = str(tmp_path / "runs.sqlite")
    child = spawn(fake_llm, tmp_path, "research", "Tides", "--review", "--thread", "t", "--db", db)
    child.expect(PROMPT)
    child.sendeof()  # no answer: the run stays paused
    assert finish(child) == 1
    assert "paused: no decision" in screen(tmp_path)
    (tmp_path / "plan.json").write_text('{"questions": ["Why?", "How?", "When?"]}')
    fake_llm.reset()

    result = fanout(fake_llm, tmp_path, "resume", "t", "--db", db, "--plan", "plan.json", "--json")

    output = json_result(result)
    assert [f["question"] for f in output["findings"]] == ["Why?", "How?", "When?"]
    assert [r["schema"] for r in fake_llm.log()] == [None] * 4  # three researchers, the writer


def test_ctrl_c_at_the_prompt_leaves_the_run_paused(fake_llm: FakeLLM, tmp_path: Path) -> None:
    db = str(tmp_path / "runs.sqlite")
    child = spawn(fake_llm, tmp_path, "article", "Tides", "--review", "--thread", "t", "--db", db)
    child.expect(PROMPT)

    child.sendintr()

    assert finish(child) == 128 + signal.SIGINT
    assert "interrupted; finished work is saved; resume with: fanout resume t" in screen(tmp_path)
    runs = json.loads(fanout(fake_llm, tmp_path, "runs", "--db", db, "--json").stdout)
    assert [r["status"] for r in runs] == ["paused"]


def test_sigterm_at_the_prompt_stops_the_run_paused(fake_llm: FakeLLM, tmp_path: Path) -> None:
    db = str(tmp_path / "runs.sqlite")
    child = spawn(fake_llm, tmp_path, "research", "Tides", "--review", "--thread", "t", "--db", db)
    child.expect(PROMPT)

    child.kill(signal.SIGTERM)

    assert finish(child) == 128 + signal.SIGTERM
    assert "resume with: fanout resume t" in screen(tmp_path)
    runs = json.loads(fanout(fake_llm, tmp_path, "runs", "--db", db, "--json").stdout)
    assert [r["status"] for r in runs] == ["paused"]


def test_an_evaluation_has_no_plan_to_review(fake_llm: FakeLLM, tmp_path: Path) -> None:
    done = fanout(fake_llm, tmp_path, "evaluate", "Tides", "--thread", "e", "--json")
    assert done.returncode == 0, done.stderr
    fake_llm.reset()

    result = fanout(fake_llm, tmp_path, "resume", "e", "--review")
    flag = fanout(fake_llm, tmp_path, "evaluate", "Tides", "--review")

    assert result.returncode == 2 and "evaluation runs have no plan to review" in result.stderr
    assert flag.returncode == 2 and "unrecognized arguments: --review" in flag.stderr
    assert fake_llm.log() == []


# --- the live view ------------------------------------------------------------------------------


def test_the_live_view_shows_each_worker_writing(fake_llm: FakeLLM, tmp_path: Path) -> None:
    fake_llm.add_rules({"match": "Article topic", "chunk_delay": 0.4})

    child = spawn(fake_llm, tmp_path, "article", "Tides", "--max-sections", "2")

    assert finish(child) == 0
    frames = screen(tmp_path)
    rows = [line for line in frames.splitlines() if line.startswith(" write_section")]
    partial = [
        line
        for line in rows
        if " running " in line and "Fake answer to: Article" in line and "covers" not in line
    ]
    labels = {re.search(r"Fake name (\d)", line)[1] for line in partial}  # type: ignore[index]
    assert labels == {"1", "2"}, "\n".join(rows)  # each worker, seen mid-reply
    planner = [line for line in frames.splitlines() if line.startswith(" plan_sections")]
    assert any(re.search(r"JSON reply, [\d,]+ characters", line) for line in planner)
    assert '{"sections"' not in frames and "PydanticSerializationUnexpectedValue" not in frames
    assert re.search(r"done: 3 LLM calls, [1-9]\d* input \+ [1-9]\d* output tokens", frames)


def test_the_editor_returns_the_edited_plan_and_a_failed_edit_leaves_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    upper = tmp_path / "upper.py"
    upper.write_text(
        "import pathlib, sys\np = pathlib.Path(sys.argv[1])\np.write_text(p.read_text().upper())\n"
    )
    shown = io.StringIO()
    console = Console(file=shown, width=200)
    monkeypatch.delenv("VISUAL", raising=False)

    monkeypatch.setenv("EDITOR", f"{shlex.quote(sys.executable)} {shlex.quote(str(upper))}")
    assert edit("sections: []\n", console) == "SECTIONS: []\n"

    for editor in ("false", str(tmp_path / "no-such-editor")):
        monkeypatch.setenv("EDITOR", editor)
        assert edit("sections: []\n", console) == "sections: []\n"
    assert shown.getvalue().count("Editing failed") == 2, shown.getvalue()
    assert shown.getvalue().count("plan unchanged") == 2
