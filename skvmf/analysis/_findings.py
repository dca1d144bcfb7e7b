"""Findings and diagnostics: the paper's properties (SPEC 9), statements
fixed before any run and checked on each run's intervals, and the health of
every fitted stage (its loss curve, and a warning when it did not fall)."""

from __future__ import annotations

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from .._utils import warn as _warn
from .._utils.convergence import curve_summary
from .._utils.uncertainty import mean_of, pearson_of, ratio_of
from ._inputs import _MAIN, _network_name
from ._measures import _host_curve, _stack

_SAMPLE_LAYER = "sample"  # the diagnostics' layer name of the projection


# a KL divergence at or below this per image starts at its minimum: nothing
# to lower (an untrained network's uniform soft labels)
_KL_AT_ZERO = 1e-4


def _diagnostics(projectors, aligners, layers, n_fit=1):
    """Loss curves of every fitted stage: (curves, aggregated table).

    ``curves`` has one record per (network, layer, stage, repeat) with the
    whole curve; the table one row per (network, layer, stage) with the mean
    first and last loss over repeats and whether every repeat's loss fell.
    """
    curves = []
    for (r, key), proj in projectors.items():
        curves.append(
            {
                "network": _network_name(key),
                "layer": _SAMPLE_LAYER,
                "stage": "projection",
                "repeat": r,
                "curve": list(_host_curve(proj.loss_curve_)),
            }
        )
    for (r, key), al in aligners.items():
        for layer in layers:
            for stage, attr in (
                ("importance", "importance_loss_curve_"),
                ("alignment", "loss_curve_"),
            ):
                curves.append(
                    {
                        "network": _network_name(key),
                        "layer": layer,
                        "stage": stage,
                        "repeat": r,
                        "curve": list(_host_curve(getattr(al, attr)[layer])),
                    }
                )
    # the projection's loss is a sum over the fit images, the importance
    # weights' a mean; the alignment's (with -cos terms) has no floor
    at_zero = {"projection": _KL_AT_ZERO * n_fit, "importance": _KL_AT_ZERO}
    groups = {}
    for rec in curves:
        s = curve_summary(rec["curve"], at_zero.get(rec["stage"]))
        groups.setdefault((rec["network"], rec["layer"], rec["stage"]), []).append(s)
    table = []
    for (network, layer, stage), summaries in groups.items():
        verdicts = [s["converged"] for s in summaries]
        judged = [v for v in verdicts if v is not None]
        table.append(
            {
                "network": network,
                "layer": layer,
                "stage": stage,
                "loss_first": float(np.mean([s["loss_first"] for s in summaries])),
                "loss_last": float(np.mean([s["loss_last"] for s in summaries])),
                "converged": all(judged) if judged else None,
                "n_converged": int(sum(judged)),
                "n_repeats": len(summaries),
            }
        )
    return curves, table


def _warn_diagnostics(table) -> None:
    """One ConvergenceWarning listing every stage whose loss did not fall."""
    bad = [row for row in table if row["converged"] is False]
    if not bad:
        return
    lines = "; ".join(
        f"{row['stage']} of {row['network']} at {row['layer']} "
        f"({row['loss_first']:.4g} -> {row['loss_last']:.4g}, "
        f"fell in {row['n_converged']}/{row['n_repeats']} repeats)"
        for row in bad[:10]
    )
    more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
    _warn.warn(
        f"{len(bad)} fitted stage(s) did not lower their loss: {lines}{more}; "
        "see result.diagnostics",
        ConvergenceWarning,
    )


def _finding(name, statement, est, holds_if, held_out, note=None):
    """One entry of ``findings``; ``holds_if`` judges the interval."""
    if est is None or est["low"] is None:
        holds = None
    else:
        holds = bool(holds_if(est["low"], est["high"]))
    entry = {
        "name": name,
        "statement": statement,
        "value": None if est is None else est["value"],
        "low": None if est is None else est["low"],
        "high": None if est is None else est["high"],
        "holds": holds,
        "held_out": bool(held_out),
        "note": note or "",
    }
    return entry


def _above(threshold):
    return lambda low, high: low > threshold


def _below(threshold):
    return lambda low, high: high < threshold


def _intermediate_pair(iterations):
    """The two checkpoints of the emergence finding: the first and the last
    strictly between the first and last checkpoints when there are two such,
    else the first checkpoint and the one in between, else None."""
    its = sorted(iterations)
    inner = its[1:-1]
    if len(inner) >= 2:
        return inner[0], inner[-1]
    if len(inner) == 1:
        return its[0], inner[0]
    return None


