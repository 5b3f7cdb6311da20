"""`make test`'s layout: each embedded-model module runs on one worker, and the modules that
start servers are handed out first.

A pytest release can silently break `--dist loadgroup` (pytest-xdist issue 1386: every test
then goes to any worker, and each embedded-model module fixture runs once per worker).
"""

import pytest

from tests.conftest import FIRST


@pytest.mark.local_model
def test_embedded_model_tests_are_grouped_on_one_worker(request: pytest.FixtureRequest) -> None:
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("not under pytest-xdist --dist loadgroup")
    assert request.node.nodeid.endswith("@local_model:test_parallel_layout"), request.node.nodeid


def test_modules_that_start_servers_are_handed_out_first(request: pytest.FixtureRequest) -> None:
    items = request.session.items
    starts_servers = [any(item.get_closest_marker(m) for m in FIRST) for item in items]
    modules = [item.path for item in items]
    first = {path for path, starts in zip(modules, starts_servers, strict=True) if starts}
    order = [path in first for path in modules]
    assert order == sorted(order, reverse=True), "a module that starts servers comes late"
    starts = [path for n, path in enumerate(modules) if n == 0 or modules[n - 1] != path]
    assert len(starts) == len(set(modules)), "a module's tests were split apart"
