"""The analysis as named steps: plan the run (images, split, seeds, every
stage's parameters), extract, fit the stages, measure, and :func:`analyze`,
which runs them in order and hands the studies and the findings the result."""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Mapping, Sequence
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import torch
from sklearn import config_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, validate_params

from .. import _array_api
from .._torch.devices import resolve_device
from .._utils import warn as _warn
from .._utils.figures import thumbnails
from .._utils.progress import message, progress
from .._utils.uncertainty import Resampler
from ..extraction import TorchFeatureExtractor
from ._findings import _diagnostics, _findings, _warn_diagnostics
from ._inputs import _MAIN, _floats, _images_and_labels, _networks, _normalisation
from ._measures import (
    _knowledge_table,
    _layer_measures,
    _projection_measures,
    _projection_table,
)
from ._parallel import _fit_aligners, _fit_projections
from ._result import AnalysisResult
from ._studies import _check_attack, _optional_analyses


def _split(y, held_out, random_state):
    """Fit and evaluation images: a stratified split, or all images twice.

    Every class with two or more images keeps at least one on each side, so
    the projection sees every category and every category is evaluated.
    """
    if held_out == 0:
        everyone = np.arange(len(y))
        return everyone, everyone
    rng = np.random.default_rng(random_state)
    fit, held = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        if len(idx) < 2:
            fit.extend(idx)  # nothing to hold out without losing the class
            continue
        k = int(round(held_out * len(idx)))
        k = min(max(k, 1), len(idx) - 1)
        held.extend(idx[:k])
        fit.extend(idx[k:])
    fit, held = np.sort(np.asarray(fit)), np.sort(np.asarray(held))
    if len(held) == 0:
        raise ValueError(
            f"held_out={held_out} leaves no held-out image (every class has a "
            "single image); give more images or held_out=0"
        )
    if len(fit) < 3:
        raise ValueError(
            f"held_out={held_out} leaves {len(fit)} image(s) to fit on; at least "
            "3 are needed"
        )
    return fit, held


def _repeat_seeds(random_state, n_repeats) -> list[int]:
    """One independent seed per repeat, from the analysis' seed."""
    base = np.random.SeedSequence(
        int(np.random.RandomState(random_state).randint(0, 2**31 - 1))
        if not isinstance(random_state, (int, np.integer))
        else int(random_state)
    )
    return [int(s.generate_state(1)[0] % (2**31 - 1)) for s in base.spawn(n_repeats)]


def _extract(model, X, layers, extractor_params):
    extractor = TorchFeatureExtractor(model, layers, **extractor_params).fit(X[:1])
    if _array_api.dispatch_enabled():
        # the tensor path: torch images give features on the model's device
        return extractor, extractor.transform(torch.from_numpy(X))
    return extractor, extractor.transform(X)


def _extract_networks(networks, X, layers, extractor_params, verbose):
    """Every network's FeatureSet of all images, and the main extractor."""
    feats, extractor = {}, None
    for key, net in progress(
        networks.items(),
        verbose=verbose,
        total=len(networks),
        desc="extracting",
        unit="network",
    ):
        ext, fs = _extract(net, X, layers, extractor_params)
        if key == _MAIN:
            extractor, layers = ext, list(fs.regions)
        feats[key] = fs
    return extractor, feats


def _warn_low_tau(tau, n_classes):
    """Every region is a knowledge point when ``tau <= 1/C``: say so."""
    if tau <= 1 / n_classes:
        _warn.warn(
            f"tau={tau} is at or below 1/C = {1 / n_classes:.3g} for {n_classes} "
            "classes: the largest posterior of every region exceeds it, so every "
            "region is a knowledge point and the counts say nothing; use a tau "
            "above 1/C",
            UserWarning,
        )


@dataclasses.dataclass
class _Plan:
    """What one :func:`analyze` run does: its images, split, seeds and the
    parameters of every stage, fixed before any network runs."""

    X: np.ndarray
    y: np.ndarray
    classes: list
    mean: object
    std: object
    fit_idx: np.ndarray
    eval_idx: np.ndarray
    seeds: list
    extractor_params: dict
    projector_params: dict
    aligner_params: dict
    counter_params: dict
    run: dict  # n_repeats, held_out, n_bootstrap, confidence, random_state...

    @property
    def held_out(self) -> bool:
        return self.run["held_out"] > 0

    def resampler(self) -> Resampler:
        """The bootstrap over repeats and held-out images."""
        r = self.run
        return Resampler(
            r["n_repeats"],
            len(self.eval_idx),
            r["n_bootstrap"],
            r["confidence"],
            r["random_state"],
        )


