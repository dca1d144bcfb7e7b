"""The measurements of every repeat: per image, the projection's agreement
with the network, the strength of g and the entropy of P(y|x); per layer and
image, knowledge points, reliable ones, the vote and mean cos(h, g); and the
rows with intervals built from them over repeats and images."""

from __future__ import annotations

import numpy as np

from .. import _array_api
from .._utils.uncertainty import mean_of, pearson_of, ratio_of
from ..knowledge import KnowledgePointCounter


def _host(array):
    """A host numpy copy of an estimator's output (no-op for numpy): the
    per-image measures that feed the tables."""
    return _array_api.to_numpy(array)


def _host_curve(curve):
    """A loss curve (list of floats or an array of any namespace) as floats."""
    if isinstance(curve, (list, tuple)):
        return np.asarray([float(v) for v in curve], dtype=float)
    return np.asarray(_host(curve), dtype=float)


def _entropy(P):
    return -(P * np.log(np.clip(P, 1e-300, None))).sum(1)


def _projection_measures(fs, projector, y):
    """Per-image agreement with the DNN, ||g|| and entropy of P(y|x)."""
    P = np.asarray(_host(fs.soft_labels), dtype=np.float64)
    dnn = P.argmax(1)
    q = _host(projector.predict_proba(fs)).argmax(1)
    return {
        "agree": (q == dnn).astype(float),
        "strength": np.linalg.norm(np.asarray(_host(fs.g), dtype=np.float64), axis=1),
        "entropy": _entropy(P),
        "dnn_correct": (dnn == y).astype(float),
    }


def _layer_measures(fit_fs, y_fit, eval_fs, y_eval, layers, counter_params):
    """Per layer and image of ``eval_fs``: knowledge points, reliable ones,
    the vote's correctness and mean cos(h, g), with counters fitted on
    ``fit_fs`` (their strength scales come from the fit images)."""
    counter = KnowledgePointCounter(**counter_params).fit(fit_fs, y_fit)
    on_host = isinstance(eval_fs.g, np.ndarray)
    if on_host:
        g = np.asarray(eval_fs.g, dtype=np.float64)
        g_unit = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-300)
    out = {}
    for layer in layers:
        points, cats = (_host(a) for a in counter.masks(eval_fs, layer=layer))
        single = KnowledgePointCounter(**{**counter_params, "layer": layer})
        vote = _host(single.fit(fit_fs, y_fit).predict(eval_fs))
        if on_host:
            h = np.asarray(eval_fs.h[layer], dtype=np.float64)
            norm = np.maximum(np.linalg.norm(h, axis=-1), 1e-300)
            cos = (np.einsum("nrd,nd->nr", h, g_unit) / norm).mean(1)
        else:  # the (N, R, d') embedding stays on its device; (N,) comes back
            cos = _host(_mean_cos_xp(eval_fs.h[layer], eval_fs.g))
        out[layer] = {
            "count": points.sum(1).astype(float),
            "reliable": (points & (cats == y_eval[:, None])).sum(1).astype(float),
            "vote": (vote == y_eval).astype(float),
            "cos_h_g": cos,
        }
    return counter, out


def _mean_cos_xp(h, g):
    """Per image, the mean over regions of cos(h_r, g), in h's namespace
    (the numpy path's formula: norms floored at 1e-300, in float64 where the
    device has it)."""
    xp, _, dev = _array_api.get_namespace_and_device(h, g)
    dtype = _array_api.max_float_dtype(xp, dev)
    h, g = xp.astype(h, dtype), xp.astype(g, dtype)
    floor = max(1e-300, float(xp.finfo(dtype).tiny))
    g_norm = xp.linalg.vector_norm(g, axis=1, keepdims=True)
    g_unit = g / xp.clip(g_norm, min=floor)
    h_norm = xp.clip(xp.linalg.vector_norm(h, axis=-1), min=floor)
    cos = xp.sum(h * g_unit[:, None, :], axis=-1) / h_norm
    return xp.mean(cos, axis=1)


def _stack(per_repeat, *path):
    """(R, n) array of one per-image measure across repeats."""
    rows = []
    for item in per_repeat:
        for key in path:
            item = item[key]
        rows.append(item)
    return np.stack(rows)


def _with_interval(row, name, est):
    row[name] = est["value"]
    row[f"{name}_low"] = est["low"]
    row[f"{name}_high"] = est["high"]
    return row


def _count_row(rs, measures, layer):
    """Counts, reliable counts and their ratio of one layer, with intervals."""
    count = _stack(measures, layer, "count")
    reliable = _stack(measures, layer, "reliable")
    row = {"layer": layer}
    _with_interval(row, "mean_count", rs.estimate(mean_of, count))
    _with_interval(row, "mean_reliable", rs.estimate(mean_of, reliable))
    _with_interval(row, "reliable_ratio", rs.estimate(ratio_of, reliable, count))
    return row


def _projection_table(rs, main, n_fit, n_eval, is_held_out):
    agree = _stack(main, "projection", "agree")
    strength = _stack(main, "projection", "strength")
    entropy = _stack(main, "projection", "entropy")
    row = {
        "n_images": n_eval,
        "n_fit_images": n_fit,
        "measured_on": "held-out images" if is_held_out else "fit images",
        "dnn_accuracy": float(_stack(main, "projection", "dnn_correct")[0].mean()),
    }
    _with_interval(row, "projection_agreement", rs.estimate(mean_of, agree))
    _with_interval(
        row, "pearson_strength_entropy", rs.estimate(pearson_of, strength, entropy)
    )
    _with_interval(row, "mean_strength_g", rs.estimate(mean_of, strength))
    row["projection_agreement_fit_images"] = float(
        np.mean([m["projection_fit"]["agree"].mean() for m in main])
    )
    return row


def _knowledge_table(rs, main, layer_names):
    """Step 5: per layer, counts, reliable ratio, vote accuracy and mean
    cos(h, g) of the main network, each with its interval."""
    knowledge = []
    for layer in layer_names:
        row = _count_row(rs, [m["layers"] for m in main], layer)
        for name, key in (("vote_accuracy", "vote"), ("mean_cos_h_g", "cos_h_g")):
            _with_interval(
                row, name, rs.estimate(mean_of, _stack(main, "layers", layer, key))
            )
        knowledge.append(row)
    return knowledge
