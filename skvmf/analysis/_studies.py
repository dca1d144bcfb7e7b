"""The optional studies on the same images: emergence over training
checkpoints, distilled students, a PGD attack and the faithfulness of the
knowledge-point maps beside attribution maps."""

from __future__ import annotations

import time
from numbers import Integral, Real

import numpy as np
import torch

from .._utils import warn as _warn
from .._utils.uncertainty import mean_of, ratio_of
from ..attacks import embedding_change, pgd_attack
from ._inputs import _MAIN
from ._measures import _count_row, _stack, _with_interval


def _optional_analyses(result, plan, networks, fitted, rs, options, step):
    """Step 6: emergence over checkpoints, students, the attack and the
    faithfulness of the maps, each when asked for."""
    projectors, aligners, counters, embedded, measures = fitted
    timings, run = result.timings, plan.run
    y_eval, eval_idx = plan.y[plan.eval_idx], plan.eval_idx

    def over_repeats(key):
        return [measures[(r, key)] for r in range(run["n_repeats"])]

    checkpoint_keys = [k for k in networks if k != _MAIN and k[0] == "checkpoint"]
    if checkpoint_keys:
        _emergence(result, rs, checkpoint_keys, over_repeats, embedded, y_eval)
    student_keys = [k for k in networks if k != _MAIN and k[0] == "student"]
    if student_keys:
        _distillation(result, rs, student_keys, over_repeats, y_eval)
    model, device = networks[_MAIN], run["device"]
    if options["attack"]:
        t = step("adversarial attack")
        attack = options["attack"]
        _adversarial(
            result,
            rs,
            model,
            plan.X[eval_idx],
            y_eval,
            {} if attack is True else dict(attack),
            projectors,
            aligners,
            counters,
            embedded,
            eval_idx,
            (plan.mean, plan.std, device, run["random_state"], run["verbose"]),
        )
        timings["attack"] = time.perf_counter() - t
    if options["faithfulness"]:
        t = step("faithfulness of the maps")
        faith = options["faithfulness"]
        result.faithfulness = _faithfulness(
            result,
            model,
            plan.X[eval_idx],
            {} if faith is True else dict(faith),
            device,
            run["random_state"],
        )
        timings["faithfulness"] = time.perf_counter() - t


def _emergence(result, rs, checkpoint_keys, over_repeats, embedded, y_eval):
    rows, frames = [], []
    eval_idx = result.eval_index
    for key in checkpoint_keys:
        per = over_repeats(key)
        accuracy = float(per[0]["projection"]["dnn_correct"].mean())
        for layer in result.layers:
            row = {"iteration": key[1], "accuracy": accuracy}
            row.update(_count_row(rs, [m["layers"] for m in per], layer))
            rows.append(row)
        fs = embedded[(0, key)]
        frames.append(
            {"iteration": key[1], "g": fs.g[eval_idx], "directions": fs.directions}
        )
    result.emergence = rows
    result.emergence_frames = frames
    result.emergence_labels = y_eval


def _distillation(result, rs, student_keys, over_repeats, y_eval):
    teacher = over_repeats(_MAIN)
    accuracy = float(teacher[0]["projection"]["dnn_correct"].mean())
    none = {"value": None, "low": None, "high": None}
    rows = [
        _with_interval(
            {
                "model": "teacher",
                "accuracy": accuracy,
                **_count_row(rs, [m["layers"] for m in teacher], layer),
            },
            "reliable_minus_teacher",
            none,
        )
        for layer in result.layers
    ]
    for key in student_keys:
        per = over_repeats(key)
        acc = float(per[0]["projection"]["dnn_correct"].mean())
        for layer in result.layers:
            row = {"model": key[1], "accuracy": acc}
            row.update(_count_row(rs, [m["layers"] for m in per], layer))
            diff = _stack(per, "layers", layer, "reliable") - _stack(
                teacher, "layers", layer, "reliable"
            )
            _with_interval(row, "reliable_minus_teacher", rs.estimate(mean_of, diff))
            rows.append(row)
    result.distillation = rows


# The default budget of ``analyze(attack=True)``, chosen by the success rate
# it reaches on the demo's VGG-16-BN and on a small plain-torch CNN trained on
# the digits (benchmarks/bench_attack_default.py, doc/benchmarks.md), never by
# a finding: L-inf epsilon in pixel units, PGD steps, and step size
# 2.5 * epsilon / steps (Madry et al.). Without a normalisation epsilon is in
# input units: the same number, for images in [0, 1]. The rule, stated
# before the measurement: the smallest budget of {8/255, 0.05, 0.1, 0.2} x
# {10, 50} steps fooling >= 90 % of 200 held-out digits on both networks.
# 0.1 with 50 steps (the reference's configuration name) fooled 81 % of them
# on the small CNN; 0.2 with 10 steps fooled every one on both.
ATTACK_EPSILON = 0.2
ATTACK_STEPS = 10

