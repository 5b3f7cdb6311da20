"""Plan review from Python: pause after planning, resume with the plan, an edit, or a rejection.

Both orchestrators, through the real client and the fake LLM; the fake's request log says
which workers ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from graphs import article, research
from state.article import MAX_NAME_CHARS
from state.context import Context
from state.review import MAX_REASON_CHARS

REVIEW = Context(review_plan=True, max_sections=4)


@dataclass(frozen=True)
class Case:
    """One orchestrator graph, seen from a review."""

    module: Any
    key: str  # the plan's key in the interrupt value and the resume value
    schema: str  # the planner's structured-output schema, as the fake logs it
    worker_prefix: str  # how a worker's prompt starts
    output: str  # the output key that holds the result text

    def compile(self) -> Any:
        return self.module.builder.compile(checkpointer=InMemorySaver())

    def workers(self, log: list[dict[str, Any]]) -> list[str]:
        """The prompts of the worker calls in ``log``."""
        return [r["last_user"] for r in log if r["last_user"].startswith(self.worker_prefix)]

    def edited(self) -> list[Any]:
        if self.key == "sections":
            return [
                {"name": "Edited first", "description": "What a person wants first."},
                {"name": "Edited second", "description": ""},
            ]
        return ["Edited question one?", "Edited question two?"]

    def names(self, plan: list[Any]) -> list[str]:
        return [item["name"] for item in plan] if self.key == "sections" else list(plan)


ARTICLE = Case(article, "sections", "Sections", "Article topic", "article")
RESEARCH = Case(research, "questions", "ResearchPlan", "Research question", "report")
CASES = pytest.mark.parametrize("case", [ARTICLE, RESEARCH], ids=["article", "research"])


def config(thread: str = "review") -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}}


async def paused(case: Case, graph: Any, thread: str = "review") -> dict[str, Any]:
    """Start a reviewed run; return the value it paused with."""
    result = await graph.ainvoke({"topic": "Tides"}, config(thread), context=REVIEW)
    (interrupt,) = result["__interrupt__"]
    return dict(interrupt.value)


# --- the pause ------------------------------------------------------------------------------


@CASES
async def test_the_run_pauses_with_the_plan_before_any_worker(fake_llm, case: Case) -> None:
    graph = case.compile()

    value = await paused(case, graph)

    assert set(value) == {case.key}
    assert len(value[case.key]) == 3  # the fake plans three items
    assert [r["schema"] for r in fake_llm.log()] == [case.schema]  # the planner only
    state = await graph.aget_state(config())
    assert state.next == (f"review_{case.key}",)
    assert [i.value for i in state.interrupts] == [value]
    assert state.values["review"] == {"decision": "pending", "reason": ""}


@CASES
async def test_without_review_plan_the_run_does_not_pause(fake_llm, case: Case) -> None:
    result = await case.compile().ainvoke({"topic": "Tides"}, config())

    assert "__interrupt__" not in result
    assert result["review"] is None
    assert len(case.workers(fake_llm.log())) == 3


# --- decisions ------------------------------------------------------------------------------


@CASES
@pytest.mark.parametrize("how", ["approve", "same-plan"])
async def test_approving_runs_the_plan_as_planned(fake_llm, case: Case, how: str) -> None:
    graph = case.compile()
    value = await paused(case, graph)
    answer = {"approve": True} if how == "approve" else value

    result = await graph.ainvoke(Command(resume=answer), config(), context=REVIEW)

    assert result["review"] == {"decision": "approved", "reason": ""}
    workers = case.workers(fake_llm.log())
    assert len(workers) == 3
    for name in case.names(value[case.key]):
        assert sum(name in prompt for prompt in workers) == 1
    assert result[case.output]


@CASES
async def test_an_edited_plan_runs_exactly_as_edited(fake_llm, case: Case) -> None:
    graph = case.compile()
    await paused(case, graph)
    fake_llm.reset()

    result = await graph.ainvoke(
        Command(resume={case.key: case.edited()}), config(), context=REVIEW
    )

    assert result["review"] == {"decision": "edited", "reason": ""}
    workers = case.workers(fake_llm.log())
    names = case.names(case.edited())
    assert len(workers) == len(names)
    assert [[n for n in names if n in w] for w in workers] in (
        [[n] for n in names],
        [[n] for n in reversed(names)],
    )
    if case.key == "sections":
        assert result["sections"] == case.edited()
        assert [s["name"] for s in result["completed_sections"]] == names
    else:
        assert [f["question"] for f in result["findings"]] == names
        assert result["task_count"] == 2


@CASES
async def test_rejecting_ends_the_run_without_any_worker(fake_llm, case: Case) -> None:
    graph = case.compile()
    await paused(case, graph)

    result = await graph.ainvoke(
        Command(resume={"reject": True, "reason": "too broad"}), config(), context=REVIEW
    )

    assert result["review"] == {"decision": "rejected", "reason": "too broad"}
    assert result[case.output] == ""
    assert case.workers(fake_llm.log()) == []
    assert [r["schema"] for r in fake_llm.log()] == [case.schema]
    assert (await graph.aget_state(config())).next == ()  # finished


async def test_a_rejected_run_leaves_nothing_stale_for_the_next_run_on_its_thread(
    fake_llm,
) -> None:
    graph = ARTICLE.compile()
    await graph.ainvoke({"topic": "Tides"}, config(), context=Context())  # a whole article
    await paused(ARTICLE, graph)  # a reviewed run on the same thread

    rejected = await graph.ainvoke(Command(resume={"reject": True}), config(), context=REVIEW)
    again = await graph.ainvoke({"topic": "Moons"}, config(), context=Context())

    assert rejected["article"] == "" and rejected["completed_sections"] == []
    assert again["review"] is None and again["article"].startswith("# Moons")


def test_the_review_works_through_sync_invoke(fake_llm) -> None:
    graph = RESEARCH.compile()

    first = graph.invoke({"topic": "Tides"}, config(), context=REVIEW)
    result = graph.invoke(Command(resume={"approve": True}), config(), context=REVIEW)

    assert len(first["__interrupt__"][0].value["questions"]) == 3
    assert result["task_count"] == 3 and result["review"]["decision"] == "approved"


# --- bad decisions: the run stays paused, with the reason, and can be resumed again ----------

LONG_NAME = "x" * (MAX_NAME_CHARS + 1)


@pytest.mark.parametrize(
    ("case", "answer", "error"),
    [
        (ARTICLE, 3, 'expected {"sections": [...]}'),
        (ARTICLE, "approve", 'expected {"sections": [...]}, {"approve": true}'),
        (ARTICLE, ["A", "B"], "got list"),
        (ARTICLE, {"section": []}, "got the keys ['section']"),
        (ARTICLE, {"sections": []}, "sections: List should have at least 1 item"),
        (ARTICLE, {"sections": "A, B"}, "sections: Input should be a valid list"),
        (ARTICLE, {"sections": ({"name": "A"},)}, "sections: Input should be a valid list"),
        (ARTICLE, {"sections": [{"name": f"S{i}"} for i in range(5)]}, "5 sections; at most 4"),
        (ARTICLE, {"sections": [{"name": "A\x00B"}]}, "sections.0.name: must not contain control"),
        (ARTICLE, {"sections": [{"name": "A\nB"}]}, "sections.0.name: must not contain control"),
        (ARTICLE, {"sections": [{"name": "A", "description": "a\x1bb"}]}, "description: must not"),
        (ARTICLE, {"sections": [{"name": "   "}]}, "sections.0.name: must not be empty"),
        (ARTICLE, {"sections": [{"name": "\u200b"}]}, "sections.0.name: must not be empty"),
        (
            ARTICLE,
            {"sections": [{"name": "A\ud800"}]},
            "sections.0.name: Input should be a valid str",
        ),
        (ARTICLE, {"sections": [{"name": LONG_NAME}]}, "at most 200 characters"),
        (ARTICLE, {"sections": [{"name": 7}]}, "sections.0.name: Input should be a valid string"),
        (ARTICLE, {"sections": [{"name": "A", "body": "x"}]}, "sections.0.body: Extra inputs"),
        (ARTICLE, {"sections": [{"name": "A"}], "error": "x"}, "error: Extra inputs"),
        (ARTICLE, {"approve": False}, "approve: Input should be true"),
        (ARTICLE, {"approve": True, "sections": []}, "sections: Extra inputs"),
        (ARTICLE, {"reject": "yes"}, "reject: Input should be a valid boolean"),
        (ARTICLE, {"reject": True, "reason": "r" * 501}, f"at most {MAX_REASON_CHARS}"),
        (ARTICLE, {"reject": True, "reason": "no\x07"}, "reason: must not contain control"),
        (RESEARCH, {"questions": ["Only one?"]}, "questions: List should have at least 2"),
        (RESEARCH, {"questions": [f"Q{i}?" for i in range(5)]}, "at most 4 items"),
        (RESEARCH, {"questions": ["Same?", "Other?", "Same?"]}, "question 3 repeats question 1"),
        (RESEARCH, {"questions": ["A?", "\x00"]}, "questions.1: must not contain control"),
        (RESEARCH, {"questions": ["A?", " "]}, "questions.1: must not be empty"),
        (RESEARCH, {"sections": [{"name": "A"}]}, "got the keys ['sections']"),
    ],
    ids=lambda v: v.key if isinstance(v, Case) else None,
)
async def test_a_bad_decision_pauses_again_with_the_reason(
    fake_llm, case: Case, answer: Any, error: str
) -> None:
    graph = case.compile()
    value = await paused(case, graph)

    result = await graph.ainvoke(Command(resume=answer), config(), context=REVIEW)

    (interrupt,) = result["__interrupt__"]
    assert error in interrupt.value["error"], interrupt.value["error"]
    assert interrupt.value[case.key] == value[case.key]  # the plan, as planned
    assert case.workers(fake_llm.log()) == []
    state = await graph.aget_state(config())
    assert state.next == (f"review_{case.key}",)
    assert state.values["review"] == {"decision": "pending", "reason": interrupt.value["error"]}

    resumed = await graph.ainvoke(Command(resume={"approve": True}), config(), context=REVIEW)

    assert resumed["review"] == {"decision": "approved", "reason": ""}  # the bad answer is gone
    assert len(case.workers(fake_llm.log())) == 3


async def test_each_refusal_says_what_was_wrong_with_the_latest_answer(fake_llm) -> None:
    graph = ARTICLE.compile()
    await paused(ARTICLE, graph)

    first = await graph.ainvoke(Command(resume={"sections": []}), config(), context=REVIEW)
    second = await graph.ainvoke(Command(resume={"approve": 1}), config(), context=REVIEW)
    done = await graph.ainvoke(
        Command(resume={"sections": [{"name": "Only"}]}), config(), context=REVIEW
    )

    assert "at least 1 item" in first["__interrupt__"][0].value["error"]
    assert "approve: Input should be a valid boolean" in second["__interrupt__"][0].value["error"]
    assert done["review"] == {"decision": "edited", "reason": ""}
    assert [s["name"] for s in done["completed_sections"]] == ["Only"]


async def test_line_breaks_in_a_description_become_spaces(fake_llm) -> None:
    graph = ARTICLE.compile()
    await paused(ARTICLE, graph)
    edit = {"sections": [{"name": "Tides", "description": "Spring tides\n and neap\ttides. "}]}

    result = await graph.ainvoke(Command(resume=edit), config(), context=REVIEW)

    assert result["sections"] == [{"name": "Tides", "description": "Spring tides  and neap tides."}]


# --- the model's plan can be sent back unchanged ----------------------------------------------


async def test_a_model_plan_is_cleaned_so_sending_it_back_approves_it(fake_llm) -> None:
    messy = [
        {"name": "  Tabs\tand\x00nulls  ", "description": "Line one.\nLine two.\x7f"},
        {"name": "N" * 500, "description": "d"},
    ]
    fake_llm.add_rules({"schema": "Sections", "response": {"sections": messy}})
    graph = ARTICLE.compile()

    value = await paused(ARTICLE, graph)
    result = await graph.ainvoke(Command(resume=value), config(), context=REVIEW)

    assert value["sections"] == [
        {"name": "Tabs and nulls", "description": "Line one. Line two."},
        {"name": "N" * MAX_NAME_CHARS, "description": "d"},
    ]
    assert result["review"]["decision"] == "approved"
