"""The optional studies on the same images: emergence over training
checkpoints, distilled students, a PGD attack and the faithfulness of the
knowledge-point maps beside attribution maps."""

from __future__ import annotations

import time

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


def _attack_params(params, mean, std, device, random_state, verbose):
    """``pgd_attack``'s parameters with the run's defaults filled in."""
    params = dict(params)
    # 8/255 of the pixel range: the usual L-inf budget; without the
    # normalisation, epsilon is in input units and must be given
    params.setdefault("epsilon", 8 / 255 if std is not None else 0.1)
    if std is not None:
        params.setdefault("mean", mean)
        params.setdefault("std", std)
    params.setdefault("random_state", random_state)
    params.setdefault("device", device)
    params.setdefault("verbose", verbose)
    return params


def _attack_measures(clean, adv, counter, attack, y_eval, layers):
    """Per image and layer: how far the regions moved, and the knowledge
    points before and after the attack."""
    per_layer = {}
    for layer in layers:
        change = embedding_change(
            clean.h[layer], adv.h[layer], scale=counter.scales_[layer]
        )
        clean_pts, clean_cat = counter.masks(clean, layer=layer)
        adv_pts, adv_cat = counter.masks(adv, layer=layer)
        truth = y_eval[:, None]
        # points of the adversarial class after the attack, and how many of
        # them sit where the original class had its points before
        fooled = (attack.adv_pred != y_eval)[:, None]
        adv_class = adv_pts & (adv_cat == attack.adv_pred[:, None]) & fooled
        overlap = adv_class & clean_pts & (clean_cat == truth)
        counts = {
            "points_clean": clean_pts,
            "points_adversarial": adv_pts,
            "reliable_clean": clean_pts & (clean_cat == truth),
            "reliable_adversarial": adv_pts & (adv_cat == truth),
            "adversarial_class_points": adv_class,
            "overlap": overlap,
        }
        per_layer[layer] = {
            "one_minus_cos": change["one_minus_cos"].mean(1),
            "strength_change": change["strength_change"].mean(1),
            **{k: v.sum(1).astype(float) for k, v in counts.items()},
        }
    return per_layer


_ATTACK_MEANS = (
    "one_minus_cos",
    "strength_change",
    "points_clean",
    "points_adversarial",
    "reliable_clean",
    "reliable_adversarial",
    "adversarial_class_points",
)


def _attack_table(rs, per_repeat, layers):
    """One row per layer: every attack measure with its interval."""
    rows = []
    for layer in layers:
        row = {"layer": layer}
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
        rows.append(row)
    return rows


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
    repeat's clean estimators and compared with the clean ones per layer."""
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
    result.adversarial = _attack_table(rs, per_repeat, result.layers)
    result.adversarial_measures = per_repeat
    result.attack = {
        "epsilon": float(params["epsilon"]),
        "n_steps": int(params.get("n_steps", 10)),
        "n_images": int(len(y_eval)),
        "success_rate": attack.success_rate,
        "accuracy_clean": float((attack.clean_pred == y_eval).mean()),
        "accuracy_adversarial": float((attack.adv_pred == y_eval).mean()),
    }


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
