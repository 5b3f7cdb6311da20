"""Every graph end to end on the embedded model, offline, and the README's demo command."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from graphs.article import graph as article
from graphs.evaluation import graph as evaluation
from graphs.research import graph as research
from langgraph_fanout.engine.chat_model import load_local_chat_model
from state.context import Context
from tests.requirements import local_model_weights

pytestmark = pytest.mark.local_model
local_model_weights()

LOCAL = Context(model="local", max_tokens=96, max_sections=3)
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "FANOUT_MODEL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def engine():
    """The engine every graph node shares; its batch high-water mark starts at zero."""
    shared = load_local_chat_model(None, temperature=0.0, max_tokens=LOCAL.max_tokens).engine()
    shared.max_batch = 0
    return shared


async def test_evaluation_three_branches_decode_together(engine):
    result = await evaluation.ainvoke({"text": "Wash your hands before cooking."}, context=LOCAL)

    assert engine.max_batch == 3  # the three evaluators were decoded in one batch
    assert [e["evaluator"] for e in result["evaluations"]] == ["safety", "tone", "audience_fit"]
    assert all(e["explanation"].strip() for e in result["evaluations"])
    assert result["votes"] == sum(e["is_appropriate"] for e in result["evaluations"])
    assert isinstance(result["is_appropriate"], bool) and result["summary"].strip()


def test_article_sync_writers_decode_together(engine):
    result = article.invoke({"topic": "Composting at home"}, context=LOCAL)

    assert 2 <= len(result["sections"]) <= 3
    assert engine.max_batch == len(result["sections"])  # sync nodes on threads: batched too
    assert [s["name"] for s in result["completed_sections"]] == [
        s["name"] for s in result["sections"]
    ]
    assert all(s["content"].strip() for s in result["completed_sections"])
    assert result["article"].startswith("# Composting at home")


async def test_research_researchers_decode_together(engine):
    result = await research.ainvoke({"topic": "Solar panels"}, context=LOCAL)

    assert 2 <= result["task_count"] <= 4
    assert engine.max_batch == result["task_count"]
    assert len(result["findings"]) == result["task_count"]
    assert all(f["answer"].strip() for f in result["findings"]) and result["report"].strip()


def test_the_readme_demo_command(tmp_path):
    recipe = re.search(r"^demo:.*\n\t\$\(BIN\)/(fanout .*)$", (ROOT / "Makefile").read_text(), re.M)
    assert recipe is not None
    command = shlex.split(recipe.group(1).replace("$(TOPIC)", "Durable execution"))
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "FANOUT_MODEL")}

    result = subprocess.run(
        [
            str(Path(sys.executable).with_name(command[0])),
            *command[1:],
            "--json",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stderr
    assert "embedded, demo-grade" in result.stderr
    output = json.loads(result.stdout)
    assert output["article"].startswith("# Durable execution")
    assert 1 <= len(output["completed_sections"]) <= 4
    assert output["usage"]["llm_calls"] == 1 + len(output["completed_sections"])
