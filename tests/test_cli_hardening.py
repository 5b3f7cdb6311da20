"""The CLI under abuse: signals, bad databases, secrets, escapes, other tools' threads."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import StateGraph

from langgraph_fanout.persistence.checkpointer import open_checkpointer
from langgraph_fanout.persistence.run_records import RunRecord
from langgraph_fanout.persistence.urls import DatabaseError, db_url, redact, scrub
from langgraph_fanout.workflows import WORKFLOWS
from state.context import Context
from state.inputs import BIDI_CONTROLS, BIDI_MARKS, LINE_SEPARATORS
from tests.fake_llm import FakeLLM
from tests.fanout_cli import fanout, json_result, start_fanout, wait_for_results
from tests.test_cli_review import finish, screen, spawn
from tests.test_durability import hang_once, new_thread, research_calls, wait_for_in_flight

pytestmark = [pytest.mark.cli, pytest.mark.timeout(120)]


# --- signals --------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_stop_signal_ends_the_run_like_ctrl_c(
    fake_llm: FakeLLM, tmp_path: Path, signum: signal.Signals
) -> None:
    db = str(tmp_path / "runs.sqlite")
    with open_checkpointer(db):
        pass
    fake_llm.add_rules({"schema": "ResearchPlan", "items": 4}, *hang_once("Fake questions 4 for"))
    thread = new_thread("signal")
    process = start_fanout(fake_llm, tmp_path, "research", "tides", "--thread", thread, "--db", db)
    try:
        wait_for_results(db, "research", thread, "research_question", 3)
        process.send_signal(signum)
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    stderr = (tmp_path / "fanout.err").read_text()

    assert code == 128 + signum, stderr
    assert f"interrupted; finished work is saved; resume with: fanout resume {thread}" in stderr
    assert "Traceback" not in stderr
    fake_llm.reset()
    resumed = json_result(fanout(fake_llm, tmp_path, "resume", thread, "--db", db, "--json"))
    assert resumed["task_count"] == 4
    assert research_calls(fake_llm.log()) == {"q4": 1, "writer": 1}


CTRL_C_ROUNDS = 6


@pytest.mark.parametrize(("presses", "gap"), [(3, 0.0), (10, 0.005)], ids=["3-no-gap", "10-5ms"])
def test_ctrl_c_pressed_again_and_again_still_prints_the_resume_hint(
    fake_llm: FakeLLM, tmp_path: Path, presses: int, gap: float
) -> None:
    for round_ in range(CTRL_C_ROUNDS):
        fake_llm.reset()
        fake_llm.add_rules(
            {"schema": "ResearchPlan", "items": 4}, {"match": "Research question", "fault": "hang"}
        )
        folder = tmp_path / str(round_)
        folder.mkdir()
        child = spawn(fake_llm, folder, "research", "tides", "--thread", "t", "--db", "r.sqlite")
        wait_for_in_flight(fake_llm, 4)  # the four researchers wait on the fake LLM
        for _ in range(presses):
            os.kill(child.pid, signal.SIGINT)  # what the terminal sends on each Ctrl-C
            time.sleep(gap)

        assert finish(child) == 128 + signal.SIGINT, screen(folder)
        shown = screen(folder)
        assert "interrupted; finished work is saved; resume with: fanout resume t" in shown
        assert "Traceback" not in shown and "KeyboardInterrupt" not in shown


# --- databases and secrets ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make_db", "message"),
    [
        (
            lambda p: "mysql://fanout:s3cret@db.example/runs",
            "unsupported database mysql://fanout:***@",
        ),
        (lambda p: str(p), "cannot open"),  # a directory
        (lambda p: str(_garbage(p)), "file is not a database"),
        (
            lambda p: "postgresql://fanout@127.0.0.1:1/runs?password=s3cret&sslmode=disable",
            "cannot open postgresql://fanout@127.0.0.1:1/runs?password=***&sslmode=disable",
        ),
    ],
    ids=["mysql", "directory", "not-sqlite", "password-in-query"],
)
@pytest.mark.parametrize("command", [["research", "tides"], ["runs"], ["show", "t1"]])
def test_a_database_that_cannot_be_used_is_one_clean_line(
    fake_llm: FakeLLM, tmp_path: Path, make_db, message: str, command: list[str]
) -> None:
    db = make_db(tmp_path)
    result = fanout(fake_llm, tmp_path, *command, "--db", db)

    if command == ["runs"] and message == "cannot open" and Path(db).is_dir():
        assert result.returncode == 0  # a folder holds no runs
        return
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    if command != ["show", "t1"] or "mysql" in db:
        assert message in lines[0]
    assert "s3cret" not in result.stderr
    assert fake_llm.log() == []


def _garbage(folder: Path) -> Path:
    path = folder / "not-a-database.sqlite"
    path.write_bytes(b"this is not SQLite " * 100)
    return path


@pytest.mark.parametrize(
    ("url", "hidden"),
    [
        ("postgresql://fanout:p%40ss@db/runs", "postgresql://fanout:***@db/runs"),
        ("postgres://:pw@db/runs", "postgres://:***@db/runs"),
        ("postgresql://db/runs?user=u&password=pw", "postgresql://db/runs?user=u&password=***"),
        ("postgresql://db/runs?sslpassword=k&x=1", "postgresql://db/runs?sslpassword=***&x=1"),
        ("runs.sqlite", "runs.sqlite"),
    ],
)
def test_every_form_of_password_is_hidden(url: str, hidden: str) -> None:
    assert redact(url) == hidden


MALFORMED = [
    "postgresql://u:SECRET@[::1/db",  # an unmatched "[" in the host, the password, another scheme
    "postgresql://u:SECRET[x@127.0.0.1:5432/db",
    "mysql://u:SECRET[x@h/d",
    "postgresql://u:SECRET@db.example:54x2/runs",  # a port that is no number
    "postgres://u:SECRET/runs",  # no host: the password reads as a port
]
DB_COMMANDS = [
    ["research", "tides"],
    ["article", "tides"],
    ["evaluate", "A text."],
    ["resume", "t1"],
    ["runs"],
    ["show", "t1"],
]


@pytest.mark.parametrize(
    ("url", "where"), [(url, ("--db", "FANOUT_DB")[n % 2]) for n, url in enumerate(MALFORMED)]
)
@pytest.mark.parametrize("command", DB_COMMANDS, ids=lambda c: c[0])
def test_a_database_url_that_does_not_parse_is_one_clean_line(
    fake_llm: FakeLLM, tmp_path: Path, url: str, command: list[str], where: str
) -> None:
    if where == "--db":
        result = fanout(fake_llm, tmp_path, *command, "--db", url)
    else:
        result = fanout(fake_llm, tmp_path, *command, env={"FANOUT_DB": url})

    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr  # one line
    scheme = url.partition("://")[0]
    where_shown = "--db" if where == "--db" else "$FANOUT_DB"
    assert result.stderr.startswith(
        f"error: the database URL in {where_shown} ({scheme}://***, not shown: it may hold a "
        "password) does not parse: its "
    ), result.stderr
    assert "SECRET" not in result.stderr and "Traceback" not in result.stderr
    assert fake_llm.log() == [] and not (tmp_path / ".fanout").exists()


# Characters that keep a URL's structure (no "/", "?" or "#", which end the user info and make
# another, valid, URL): brackets, "@", ":" and "%" are where parsing goes wrong.
URL_CHARS = "ab01-._~!$&'()*+,;=[]@:% "


def _generated_url(rng: random.Random) -> tuple[str, str]:
    """A PostgreSQL URL with a password, often malformed; the URL and its password."""

    def part(low: int, high: int) -> str:
        return "".join(rng.choice(URL_CHARS) for _ in range(rng.randint(low, high)))

    password = "Pw" + part(2, 8)  # "Pw" appears nowhere else
    host = rng.choice(["db", "127.0.0.1", "[::1]", "[::1", "::1]", "db]x", part(1, 6)])
    port = rng.choice(["", ":5432", ":", ":70000", ":x1", f":{part(1, 3)}"])
    query = rng.choice(["", "?sslmode=disable", f"?password={password}"])
    return f"postgresql://fanout:{password}@{host}{port}/runs{query}", password


def test_generated_database_urls_parse_or_are_refused_without_their_password() -> None:
    rng = random.Random(19)
    refused = 0
    for _ in range(2_000):
        url, password = _generated_url(rng)
        assert password not in redact(url), url
        try:
            db_url(url)
        except DatabaseError as exc:
            refused += 1
            message = str(exc)
            assert "does not parse" in message and "\n" not in message, url
            assert password not in message, url
        else:
            assert password not in scrub(f'invalid connection option in "{url}"', url), url
    assert 200 < refused < 1_800  # both kinds were generated


@pytest.mark.postgres
def test_a_failed_run_with_a_password_url_points_at_fanout_db(
    fake_llm: FakeLLM, tmp_path: Path, postgres_url: str
) -> None:
    db = f"{postgres_url}?password=s3cret"  # the test cluster trusts local connections
    fake_llm.add_rules({"schema": "ResearchPlan", "response": {"questions": ["Only one?"]}})
    thread = new_thread("hint")

    result = fanout(fake_llm, tmp_path, "research", "tides", "--thread", thread, "--db", db)

    assert result.returncode == 1, result.stderr
    assert f'fanout resume {thread} --db "$FANOUT_DB"' in result.stderr
    assert "password=***" in result.stderr and "s3cret" not in result.stderr


# --- what runs and show print --------------------------------------------------------------


def _record_run(db: str, thread: str, topic: str) -> None:
    """A run started as fanout would (with its metadata), failing on its input in its first node:
    what versions before the input check (langgraph_fanout/checked_graph.py) saved, and what a
    graph compiled by the library's own ``compile`` still saves."""
    workflow = WORKFLOWS["research"]
    record = RunRecord.new(workflow, topic, Context(), thread)
    with open_checkpointer(db) as saver:
        unchecked = StateGraph.compile(workflow.builder, checkpointer=saver)
        with pytest.raises(ValueError):
            unchecked.invoke({"topic": topic}, record.config([], None))


