"""The fits fanned out: each repeat's projections in joblib processes, and
the alignments (one per network and repeat) in joblib processes or as tasks
of a Dask cluster; only what each fit reads travels to the workers."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.exceptions import ConvergenceWarning

from .. import _array_api
from .._utils.progress import progress
from ..alignment import RegionalAligner
from ..features import FeatureSet
from ..projection import SampleProjector
from ._inputs import _MAIN


def _rows(array, index):
    """Rows ``index`` (host integers) of an array of any namespace, taken
    on the array's device."""
    if isinstance(array, np.ndarray):
        return array[index]
    xp, _, dev = _array_api.get_namespace_and_device(array)
    return xp.take(array, xp.asarray(index, device=dev), axis=0)


def _project_repeat(sets, params, seed, n_threads=None):
    """One repeat's projections: {network: fitted SampleProjector}.

    Checkpoints are fitted in one shared frame
    (:meth:`SampleProjector.fit_sequence`), in training order. ``n_threads``
    pins torch's threads in a worker process.
    """
    if n_threads is not None:
        torch.set_num_threads(n_threads)
    params = {**params, "random_state": seed}
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # in diagnostics
        for key, fs in sets.items():
            if key == _MAIN or key[0] == "student":
                out[key] = SampleProjector(**params).fit(fs)
        checkpoints = [k for k in sets if k != _MAIN and k[0] == "checkpoint"]
        if checkpoints:
            fitted = SampleProjector(**params).fit_sequence(
                [sets[k] for k in checkpoints]
            )
            out.update(dict(zip(checkpoints, fitted)))
    return out


def _fit_projections(feats, fit_idx, seeds, projector_params, n_jobs):
    """One fitted SampleProjector per (repeat, network), on the fit images;
    the repeats in parallel processes with ``n_jobs`` (only the sample
    features and soft labels travel)."""
    sets = {
        key: FeatureSet(
            sample=_rows(fs.sample, fit_idx),
            soft_labels=_rows(fs.soft_labels, fit_idx),
            classes=fs.classes,
        )
        for key, fs in feats.items()
    }
    n_jobs = min(effective_n_jobs(n_jobs), len(seeds))
    on_device = str(projector_params.get("device", "cpu")) != "cpu"
    if n_jobs == 1 or on_device or _array_api.dispatch_enabled():
        per_repeat = [_project_repeat(sets, projector_params, s) for s in seeds]
    else:
        threads = max(1, torch.get_num_threads() // n_jobs)
        per_repeat = Parallel(n_jobs=n_jobs)(
            delayed(_project_repeat)(sets, projector_params, s, threads) for s in seeds
        )
    return {
        (r, key): proj
        for r, fitted in enumerate(per_repeat)
        for key, proj in fitted.items()
    }


def _fit_aligner_job(params, fs, n_threads):
    torch.set_num_threads(n_threads)
    return RegionalAligner(**params).fit(fs)


def _fit_aligner_remote(params, regions, grid, soft_labels, g):
    """One alignment on a Dask worker: one torch thread per task (a worker
    runs as many tasks as it has threads)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fs = FeatureSet(regions=regions, grid=grid, soft_labels=soft_labels, g=g)
        return RegionalAligner(**params).fit(fs)
    finally:
        torch.set_num_threads(before)


def _dask_client(scheduler):
    """A ``distributed.Client`` for ``scheduler`` (a Client, or the address
    of a running scheduler), and whether this call opened it."""
    try:
        from distributed import Client
    except ImportError as exc:
        raise ImportError(
            "scheduler= runs the alignments on a Dask cluster and needs the "
            "'distributed' package: pip install 'skvmf[dask]'"
        ) from exc
    if isinstance(scheduler, Client):
        return scheduler, False
    if not isinstance(scheduler, str) or not scheduler:
        raise ValueError(
            "scheduler must be a distributed.Client or the address of a Dask "
            f"scheduler (e.g. 'tcp://10.0.0.5:8786'); got {scheduler!r}"
        )
    return Client(scheduler), True


def _fit_aligners_dask(jobs, params_of, scheduler, verbose):
    """The alignments as tasks of a Dask cluster.

    The regional features, the large inputs, are scattered once per network
    (every repeat of a network aligns the same regions with another seed);
    each task then receives only its small g and soft labels.
    """
    from distributed import as_completed

    client, opened = _dask_client(scheduler)
    try:
        shared = {}
        for (_, key), fs in jobs.items():
            if key not in shared:
                shared[key] = client.scatter(dict(fs.regions), broadcast=False)
        futures = {
            client.submit(
                _fit_aligner_remote,
                {**params_of(job), "verbose": 0, "n_jobs": None},
                shared[job[1]],
                fs.grid,
                np.asarray(fs.soft_labels),
                np.asarray(fs.g),
                key=f"skvmf-align-{job[0]}-{_slug_key(job[1])}-{id(jobs)}",
                pure=False,
            ): job
            for job, fs in jobs.items()
        }
        fitted = {}
        for future in progress(
            as_completed(futures),
            verbose=verbose,
            total=len(futures),
            desc="aligning (dask)",
            unit="network",
        ):
            fitted[futures[future]] = future.result()
        return {job: fitted[job] for job in jobs}
    finally:
        if opened:
            client.close()


def _slug_key(key) -> str:
    return "-".join(str(k) for k in (key if isinstance(key, tuple) else (key,)))


def _fit_aligners(jobs, params_of, n_jobs, verbose, scheduler=None):
    """A fitted RegionalAligner for every FeatureSet of ``jobs``.

    ``params_of(key)`` gives the aligner's parameters of a job. With a
    ``scheduler``, the fits run on that Dask cluster; else in ``n_jobs``
    local processes (joblib, which also follows an active
    ``joblib.parallel_backend``).
    """
    if scheduler is not None:
        return _fit_aligners_dask(jobs, params_of, scheduler, verbose)
    n_jobs = effective_n_jobs(n_jobs)
    devices = {str(params_of(key).get("device", "cpu")) for key in jobs}
    # the tensor path stays in this process: its features live on a device
    # (and dispatch is this process' configuration)
    tensors = _array_api.dispatch_enabled()
    if n_jobs == 1 or len(jobs) == 1 or devices != {"cpu"} or tensors:
        return {
            key: RegionalAligner(**params_of(key)).fit(fs) for key, fs in jobs.items()
        }
    # whole networks per worker (balanced jobs), one torch thread each; only
    # what the aligner reads travels to the workers
    threads = max(1, torch.get_num_threads() // min(n_jobs, len(jobs)))
    slim = {
        key: FeatureSet(
            regions=fs.regions, grid=fs.grid, soft_labels=fs.soft_labels, g=fs.g
        )
        for key, fs in jobs.items()
    }
    fitted = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(_fit_aligner_job)({**params_of(key), "verbose": 0}, fs, threads)
        for key, fs in slim.items()
    )
    fitted = progress(
        fitted, verbose=verbose, total=len(slim), desc="aligning", unit="network"
    )
    return dict(zip(slim, fitted))
