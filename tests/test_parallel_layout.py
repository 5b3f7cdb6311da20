"""`make test`'s xdist groups are honoured: the embedded-model tests share one worker.

A pytest release can silently break `--dist loadgroup` (pytest-xdist issue 1386: every test
then goes to any worker, and each embedded-model module fixture runs once per worker).
"""

import pytest


@pytest.mark.local_model
def test_embedded_model_tests_are_grouped_on_one_worker(request: pytest.FixtureRequest) -> None:
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("not under pytest-xdist --dist loadgroup")
    assert request.node.nodeid.endswith("@local_model"), request.node.nodeid
