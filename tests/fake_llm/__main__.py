"""``python -m tests.fake_llm``: serve the fake LLM (see :mod:`tests.fake_llm.server`)."""

from tests.fake_llm.server import main

main()