def _plan(model, images, labels, classes, mean, std, stage_params, run):
    """Step 1: check the images, split them, draw the repeats' seeds and
    fill in every stage's parameters."""
    X, y = _images_and_labels(images, labels, model)
    mean, std = _normalisation(images, mean, std)
    if classes is None:
        classes = getattr(images, "classes", None)
    n_classes = int(max(y.max() + 1, 2, len(classes) if classes is not None else 0))
    classes = [str(c) for c in (classes if classes is not None else range(n_classes))]
    _warn_low_tau(run["tau"], n_classes)
    fit_idx, eval_idx = _split(y, run["held_out"], run["random_state"])
    device, verbose = run["device"], run["verbose"]
    projector_params = {
        "n_components": run["n_components"],
        "device": device,
        # restarts: the projection's objective has local optima (single
        # starts merged two digits in half the seeds); the lowest-loss start
        # is kept, a criterion blind to the findings
        "n_init": 3,
        **(stage_params["projector"] or {}),
    }
    projector_params.pop("random_state", None)  # one seed per repeat
    aligner_params = {
        "device": device,
        "verbose": verbose,
        # every other fit image when there are fewer than the default 100
        "n_candidates": min(100, max(1, len(fit_idx) - 1)),
        **(stage_params["aligner"] or {}),
    }
    aligner_params.pop("random_state", None)
    return _Plan(
        X=X,
        y=y,
        classes=classes,
        mean=mean,
        std=std,
        fit_idx=fit_idx,
        eval_idx=eval_idx,
        seeds=_repeat_seeds(run["random_state"], run["n_repeats"]),
        extractor_params=stage_params["extractor"],
        projector_params=projector_params,
        aligner_params=aligner_params,
        counter_params={"tau": run["tau"], **(stage_params["counter"] or {})},
        run=run,
    )


def _fit_stages(plan, feats, layer_names, n_jobs, scheduler, step, timings):
    """Step 3: every repeat's projections and aligners, fitted quietly on the
    fit images (the diagnostics report the stages' health afterwards)."""
    n_repeats = plan.run["n_repeats"]
    t = step(f"projecting ({n_repeats} repeat(s))")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        projectors = _fit_projections(
            feats, plan.fit_idx, plan.seeds, plan.projector_params, n_jobs
        )
        timings["projection"] = time.perf_counter() - t
        jobs = {
            (r, key): proj.transform(feats[key][plan.fit_idx])
            for (r, key), proj in projectors.items()
        }
        t = step(
            f"aligning {len(layer_names)} layers of {len(feats)} network(s), "
            f"{n_repeats} repeat(s)"
        )
        aligners = _fit_aligners(
            jobs,
            lambda key: {**plan.aligner_params, "random_state": plan.seeds[key[0]]},
            n_jobs,
            plan.run["verbose"],
            scheduler,
        )
        timings["alignment"] = time.perf_counter() - t
    return projectors, aligners


def _measure(plan, feats, projectors, aligners, layer_names):
    """Step 4: embed every image with each repeat's fitted estimators, fit
    the counters on the fit images and measure on the held-out ones."""
    embedded = {
        (r, key): aligners[(r, key)].transform(proj.transform(feats[key]))
        for (r, key), proj in projectors.items()
    }
    fit_idx, eval_idx = plan.fit_idx, plan.eval_idx
    y_fit, y_eval = plan.y[fit_idx], plan.y[eval_idx]
    measures, counters = {}, {}
    for (r, key), fs in embedded.items():
        counter, per_layer = _layer_measures(
            fs[fit_idx], y_fit, fs[eval_idx], y_eval, layer_names, plan.counter_params
        )
        counters[(r, key)] = counter
        measures[(r, key)] = {
            "projection": _projection_measures(
                fs[eval_idx], projectors[(r, key)], y_eval
            ),
            "projection_fit": _projection_measures(
                fs[fit_idx], projectors[(r, key)], y_fit
            ),
            "layers": per_layer,
        }
    return embedded, measures, counters