# fewer fooled images than this and the fooled-only comparison is not
# evaluated: a bootstrap over a handful of images says little, and with
# under 10 a draw without any fooled image is no longer rare (4e-5 of the
# draws at 10 of 100 images)
MIN_FOOLED = 10

# what ``attack={...}`` may set: pgd_attack's parameters, except what the
# study fixes (the model, the held-out images and their true labels; an
# untargeted attack, so that "fooled" means the class changed)
_ATTACK_KEYS = (
    "epsilon",
    "n_steps",
    "step_size",
    "random_start",
    "batch_size",
    "mean",
    "std",
    "device",
    "random_state",
    "verbose",
)


def _check_attack(attack):
    """``analyze``'s ``attack`` checked before any work: a ValueError naming
    an unknown key or an epsilon, step count or step size out of range."""
    if attack is None or isinstance(attack, bool):
        return
    unknown = sorted(set(attack) - set(_ATTACK_KEYS))
    if unknown:
        raise ValueError(
            f"attack has unknown key(s) {unknown}; the keys are "
            f"{', '.join(_ATTACK_KEYS)}"
        )
    for key in ("epsilon", "step_size"):
        value = attack.get(key)
        if value is None and key == "step_size":
            continue
        if key in attack and not (
            isinstance(value, Real)
            and not isinstance(value, bool)
            and np.isfinite(value)
            and value >= 0
        ):
            raise ValueError(
                f"attack[{key!r}] must be a finite number >= 0; got {value!r}"
            )
    if "n_steps" in attack and not (
        isinstance(attack["n_steps"], Integral)
        and not isinstance(attack["n_steps"], bool)
        and attack["n_steps"] >= 1
    ):
        raise ValueError(
            f"attack['n_steps'] must be an integer >= 1; got {attack['n_steps']!r}"
        )


def _attack_params(params, mean, std, device, random_state, verbose):
    """``pgd_attack``'s parameters with the run's defaults filled in."""
    _check_attack(params)
    params = dict(params)
    params.setdefault("epsilon", ATTACK_EPSILON)
    params.setdefault("n_steps", ATTACK_STEPS)
    if params.get("step_size") is None:
        params["step_size"] = 2.5 * params["epsilon"] / params["n_steps"]
    if std is not None:
        params.setdefault("mean", mean)
        params.setdefault("std", std)
    params.setdefault("random_state", random_state)
    params.setdefault("device", device)
    params.setdefault("verbose", verbose)
    return params


def _fooled(attack, y_eval):
    """Per image: classified correctly before the attack (the images it can
    fool), and fooled (correct before, another class after)."""
    correct = attack.clean_pred == y_eval
    return correct, correct & (attack.adv_pred != y_eval)


def _attack_measures(clean, adv, counter, attack, y_eval, layers):
    """Per image and layer: how far the regions moved, and the knowledge
    points before and after the attack; ``fooled`` marks the images the
    attack fooled (the paper's comparison is made on them)."""
    _, fooled = _fooled(attack, y_eval)
    per_layer = {}
    for layer in layers:
        change = embedding_change(
            clean.h[layer], adv.h[layer], scale=counter.scales_[layer]
        )
        clean_pts, clean_cat = counter.masks(clean, layer=layer)
        adv_pts, adv_cat = counter.masks(adv, layer=layer)
        truth = y_eval[:, None]
        # on the fooled images: points of the original class before the
        # attack, of the adversarial class after, and those of the latter at
        # regions that were points of the former
        original = clean_pts & (clean_cat == truth)
        adv_class = adv_pts & (adv_cat == attack.adv_pred[:, None]) & fooled[:, None]
        overlap = adv_class & original
        counts = {
            "points_clean": clean_pts,
            "points_adversarial": adv_pts,
            "reliable_clean": original,
            "reliable_adversarial": adv_pts & (adv_cat == truth),
            "adversarial_class_points": adv_class,
            "overlap": overlap,
        }
        per_layer[layer] = {
            "one_minus_cos": change["one_minus_cos"].mean(1),
            "strength_change": change["strength_change"].mean(1),
            "fooled": fooled.astype(float),
            **{k: v.sum(1).astype(float) for k, v in counts.items()},
        }
    return per_layer


