"""analyze(scheduler=...): the alignments run as tasks of a Dask cluster (a
LocalCluster of worker processes here) and give the local run's results."""

import warnings

import numpy as np
import pytest
import torch
from _helpers import four_class_workload
from sklearn.exceptions import ConvergenceWarning

import skvmf
from skvmf.analysis._parallel import _dask_client

distributed = pytest.importorskip("distributed")

FAST = {
    "aligner_params": {"max_epochs": 2, "weight_steps": 2, "n_candidates": 10},
    "projector_params": {"max_iter": 100},
    "layers": ["conv_33", "conv_53"],
    "n_repeats": 2,
    "n_bootstrap": 200,
    "random_state": 0,
}


@pytest.fixture(scope="module")
def workload(tmp_path_factory):
    torch.manual_seed(0)
    ckpt = tmp_path_factory.mktemp("ckpt")
    model, X, y = four_class_workload(ckpt, lr=4e-3)
    return model, X.numpy(), y.numpy(), ckpt


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=40,
    ) as cluster:
        yield cluster


def _quiet(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return skvmf.analyze(*args, **kwargs)


def _same_tables(a, b):
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for key, value in x.items():
            if isinstance(value, float):
                assert value == pytest.approx(y[key], rel=1e-6, abs=1e-9), key
            else:
                assert value == y[key], key


def test_the_cluster_runs_every_fit_and_matches_a_local_run(
    workload, cluster, one_torch_thread, monkeypatch
):
    model, X, y, ckpt = workload
    local = _quiet(model, X, y, checkpoints=ckpt, **FAST)
    with distributed.Client(cluster) as client:
        scattered = []
        scatter = client.scatter
        monkeypatch.setattr(
            client,
            "scatter",
            lambda data, **kw: scattered.append(data) or scatter(data, **kw),
        )
        with distributed.get_task_stream(client) as stream:
            remote = _quiet(model, X, y, checkpoints=ckpt, scheduler=client, **FAST)
        fits = [t for t in stream.data if str(t["key"]).startswith("skvmf-align")]
        workers = {t["worker"] for t in fits}
    # 3 networks (model, 2 checkpoints) x 2 repeats, on the cluster's workers
    assert len(fits) == 6 and workers <= set(cluster.scheduler_info["workers"])
    # the regions went out once per network, not once per task
    assert len(scattered) == 3
    assert all(set(s) == set(FAST["layers"]) for s in scattered)
    _same_tables(local.knowledge, remote.knowledge)
    _same_tables(local.emergence, remote.emergence)
    _same_tables(local.findings, remote.findings)
    np.testing.assert_allclose(
        local.aligner.components_["conv_53"],
        remote.aligner.components_["conv_53"],
        rtol=1e-5,
        atol=1e-7,
    )


def test_a_scheduler_address_works_too(workload, cluster):
    model, X, y, _ = workload
    res = _quiet(model, X, y, scheduler=cluster.scheduler_address, **FAST)
    assert res.settings["scheduler"] == cluster.scheduler_address
    assert len(res.knowledge) == 2


def test_bad_scheduler_is_a_clear_error(workload):
    model, X, y, _ = workload
    with pytest.raises(ValueError, match="address of a Dask scheduler"):
        _dask_client(3)
