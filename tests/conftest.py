import os

os.environ.setdefault("MPLBACKEND", "Agg")
# scikit-learn enables array_api_dispatch (its check_array_api_input, our
# device tests) only with scipy's Array API support on; set before scipy loads.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _needs_cuda(item) -> bool:
    """A test with a CUDA variant: marked ``cuda``, or parametrised on it.

    scikit-learn's Array API checks are parametrised by device name
    (``device_name=cuda``, ``device='cuda'``); it skips them only when torch
    was built without CUDA, so a CUDA build on a machine without a GPU would
    fail them.
    """
    if item.get_closest_marker("cuda") is not None:
        return True
    name = item.name
    return "device_name=cuda" in name or "device='cuda'" in name or "[cuda" in name


# The modules whose tests run for minutes (a network trained and analysed, a
# script in a fresh interpreter), longest first. xdist hands tests out in
# collection order, so started last they left one worker running alone for
# minutes at the end; started first, the short tests fill in around them.
_LONG_FIRST = (
    "test_workload.py",
    "test_readme.py",
    "test_examples.py",
    "test_models.py",
    "test_cli.py",
    "test_report.py",
    "test_transformers.py",
)


def _long_first(item) -> int:
    name = item.path.name if hasattr(item, "path") else ""
    return _LONG_FIRST.index(name) if name in _LONG_FIRST else len(_LONG_FIRST)


def pytest_collection_modifyitems(config, items):
    """Put the long-running modules first (whole modules, so module-scoped
    fixtures are still built once), mark every CUDA variant ``cuda``
    (``pytest -m cuda`` runs exactly them) and skip them where torch sees no
    GPU."""
    items.sort(key=_long_first)  # stable: each module keeps its own order
    import torch

    has_gpu = torch.cuda.is_available()
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch sees none)")
    for item in items:
        if _needs_cuda(item):
            item.add_marker(pytest.mark.cuda)
            if not has_gpu:
                item.add_marker(skip)


def pytest_configure(config):
    # The gallery, the README, the demo and several tests train the same
    # digits network: train each once per session (skvmf's training cache,
    # keyed by everything the weights depend on) and share it across the
    # xdist workers and the scripts' subprocesses, which inherit the variable.
    if not os.environ.get("PYTEST_XDIST_WORKER") and not os.environ.get(
        "SKVMF_TRAINING_CACHE"
    ):
        import tempfile

        folder = tempfile.mkdtemp(prefix="skvmf-training-cache-")
        os.environ["SKVMF_TRAINING_CACHE"] = folder
        config._skvmf_training_cache = folder
    # Two xdist workers on a two-core machine: one BLAS/OpenMP/torch thread
    # each. Oversubscribed threads spin-wait and made small products 20-100x
    # slower; a single process keeps every thread.
    if os.environ.get("PYTEST_XDIST_WORKER"):
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1)
        import torch

        torch.set_num_threads(1)


@pytest.fixture
def one_torch_thread():
    """Pin torch to one intra-op thread for a test whose floats depend on the
    thread count (reductions split differently), and restore it afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def pytest_unconfigure(config):
    folder = getattr(config, "_skvmf_training_cache", None)
    if folder is not None:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
        os.environ.pop("SKVMF_TRAINING_CACHE", None)
