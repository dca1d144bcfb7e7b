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


def pytest_configure(config):
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
