"""An OpenAI-compatible fake LLM server on 127.0.0.1, shared by the tests and the benchmarks.

``python -m tests.fake_llm`` serves it (:mod:`tests.fake_llm.server`); :func:`start_fake_llm`
runs it in a subprocess and yields a :class:`FakeLLM` handle on its control API
(:mod:`tests.fake_llm.client`).
"""

from tests.fake_llm.client import FakeLLM, start_fake_llm

__all__ = ["FakeLLM", "start_fake_llm"]