def test_runs_and_show_never_print_a_raw_escape_sequence(fake_llm: FakeLLM, tmp_path: Path) -> None:
    db = str(tmp_path / "runs.sqlite")
    evil = "tides \x1b]0;owned\x07 \x1b[31mred\x9b2J"
    _record_run(db, "evil-thread", evil)  # Python lets any string in; the CLI shows it safely

    for command in (["runs"], ["runs", "--json"], ["show", "evil-thread"]):
        result = fanout(fake_llm, tmp_path, *command, "--db", db)
        assert result.returncode == 0, result.stderr
        for raw in ("\x1b", "\x07", "\x9b"):
            assert raw not in result.stdout + result.stderr, command
    listed = json.loads(fanout(fake_llm, tmp_path, "runs", "--json", "--db", db).stdout)
    assert listed[0]["input"].startswith("tides \x1b]0;owned")  # the JSON value is intact


INVISIBLE = sorted(BIDI_CONTROLS | BIDI_MARKS | LINE_SEPARATORS)


def test_bidirectional_controls_are_refused_and_marks_never_printed_raw(
    fake_llm: FakeLLM, tmp_path: Path
) -> None:
    db = str(tmp_path / "runs.sqlite")
    refused = fanout(fake_llm, tmp_path, "research", "tides \u202eslow", "--db", db)
    assert refused.returncode == 2
    assert "bidirectional control characters (U+202E at position 6)" in refused.stderr
    thread = fanout(fake_llm, tmp_path, "research", "tides", "--thread", "a\u200fb", "--db", db)
    assert thread.returncode == 2
    assert "invisible marks or line separators (U+200F at position 1)" in thread.stderr
    assert fake_llm.log() == [] and not Path(db).exists()

    # Accepted: a right-to-left mark and a line separator; the model answers with every kind.
    topic = "tides \u200fשלום\u2028and more"
    fake_llm.add_rules({"match": "Research findings", "response": "Report " + "".join(INVISIBLE)})
    shown = [fanout(fake_llm, tmp_path, "research", topic, "--thread", "rtl", "--db", db)]
    for command in (["runs"], ["runs", "--json"], ["show", "rtl"], ["show", "rtl", "--json"]):
        shown.append(fanout(fake_llm, tmp_path, *command, "--db", db))
    shown.append(fanout(fake_llm, tmp_path, "resume", "rtl", "--db", db, "--json"))

    for result in shown:
        assert result.returncode == 0, result.stderr
        for char in INVISIBLE:
            assert char not in result.stdout + result.stderr, (result.args, hex(ord(char)))
    assert "Report " + "".join(f"\\u{ord(c):04x}" for c in INVISIBLE) in shown[0].stdout
    assert json.loads(shown[-1].stdout)["report"] == "Report " + "".join(INVISIBLE)
    assert json.loads(shown[2].stdout)[0]["input"] == topic.replace("\u2028", " ")  # head


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_a_run_that_broke_off_before_its_first_step_shows_failed(
    fake_llm: FakeLLM, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    # On PostgreSQL a NUL cannot be stored: the run keeps only its input checkpoint.
    if backend == "postgres":
        db = str(request.getfixturevalue("postgres_url"))
    else:
        db = str(tmp_path / "runs.sqlite")
    thread = new_thread("broken")
    _record_run(db, thread, "bad \x00 topic")  # refused inside the first node

    listed = json.loads(fanout(fake_llm, tmp_path, "runs", "--json", "--db", db).stdout)
    shown = json.loads(fanout(fake_llm, tmp_path, "show", thread, "--db", db, "--json").stdout)

    assert {r["thread_id"]: r["status"] for r in listed}[thread] == "failed"
    assert shown["status"] == "failed"


def test_show_and_resume_of_a_thread_the_server_made_say_so(
    fake_llm: FakeLLM, tmp_path: Path
) -> None:
    db = str(tmp_path / "runs.sqlite")
    config = {"configurable": {"thread_id": "server-thread"}, "metadata": {"graph_id": "article"}}
    with open_checkpointer(db) as saver:
        WORKFLOWS["article"].compile(saver).invoke({"topic": "Tea"}, config)

    for command in ("show", "resume"):
        result = fanout(fake_llm, tmp_path, command, "server-thread", "--db", db)
        assert result.returncode == 2
        assert "holds a article run made through the server API" in result.stderr
        assert "GET /threads/server-thread/state" in result.stderr


@pytest.mark.parametrize("limit", ["0", "-2", "x"])
def test_runs_limit_below_one_is_a_usage_error(
    fake_llm: FakeLLM, tmp_path: Path, limit: str
) -> None:
    result = fanout(fake_llm, tmp_path, "runs", "--limit", limit)
    assert result.returncode == 2
    assert "argument --limit" in result.stderr


def test_in_memory_graphs_refuse_control_characters_like_the_cli(fake_llm: FakeLLM) -> None:
    graph = WORKFLOWS["article"].compile(InMemorySaver())
    with pytest.raises(ValueError, match="control characters"):
        graph.invoke({"topic": "a\x1bb"}, {"configurable": {"thread_id": "t"}})
    result = fanout(fake_llm, Path("/tmp"), "article", "-", stdin="a\x1bb")
    assert result.returncode == 2 and "control characters (U+001B at position 1)" in result.stderr