def _settings(plan, layer_names, fs, scheduler):
    """The run's settings as recorded in the result and the report."""
    run, n_eval = plan.run, len(plan.eval_idx)
    return {
        "n_images": len(plan.y),
        "n_fit_images": len(plan.fit_idx),
        "n_held_out_images": n_eval if plan.held_out else 0,
        "held_out": run["held_out"],
        "n_repeats": run["n_repeats"],
        "repeat_seeds": plan.seeds,
        "n_bootstrap": run["n_bootstrap"],
        "confidence": run["confidence"],
        "layers": layer_names,
        "tau": run["tau"],
        "n_components": run["n_components"],
        "temperature": plan.extractor_params["temperature"],
        "grid": list(fs.grid),
        "device": str(run["device"]),
        "array_api_dispatch": bool(run.get("tensors", False)),
        "scheduler": None if scheduler is None else str(scheduler),
        "random_state": run["random_state"],
        "projector": dict(plan.projector_params),
        "aligner": {k: v for k, v in plan.aligner_params.items() if k != "verbose"},
        "counter": plan.counter_params,
    }


def _result(plan, extractor, fitted, layer_names, tables, scheduler):
    """The result of the first repeat's main network, with every table."""
    projectors, aligners, counters, embedded, _ = fitted
    fs = embedded[(0, _MAIN)]
    projection, knowledge = tables
    return AnalysisResult(
        features=fs,
        labels=plan.y,
        classes=plan.classes,
        layers=layer_names,
        extractor=extractor,
        projector=projectors[(0, _MAIN)],
        aligner=aligners[(0, _MAIN)],
        counter=counters[(0, _MAIN)],
        projection=projection,
        knowledge=knowledge,
        mean=_floats(plan.mean),
        std=_floats(plan.std),
        settings=_settings(plan, layer_names, fs, scheduler),
        fit_index=plan.fit_idx,
        eval_index=plan.eval_idx,
    )


_ANALYZE_PARAMS = {
    "model": [torch.nn.Module],
    "images": ["array-like", torch.Tensor, torch.utils.data.Dataset],
    "labels": [None, "array-like", torch.Tensor],
    "layers": [None, list, tuple],
    "classes": [None, list, tuple],
    "checkpoints": [None, str, Path, list, tuple],
    "attack": ["boolean", dict, None],
    "students": [None, Mapping],
    "faithfulness": ["boolean", dict],
    "n_components": [Interval(Integral, 1, None, closed="left")],
    "tau": [Interval(Real, 0, 1, closed="neither")],
    "temperature": [Interval(Real, 0, None, closed="neither")],
    "grid": [None, Interval(Integral, 1, None, closed="left"), tuple, list],
    "n_repeats": [Interval(Integral, 1, None, closed="left")],
    "held_out": [Interval(Real, 0, 1, closed="left")],
    "n_bootstrap": [Interval(Integral, 100, None, closed="left")],
    "confidence": [Interval(Real, 0, 1, closed="neither")],
    "projector_params": [None, Mapping],
    "aligner_params": [None, Mapping],
    "counter_params": [None, Mapping],
    "mean": [None, "array-like"],
    "std": [None, "array-like"],
    "n_display": [Interval(Integral, 0, None, closed="left")],
    "batch_size": [Interval(Integral, 1, None, closed="left")],
    "device": [str, torch.device],
    "array_api_dispatch": ["boolean", None],
    "n_jobs": [None, Integral],
    "scheduler": [None, str, object],
    "random_state": ["random_state"],
    "verbose": ["verbose"],
}


