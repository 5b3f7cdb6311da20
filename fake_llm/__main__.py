"""``python -m fake_llm``: serve the fake LLM (see :mod:`fake_llm.server`)."""

from fake_llm.server import main

main()
