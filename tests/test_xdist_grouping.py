"""The suite's slow module fixtures (the digits workload, the CLI demo) are
built once because their tests share an ``xdist_group`` that ``--dist
loadgroup`` keeps on one worker. pytest-xdist 3.8 marks a grouped test by a
suffix of its node id; under pytest 9.2 that suffix silently stops taking
effect (pytest-dev/pytest-xdist#1386) and every worker then builds the
fixtures again, minutes each. This test fails loudly where that happens."""

import os

import pytest


@pytest.mark.xdist_group("grouping_guard")
def test_loadgroup_keeps_a_group_on_one_worker(request):
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        pytest.skip("not run by pytest-xdist")
    if not request.config.getvalue("loadgroup"):
        pytest.skip("not --dist loadgroup")
    assert request.node.nodeid.endswith("@grouping_guard"), (
        "pytest-xdist no longer marks grouped tests (see the pytest pin in "
        "pyproject.toml): the slow fixtures would run once per worker"
    )