@validate_params(_ANALYZE_PARAMS, prefer_skip_nested_validation=True)
def analyze(
    model: torch.nn.Module,
    images,
    labels=None,
    *,
    layers: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
    checkpoints=None,
    attack=None,
    students: Mapping[str, torch.nn.Module] | None = None,
    faithfulness=False,
    n_components: int = 3,
    tau: float = 0.4,
    temperature: float = 4.0,
    grid=None,
    n_repeats: int = 3,
    held_out: float = 0.5,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    projector_params: Mapping | None = None,
    aligner_params: Mapping | None = None,
    counter_params: Mapping | None = None,
    mean=None,
    std=None,
    n_display: int = 24,
    batch_size: int = 64,
    device: str = "cpu",
    array_api_dispatch: bool | None = None,
    n_jobs: int | None = None,
    scheduler=None,
    random_state=0,
    verbose: int = 0,
) -> AnalysisResult:
    """Visualise and count the knowledge points of a CNN, layer by layer.

    Runs the method of Li, Wang and Zhang (NeurIPS 2021) end to end: the
    sample features of the images are projected to a d'-dimensional space in
    which a revised-vMF category model mimics the network's soft labels
    (:class:`SampleProjector`); each layer's regional features are embedded
    in that same space (:class:`RegionalAligner`); regions whose category
    posterior exceeds ``tau`` are knowledge points, reliable when they point
    to the image's label (:class:`KnowledgePointCounter`).

    Every figure is a measurement with its uncertainty:

    - the images are split (stratified by label) into *fit* images, on
      which the projection, the aligners and the counters are fitted, and
      *held-out* images, on which every figure is measured (``held_out=0``
      measures on the fit images, and the result says so);
    - what is random (the projection's and the aligners' seeds) is repeated
      ``n_repeats`` times;
    - every headline figure gets a ``confidence`` interval from a bootstrap
      that draws a repeat and resamples the held-out images together;
    - the paper's properties are checked as :attr:`AnalysisResult.findings`
      (value, interval, whether the interval supports the paper's
      direction), and every fitted stage's loss curve is kept, with a
      :class:`~sklearn.exceptions.ConvergenceWarning` for any that did not
      fall (:attr:`AnalysisResult.diagnostics`).

    Optionally, on the same images:

    - ``checkpoints``: the same analysis at every training checkpoint, the
      sample projections sharing one coordinate system (emergence of
      knowledge points during training);
    - ``attack``: a PGD attack on the held-out images; adversarial regions
      are embedded with the clean Lambda and compared with the clean ones
      per layer;
    - ``students``: distilled students analysed like the teacher.

    Parameters
    ----------
    model : torch.nn.Module
        The trained classifier (the teacher when ``students`` are given).
    images : array-like (N, C, H, W), tensor or Dataset
        The analysed images, normalised as the model expects. A Dataset
        yields (image, label) items.
    labels : array-like of int (N,), optional
        True labels; taken from the Dataset when omitted.
    layers : list of str, optional
        Module names or the paper's aliases (``"conv_53"``...); default the
        paper's five layers of a recognised architecture.
    classes : list of str, optional
        Category names (default the Dataset's ``classes`` or "0".."C-1").
    checkpoints : directory, list of paths, models or (iteration, model), optional
        Training checkpoints for the emergence analysis, read as ``skvmf
        analyze --checkpoints-dir`` reads them
        (:func:`skvmf.sources.load_checkpoints`): skvmf checkpoints rebuild
        their network; files of plain weights (``state_dict``) are loaded
        into a copy of ``model``. The iteration is the file's own, else the
        number in its name.
    attack : bool or dict, optional
        A PGD attack (:func:`skvmf.attacks.pgd_attack`, untargeted, L-inf) on
        the held-out images: ``True`` for the default budget, or a dict of
        its parameters, among them

        - ``"epsilon"``: the L-inf radius, finite and >= 0, in pixel units
          (images in [0, 1] before the normalisation) when ``std`` is known,
          else in input units; default 0.2;
        - ``"n_steps"``: gradient steps, >= 1; default 10;
        - ``"step_size"``: the step of each iteration, finite and >= 0;
          default ``2.5 * epsilon / n_steps``;

        and ``random_start``, ``batch_size``, ``mean``, ``std``. The default
        budget is the smallest of a grid that fools at least 90 % of the
        held-out digits on the demo's network and on a small CNN (see the
        benchmarks page); another network or data may need more. The
        result reports the attack's success rate (fooled / classified
        correctly before) with its interval; the attack findings are made
        on the fooled images only and are not evaluated when fewer than 10
        were fooled (their note says what to raise). An unknown key or a
        value out of range is a ValueError before any work.
    students : dict of str to torch.nn.Module, optional
        Students to compare with the teacher (same layer names).
    faithfulness : bool or dict, default=False
        Also score, on the held-out images, the knowledge-point maps of the
        two deepest layers against Grad-CAM (deepest layer) and guided
        backpropagation (ReLU networks) and a random map, by deletion and
        insertion curves (:func:`skvmf.faithfulness.compare_faithfulness`;
        a dict passes its parameters, e.g. ``{"steps": 16}``).
    n_components : int, default=3
        Dimension d' of the projected space.
    tau : float, default=0.4
        Knowledge-point threshold (a warning when it is at most 1/C: every
        region is then a point).
    temperature : float, default=4.0
        Temperature of the soft labels.
    grid : int or (int, int), optional
        Common region grid (default that of the deepest layer).
    n_repeats : int, default=3
        Repeats of everything random (projection and alignment seeds).
    held_out : float in [0, 1), default=0.5
        Fraction of the images (per class) held out of every fit and used to
        measure; 0 measures on the fit images.
    n_bootstrap : int, default=1000
        Bootstrap draws of the intervals.
    confidence : float, default=0.95
        Coverage of the intervals.
    projector_params, aligner_params, counter_params : dict, optional
        Extra parameters of :class:`SampleProjector`,
        :class:`RegionalAligner` and :class:`KnowledgePointCounter`.
    mean, std : sequence of float, optional
        The images' normalisation (default a Dataset's ``mean``/``std``);
        used to draw pixels and to express the attack's epsilon in pixels.
    n_display : int, default=24
        Held-out images kept in the result for mask figures.
    batch_size : int, default=64
        Extraction batch size.
    device : str or torch.device, default="cpu"
        Where the networks and the estimators run: ``"cpu"``, ``"cuda"``,
        ``"cuda:1"``... Off the CPU the analysis takes the tensor path (see
        ``array_api_dispatch``).
    array_api_dispatch : bool, optional
        Run the estimators on torch tensors under scikit-learn's
        ``array_api_dispatch`` (the *tensor path*): the features are
        extracted as tensors on ``device`` and the projection, the
        alignment and the counting fit, transform and predict there, with no
        copy of the features to the host; only the per-image measures
        behind the tables come back (vectors of N values), and at the end
        the result's estimators and features are moved to numpy
        (:func:`skvmf.devices.move_estimator`), so the result is the same
        kind of object either way. ``None`` (default): the tensor path
        when ``device`` is not the CPU, the numpy path (today's numbers,
        e.g. the demo's findings) on the CPU. ``True`` forces the tensor
        path on the CPU too (it equals the numpy path within floating-point
        rounding: see the tests); ``False`` keeps numpy features with the
        estimators computing on ``device`` internally. The optional
        ``attack`` and ``faithfulness`` analyses run on the numpy path
        with the networks on ``device``. The tensor path runs in this
        process (``n_jobs`` is ignored for it) and cannot be combined with
        ``scheduler``.
    n_jobs : int, optional
        Alignments (one per network and repeat) run in parallel processes on
        the CPU (joblib; None means 1, -1 every core). Inside
        ``joblib.parallel_backend("dask")`` they run on that Dask cluster.
    scheduler : str or distributed.Client, optional
        Run the alignments (one task per network and repeat) on a Dask
        cluster: the address of its scheduler (``"tcp://host:8786"``) or a
        connected ``distributed.Client``. The regional features travel to the
        workers once per network. The results equal a local run's (each
        task uses one torch thread). Needs the ``distributed`` package.
    random_state : int, default=0
        Seed of the split, of the repeats' seeds and of the bootstrap.
    verbose : int, default=0
        0 silent, 1 progress bars, 2 also step messages.

    Returns
    -------
    AnalysisResult

    Examples
    --------
    >>> import skvmf
    >>> from skvmf.datasets import load_digits_images, subset_per_class
    >>> model, _ = skvmf.train_digits_classifier()  # doctest: +SKIP
    >>> data = subset_per_class(load_digits_images("test"), 24)  # doctest: +SKIP
    >>> result = skvmf.analyze(model, data)  # doctest: +SKIP
    >>> print(result.summary())  # doctest: +SKIP
    """
    resolve_device(device)  # a missing GPU named before any work
    _check_attack(attack)
    tensors = _tensor_path(device, array_api_dispatch)
    if tensors and scheduler is not None:
        raise ValueError(
            "scheduler= sends numpy features to Dask workers, but the tensor "
            f"path (device={str(device)!r}, array_api_dispatch="
            f"{array_api_dispatch}) keeps them on the device; give "
            "array_api_dispatch=False to use the scheduler"
        )
    run = {
        "tensors": tensors,
        "tau": tau,
        "n_components": n_components,
        "n_repeats": n_repeats,
        "held_out": held_out,
        "n_bootstrap": n_bootstrap,
        "confidence": confidence,
        "device": device,
        "random_state": random_state,
        "verbose": verbose,
    }
    stage_params = {
        "extractor": {
            "grid": grid,
            "temperature": temperature,
            "batch_size": batch_size,
            "device": device,
        },
        "projector": projector_params,
        "aligner": aligner_params,
        "counter": counter_params,
    }
    plan = _plan(model, images, labels, classes, mean, std, stage_params, run)
    timings = {}

    def step(name):
        message(f"[skvmf] {name}", verbose=verbose, level=1)
        return time.perf_counter()

    networks = _networks(model, checkpoints, students, device)
    # the path is analyze's choice, whatever the global configuration says
    path = (
        _array_api.dispatch() if tensors else config_context(array_api_dispatch=False)
    )
    with path:
        t = step("extracting features")
        extractor, feats = _extract_networks(
            networks, plan.X, layers, plan.extractor_params, verbose
        )
        layer_names = list(feats[_MAIN].regions)
        timings["extraction"] = time.perf_counter() - t

        projectors, aligners = _fit_stages(
            plan, feats, layer_names, n_jobs, scheduler, step, timings
        )
        curves, diagnostics = _diagnostics(
            projectors, aligners, layer_names, n_fit=len(plan.fit_idx)
        )
        _warn_diagnostics(diagnostics)

        t = step("counting knowledge points")
        embedded, measures, counters = _measure(
            plan, feats, projectors, aligners, layer_names
        )
    if tensors:
        # the result (its figures, the optional analyses) works on the host
        projectors, aligners, counters = (
            {key: _to_host(est) for key, est in fitted.items()}
            for fitted in (projectors, aligners, counters)
        )
        embedded = _HostFeatures(embedded)
    rs = plan.resampler()
    main = [measures[(r, _MAIN)] for r in range(n_repeats)]
    tables = (
        _projection_table(
            rs, main, len(plan.fit_idx), len(plan.eval_idx), plan.held_out
        ),
        _knowledge_table(rs, main, layer_names),
    )
    timings["counting"] = time.perf_counter() - t

    fitted = (projectors, aligners, counters, embedded, measures)
    result = _result(plan, extractor, fitted, layer_names, tables, scheduler)
    result.diagnostics, result.loss_curves = diagnostics, curves
    result.timings = timings
    if n_display:
        result.display_index = _display_index(
            plan.y, plan.eval_idx, len(plan.classes), n_display
        )
        result.display_images = plan.X[result.display_index]
        rows = _thumbnail_rows(
            result.display_index, plan.eval_idx, plan.fit_idx, n_display
        )
        result.thumbnail_index = rows
        result.thumbnails = thumbnails(plan.X, rows, plan.mean, plan.std)
    options = {"attack": attack, "faithfulness": faithfulness}
    _optional_analyses(result, plan, networks, fitted, rs, options, step)
    result.findings = _findings(result, rs, measures, n_repeats, plan.held_out)
    return result