# measured over all attacked images (mean per image)
_ATTACK_MEANS = (
    "one_minus_cos",
    "strength_change",
    "points_clean",
    "points_adversarial",
    "reliable_clean",
    "reliable_adversarial",
    "adversarial_class_points",
)

# measured over the fooled images only (mean per fooled image): column name
# and per-image measure
_FOOLED_MEANS = (
    ("mean_one_minus_cos_fooled", "one_minus_cos"),
    ("mean_strength_change_fooled", "strength_change"),
    ("original_class_points_fooled", "reliable_clean"),
    ("adversarial_class_points_fooled", "adversarial_class_points"),
)


def _on_fooled(values, fooled):
    """Mean of ``values`` over the fooled images (NaN when none is)."""
    return ratio_of(values * fooled, fooled)


def _attack_table(rs, per_repeat, layers, success=None):
    """One row per layer: every attack measure with its interval.

    The columns without a suffix are means over all attacked held-out images
    (``n_images``); those ending in ``_fooled`` are means over the images the
    attack fooled (``n_fooled``); ``overlap_with_clean_points`` counts only
    fooled images by construction. ``success`` (result.attack) puts the
    attack's success rate beside every row.
    """
    rows = []
    for layer in layers:
        fooled = _stack(per_repeat, layer, "fooled")
        row = {"layer": layer}
        if success is not None:
            row["n_images"] = success["n_images"]
            row["n_fooled"] = success["n_fooled"]
            for key in ("success_rate", "success_rate_low", "success_rate_high"):
                row[key] = success[key]
        for name in _ATTACK_MEANS:
            counted = name.startswith(("points", "reliable", "adv"))
            _with_interval(
                row,
                name if counted else f"mean_{name}",
                rs.estimate(mean_of, _stack(per_repeat, layer, name)),
            )
        _with_interval(
            row,
            "overlap_with_clean_points",
            rs.estimate(
                ratio_of,
                _stack(per_repeat, layer, "overlap"),
                _stack(per_repeat, layer, "adversarial_class_points"),
            ),
        )
        for column, name in _FOOLED_MEANS:
            _with_interval(
                row,
                column,
                rs.estimate(_on_fooled, _stack(per_repeat, layer, name), fooled),
            )
        rows.append(row)
    return rows


def _success(rs, attack, y_eval, params):
    """result.attack: the settings, and the success rate (fooled / attacked,
    attacked = classified correctly before the attack) with its interval
    over the images (the attack is the same in every repeat)."""
    correct, fooled = _fooled(attack, y_eval)
    tile = (rs.n_repeats, 1)
    est = rs.estimate(ratio_of, np.tile(fooled, tile), np.tile(correct, tile))
    n_attacked, n_fooled = int(correct.sum()), int(fooled.sum())
    return {
        "epsilon": float(params["epsilon"]),
        "n_steps": int(params["n_steps"]),
        "step_size": float(params["step_size"]),
        "n_images": int(len(y_eval)),
        "n_attacked": n_attacked,
        "n_fooled": n_fooled,
        "success_rate": n_fooled / n_attacked if n_attacked else 0.0,
        "success_rate_low": est["low"],
        "success_rate_high": est["high"],
        "accuracy_clean": float(correct.mean()),
        "accuracy_adversarial": float((attack.adv_pred == y_eval).mean()),
    }


# regions per layer kept for the report's clean-against-adversarial view
_MAX_EMBEDDED_REGIONS = 1500


def _first_three(h):
    """(m, 3): the first three coordinates, zero-padded when d' < 3 (the
    coordinates the report's layer-regions 3-D view draws)."""
    out = np.zeros((len(h), 3))
    k = min(3, h.shape[1])
    out[:, :k] = h[:, :k]
    return out


def _class_of(categories, classes):
    """Knowledge-point categories as class indices, -1 where no point."""
    lookup = {c: i for i, c in enumerate(classes)}
    flat = np.asarray(categories).ravel()
    return np.array([lookup.get(c, -1) for c in flat], dtype=np.int64)


