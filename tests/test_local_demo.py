"""The offline demo reads like an article, on ten topics, with `make demo`'s settings.

Each plan's section names must be real headings (words, a capital first, unique, not a
generic label such as "Section 1" or "Introduction", not copied from the planner's prompt;
a heading may repeat the topic);
each section must end at a sentence boundary within the token cap and repeat no sentence.
"""

import asyncio
import re

import pytest

from graphs.article import graph as article
from langgraph_fanout.engine.chat_model import load_local_chat_model
from nodes.prompts import ORCHESTRATOR_SYSTEM
from state.context import Context
from tests.requirements import local_model_weights

# The ten articles take ~65 s of one core (340-520 s in CI, beside three other pytest workers on
# the same two cores): two xdist groups write five each, side by side.
pytestmark = [pytest.mark.local_model, pytest.mark.timeout(900)]
local_model_weights()

MAX_TOKENS = 160
DEMO = Context(model="local", max_sections=4, max_tokens=MAX_TOKENS)  # as `make demo`
TOPICS = [
    "Why durable execution matters for AI agents",
    "Heat pumps in cold climates",
    "The history of the bicycle",
    "How vaccines work",
    "Urban beekeeping",
    "Composting at home",
    "Learning to play chess",
    "The water cycle",
    "Remote work and productivity",
    "Volcanoes",
]
GENERIC = re.compile(
    r"(section|part|chapter|step|heading|title|topic|name)( \w+)?|introduction|description|"
    r"overview|conclusion|summary|background|untitled|details|content",
    re.IGNORECASE,
)
HEADING = re.compile(r"[A-Z][\w'’&,.:()-]*( [\w'’&,.:()-]+){0,7}")
SENTENCE_END = re.compile(r"[.!?][\"'’”)\]*]*$")
SENTENCE = re.compile(r"[^.!?]+[.!?]+")
HALVES = (TOPICS[:5], TOPICS[5:])
"""Each half is written in one batch, by the worker of its own xdist group under ``make test``."""
PARAMS = [
    pytest.param(topic, marks=pytest.mark.xdist_group(f"local_model:test_local_demo:{n}"))
    for n, half in enumerate(HALVES)
    for topic in half
]


@pytest.fixture(scope="module")
def written() -> dict[str, dict]:
    """The articles this process wrote, by topic."""
    return {}


@pytest.fixture
def articles(written: dict[str, dict], topic: str) -> dict[str, dict]:
    """The articles, the topic's half of them written (together) if this process has not yet."""
    if topic not in written:
        (half,) = [half for half in HALVES if topic in half]

        async def write_all() -> list[dict]:
            return await asyncio.gather(
                *(article.ainvoke({"topic": subject}, context=DEMO) for subject in half)
            )

        written.update(zip(half, asyncio.run(write_all()), strict=True))
    return written


@pytest.mark.parametrize("topic", PARAMS)
def test_section_names_are_real_headings(articles: dict[str, dict], topic: str) -> None:
    names = [s["name"] for s in articles[topic]["sections"]]
    assert 2 <= len(names) <= DEMO.max_sections, names
    assert len({n.casefold() for n in names}) == len(names), f"repeated heading: {names}"
    for name in names:
        assert HEADING.fullmatch(name), f"not a heading: {name!r}"
        assert not GENERIC.fullmatch(name), f"generic heading: {name!r}"
        assert name.casefold() not in ORCHESTRATOR_SYSTEM.casefold(), f"from the prompt: {name!r}"


@pytest.mark.parametrize("topic", PARAMS)
def test_sections_end_at_a_sentence_boundary_within_the_cap(
    articles: dict[str, dict], topic: str
) -> None:
    sections = articles[topic]["completed_sections"]
    for section in sections:
        content = section["content"]
        assert SENTENCE_END.search(content), f"{section['name']!r} ends mid-sentence: {content!r}"
    engine = load_local_chat_model(None, temperature=0.0, max_tokens=MAX_TOKENS).engine()
    assert all(len(engine.tokenize(s["content"], add_bos=False)) <= MAX_TOKENS for s in sections)


@pytest.mark.parametrize("topic", PARAMS)
def test_no_sentence_is_repeated_within_a_section(articles: dict[str, dict], topic: str) -> None:
    for section in articles[topic]["completed_sections"]:
        sentences = [" ".join(s.split()) for s in SENTENCE.findall(section["content"])]
        repeated = {s for s in sentences if len(s.split()) >= 3 and sentences.count(s) > 1}
        assert not repeated, f"{section['name']!r} repeats {repeated}"