def _tensor_path(device, array_api_dispatch) -> bool:
    """Whether :func:`analyze` runs its estimators on tensors (see its
    ``array_api_dispatch``)."""
    if array_api_dispatch is not None:
        return bool(array_api_dispatch)
    return torch.device(device).type != "cpu"


def _to_host(estimator):
    """A fitted estimator or FeatureSet with numpy arrays on the host."""
    from ..devices import move_estimator

    return move_estimator(estimator, "cpu", namespace="numpy")


class _HostFeatures(dict):
    """The embedded FeatureSets of the tensor path, each copied to the host
    when first read (the result reads only a few of them)."""

    def __getitem__(self, key):
        value = super().__getitem__(key)
        if not isinstance(value.g, np.ndarray):
            value = _to_host(value)
            super().__setitem__(key, value)
        return value

    def values(self):
        return [self[key] for key in self]

    def items(self):
        return [(key, self[key]) for key in self]


# thumbnails kept for the report's click panels beyond the display images:
# 48 px pictures are at most 7 KB each
_MAX_THUMBNAILS = 1000


def _thumbnail_rows(display_index, eval_idx, fit_idx, n_display):
    """The display images first, then every other held-out image, then the
    fit images (the 3-D views draw both), up to ``max(n_display,
    _MAX_THUMBNAILS)`` rows."""
    shown = set(np.asarray(display_index).tolist())
    rest = [int(i) for i in (*eval_idx, *fit_idx) if int(i) not in shown]
    rows = np.asarray([*display_index, *dict.fromkeys(rest)], dtype=np.int64)
    return rows[: max(n_display, _MAX_THUMBNAILS)]


def _display_index(y, eval_idx, n_classes, n_display):
    """A few held-out images of every class, in class order."""
    rng = np.random.default_rng(0)
    per_class = max(1, n_display // n_classes)
    idx = np.concatenate(
        [
            rng.permutation(eval_idx[y[eval_idx] == c])[:per_class]
            for c in range(n_classes)
        ]
    )[:n_display]
    return idx.astype(np.int64)