def _projection_findings(rs, main, held_out):
    """The projection mimics the network; strength falls with entropy."""
    return [
        _finding(
            "projection_mimics_network",
            "The projected category model Q(y|g) predicts the network's class on "
            "at least 90 % of the images (agreement > 0.9).",
            rs.estimate(mean_of, _stack(main, "projection", "agree")),
            _above(0.9),
            held_out,
        ),
        _finding(
            "strength_against_entropy",
            "The strength ||g|| correlates negatively with the entropy of the "
            "network's P(y|x) (Pearson < 0).",
            rs.estimate(
                pearson_of,
                _stack(main, "projection", "strength"),
                _stack(main, "projection", "entropy"),
            ),
            _below(0.0),
            held_out,
        ),
    ]


def _depth_finding(rs, main, shallow, deep, held_out):
    """The reliable ratio is higher at the deepest layer than the shallowest."""

    def rise(rel_d, cnt_d, rel_s, cnt_s):
        return ratio_of(rel_d, cnt_d) - ratio_of(rel_s, cnt_s)

    est = rs.estimate(
        rise,
        _stack(main, "layers", deep, "reliable"),
        _stack(main, "layers", deep, "count"),
        _stack(main, "layers", shallow, "reliable"),
        _stack(main, "layers", shallow, "count"),
    )
    return _finding(
        "reliable_ratio_rises_with_depth",
        f"The reliable ratio of knowledge points is higher at the deepest "
        f"layer ({deep}) than at the shallowest ({shallow}) (difference > 0).",
        est,
        _above(0.0),
        held_out,
    )


def _emergence_finding(rs, measures, result, deep, n_repeats, held_out):
    """More points at the deepest layer at a later intermediate checkpoint
    than at an earlier one."""
    statement = (
        f"Knowledge points at the deepest layer ({deep}) rise during training: "
        "more per image at a later intermediate checkpoint than at an earlier "
        "one (difference > 0)."
    )
    pair = _intermediate_pair(sorted({r["iteration"] for r in result.emergence}))
    if pair is None:
        return _finding(
            "emergence_during_training",
            statement,
            None,
            None,
            held_out,
            note="needs at least 3 checkpoints",
        )
    a, b = pair

    def counts(iteration):
        at = [measures[(r, ("checkpoint", iteration))] for r in range(n_repeats)]
        return _stack(at, "layers", deep, "count")

    return _finding(
        "emergence_during_training",
        statement,
        rs.estimate(mean_of, counts(b) - counts(a)),
        _above(0.0),
        held_out,
        note=f"iteration {b} minus iteration {a}",
    )


def _attack_finding(rs, result, shallow, deep, held_out):
    """The attack moves the deepest layer's regions more than the shallowest."""
    per = result.adversarial_measures
    diff = _stack(per, deep, "one_minus_cos") - _stack(per, shallow, "one_minus_cos")
    return _finding(
        "attack_moves_deep_regions_more",
        f"A PGD attack moves the regions of the deepest layer ({deep}) more "
        f"than those of the shallowest ({shallow}): mean 1 - cos difference "
        "> 0.",
        rs.estimate(mean_of, diff),
        _above(0.0),
        held_out,
    )


def _student_findings(rs, measures, result, main, deep, n_repeats, held_out):
    """Each student has fewer reliable points than its teacher, deepest layer."""
    out = []
    for row in result.distillation:
        if row["model"] == "teacher" or row["layer"] != deep:
            continue
        student = [measures[(r, ("student", row["model"]))] for r in range(n_repeats)]
        diff = _stack(student, "layers", deep, "reliable") - _stack(
            main, "layers", deep, "reliable"
        )
        out.append(
            _finding(
                f"student_fewer_reliable_points:{row['model']}",
                f"The student {row['model']} has fewer reliable knowledge points "
                f"per image than its teacher at the deepest layer ({deep}) "
                "(student minus teacher < 0).",
                rs.estimate(mean_of, diff),
                _below(0.0),
                held_out,
            )
        )
    return out


def _findings(result, rs, measures, n_repeats, is_held_out) -> list[dict]:
    """The paper's properties checked on this run (SPEC 9), each only when
    the run has what it needs (two layers, checkpoints, an attack, students)."""
    main = [measures[(r, _MAIN)] for r in range(n_repeats)]
    shallow, deep = result.layers[0], result.layers[-1]
    two_layers = len(result.layers) >= 2
    out = _projection_findings(rs, main, is_held_out)
    if two_layers:
        out.append(_depth_finding(rs, main, shallow, deep, is_held_out))
    if result.emergence:
        out.append(
            _emergence_finding(rs, measures, result, deep, n_repeats, is_held_out)
        )
    if result.adversarial is not None and two_layers:
        out.append(_attack_finding(rs, result, shallow, deep, is_held_out))
    if result.distillation:
        out += _student_findings(
            rs, measures, result, main, deep, n_repeats, is_held_out
        )
    return out