def _adversarial_embeddings(clean, adv, counter, attack, y_eval, eval_idx, layers):
    """Per layer, the same subsample of the attacked images' regions, clean
    and adversarial, in the 3-D coordinates of the report's layer-regions
    view (h / the layer's strength scale, first three coordinates), with
    the image (index into result.labels), region, whether the image was
    fooled, the prediction after the attack, and each region's
    knowledge-point class before and after (-1: not a point)."""
    from .._utils.figures import subsample

    n, r = clean.h[layers[0]].shape[:2]
    keep = subsample(n * r, _MAX_EMBEDDED_REGIONS, random_state=0)
    image, region = keep // r, keep % r
    _, fooled = _fooled(attack, y_eval)
    classes = list(counter.classes_)
    out = {}
    for layer in layers:
        scale = counter.scales_[layer]
        flat_clean = np.asarray(clean.h[layer], dtype=float).reshape(n * r, -1)
        flat_adv = np.asarray(adv.h[layer], dtype=float).reshape(n * r, -1)
        points = {}
        for when, fs in (("clean", clean), ("adversarial", adv)):
            pts, cats = counter.masks(fs, layer=layer)
            idx = _class_of(cats, classes)
            points[when] = np.where(np.asarray(pts).ravel(), idx, -1)[keep]
        out[layer] = {
            "image": np.asarray(eval_idx)[image].astype(np.int64),
            "region": region.astype(np.int64),
            "clean": _first_three(flat_clean[keep] / scale),
            "adversarial": _first_three(flat_adv[keep] / scale),
            "fooled": fooled[image],
            "predicted_adversarial": attack.adv_pred[image].astype(np.int64),
            "point_clean": points["clean"],
            "point_adversarial": points["adversarial"],
        }
    return out


def _adversarial(
    result,
    rs,
    model,
    X_eval,
    y_eval,
    params,
    projectors,
    aligners,
    counters,
    embedded,
    eval_idx,
    context,
):
    """PGD on the held-out images; adversarial regions embedded with each
    repeat's clean estimators and compared with the clean ones per layer,
    over all attacked images and over the fooled ones."""
    params = _attack_params(params, *context)
    attack = pgd_attack(model, X_eval, y_eval, **params)
    adv_feats = result.extractor.transform(attack.images)
    n_repeats = max(r for r, _ in projectors) + 1
    per_repeat = []
    for r in range(n_repeats):
        adv = aligners[(r, _MAIN)].transform(
            projectors[(r, _MAIN)].transform(adv_feats)
        )
        clean = embedded[(r, _MAIN)][eval_idx]
        per_repeat.append(
            _attack_measures(
                clean, adv, counters[(r, _MAIN)], attack, y_eval, result.layers
            )
        )
        if r == 0:  # the first repeat's estimators: those of result.features
            result.adversarial_embeddings = _adversarial_embeddings(
                clean,
                adv,
                counters[(0, _MAIN)],
                attack,
                y_eval,
                eval_idx,
                result.layers,
            )
    result.attack = _success(rs, attack, y_eval, params)
    result.adversarial = _attack_table(rs, per_repeat, result.layers, result.attack)
    result.adversarial_measures = per_repeat


def _grad_cam_maps(model, X, target, layer, device):
    """Grad-CAM at ``layer``, or at its block's first norm for a transformer
    block whose output only the class token carries to the head."""
    from ..saliency import grad_cam

    last = None
    for name in (layer, f"{layer}.ln_1", f"{layer}.norm1"):
        try:
            return grad_cam(
                model, X, target, layer=name, upsample=False, device=device
            ), name
        except (ValueError, AttributeError, KeyError) as exc:
            last = exc
    raise ValueError(f"Grad-CAM is not available at {layer!r}: {last}")


def _faithfulness(result, model, X_eval, params, device, random_state):
    """compare_faithfulness of the knowledge-point maps and attribution maps
    of the held-out images (first repeat's estimators)."""
    from ..faithfulness import compare_faithfulness, knowledge_point_map
    from ..saliency import guided_backprop

    target = result.features.soft_labels[result.eval_index].argmax(1)
    maps = {}
    for layer in result.layers[-2:]:
        maps[f"knowledge points {layer}"] = knowledge_point_map(
            result, layer=layer, target=target
        )
    deepest = result.extractor.layers_[-1]
    try:
        cam, where = _grad_cam_maps(model, X_eval, target, deepest, device)
        maps[f"Grad-CAM {where}"] = cam
    except ValueError as exc:
        _warn.warn(f"faithfulness: Grad-CAM left out ({exc})")
    if any(isinstance(m, torch.nn.ReLU) for m in model.modules()):
        gb = guided_backprop(model, X_eval, target, device=device)
        maps["guided backprop"] = np.abs(np.asarray(gb)).max(axis=1)
    params.setdefault("steps", 16)
    params.setdefault("device", device)
    params.setdefault("random_state", random_state)
    return compare_faithfulness(model, X_eval, maps, target, **params)
