"""Findings and diagnostics: the paper's properties (SPEC 9), statements
fixed before any run and checked on each run's intervals, and the health of
every fitted stage (its loss curve, and a warning when it did not fall)."""

from __future__ import annotations

import dataclasses
import math

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


# beyond this many images the estimate of ``images_to_decide`` is only
# said to be "more than a million": the 1/sqrt(n) scaling it rests on is
# no guide that far from the measured n
_MANY_IMAGES = 1_000_000

# |value - threshold| at or below this fraction of the interval's scale
# counts as "on the threshold": no number of images is expected to decide it
_ON_THRESHOLD = 1e-9


@dataclasses.dataclass(frozen=True)
class _Rule:
    """The side of ``threshold`` that a finding's statement claims.

    ``side`` is ``"above"`` (the claim is x > threshold) or ``"below"``
    (x < threshold). The claimed side is open, the other side closed: an
    interval that touches the threshold has not shown the claim, and one
    pinned on it ([0, 0] against "> 0") contradicts it.
    """

    side: str
    threshold: float

    def verdict(self, low, high) -> str:
        """``"holds"``, ``"contradicted"`` or ``"inconclusive"`` for the
        interval ``[low, high]``."""
        t = self.threshold
        if self.side == "above":
            if low > t:
                return "holds"
            if high <= t:
                return "contradicted"
        else:
            if high < t:
                return "holds"
            if low >= t:
                return "contradicted"
        return "inconclusive"


def _above(threshold) -> _Rule:
    """The statement claims the value exceeds ``threshold``."""
    return _Rule("above", float(threshold))


def _below(threshold) -> _Rule:
    """The statement claims the value is below ``threshold``."""
    return _Rule("below", float(threshold))


def _images_to_decide(value, low, high, threshold, n_images):
    """Held-out images that would decide an inconclusive interval, and why
    there is no number when there is none: ``(n or None, note)``.

    Assumption: at a fixed effect ``value`` the interval's half-width ``w``
    scales as 1/sqrt(n) with the number of images n (the standard error of
    a mean over images does; a bootstrap percentile interval follows it once
    n is moderate). The interval then excludes the threshold t when
    ``w * sqrt(n / n') < |value - t|``, i.e. from the smallest
    ``n' > n * (w / |value - t|)^2``. ``w`` is the half-width on t's side of
    the value (``value - low`` or ``high - value``): bootstrap intervals are
    not symmetric. The estimate also assumes the effect stays where it is;
    an effect that shrinks with more images needs more.
    """
    if n_images is None or value is None:
        return None, "the number of images measured is unknown"
    distance = abs(value - threshold)
    scale = max(abs(high - low), abs(value), abs(threshold), 1e-300)
    if distance <= _ON_THRESHOLD * scale:
        return None, (
            "the estimate sits on the threshold: more images are not expected "
            "to decide it"
        )
    width = value - low if value > threshold else high - value
    # the smallest integer strictly above n (w / d)^2 (math.ceil, but an
    # exact integer is one short: there the bound lands on the threshold)
    return int(math.floor(n_images * (width / distance) ** 2)) + 1, ""


def _finding(
    name,
    statement,
    est,
    rule,
    held_out,
    note=None,
    *,
    n_images=None,
    reason=None,
):
    """One entry of ``findings``: the statement and its interval's verdict.

    Parameters
    ----------
    name, statement : str
        Identifier and the claim in words (fixed before any run).
    est : dict or None
        ``{"value", "low", "high"}`` from :meth:`Resampler.estimate`; None
        (or a None interval) when the run could not measure it.
    rule : _Rule or None
        :func:`_above` or :func:`_below`: the side the statement claims.
    held_out : bool
        Whether the images measured were held out from every fit.
    note : str, optional
        Anything the reader needs besides the verdict.
    n_images : int, optional
        The number of images the interval is over.
    reason : str, optional
        Why it was not evaluated and what to change (with ``est=None``).

    Returns
    -------
    dict
        ``name``, ``statement``, ``value``, ``low``, ``high``, ``verdict``
        (one of ``tables.VERDICTS``: holds when the interval lies on the
        claimed side, contradicted when on the other, inconclusive when it
        spans the threshold, not evaluated without an interval), ``holds``
        (True/False, None when not evaluated), ``side`` and ``threshold``
        of the claim, ``n_images``, ``images_to_decide`` (inconclusive
        only: see :func:`_images_to_decide`), ``held_out`` and ``note``.
    """
    value = None if est is None else est["value"]
    low = None if est is None else est["low"]
    high = None if est is None else est["high"]
    notes = [note] if note else []
    images_to_decide = None
    if low is None or high is None or value is None or rule is None:
        verdict = "not evaluated"
        notes.append(
            reason
            or "no interval: the statistic is undefined on every draw of the "
            "images (e.g. a ratio of layers without knowledge points)"
        )
    else:
        verdict = rule.verdict(low, high)
        if verdict == "inconclusive":
            images_to_decide, why = _images_to_decide(
                value, low, high, rule.threshold, n_images
            )
            if why:
                notes.append(why)
    return {
        "name": name,
        "statement": statement,
        "value": value,
        "low": low,
        "high": high,
        "verdict": verdict,
        "holds": None if verdict == "not evaluated" else verdict == "holds",
        "side": None if rule is None else rule.side,
        "threshold": None if rule is None else rule.threshold,
        "n_images": None if n_images is None else int(n_images),
        "images_to_decide": images_to_decide,
        "held_out": bool(held_out),
        "note": "; ".join(notes),
    }


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
            n_images=rs.n_images,
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
            n_images=rs.n_images,
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
        n_images=rs.n_images,
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
            _above(0.0),
            held_out,
            reason="needs at least 3 checkpoints: pass three or more",
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
        n_images=rs.n_images,
    )


def _plateau_checkpoints(iterations):
    """The four checkpoints of the rises-then-plateaus finding, or None
    without an intermediate one: the first, the intermediate checkpoint
    (strictly between the first and the last) nearest one third of the
    span, the one nearest two thirds (ties to the earlier), and the last."""
    its = sorted(iterations)
    inner = its[1:-1]
    if not inner:
        return None
    first, last = its[0], its[-1]

    def nearest(fraction):
        target = first + fraction * (last - first)
        return min(inner, key=lambda it: (abs(it - target), it))

    return first, nearest(1 / 3), nearest(2 / 3), last


def _rise_minus_late_change(first, early, late, last):
    """Rise of the mean over the first part minus the size of the change
    over the last part (either way: a late fall is no plateau either)."""
    return mean_of(early - first) - np.abs(mean_of(last - late))


def _plateau_finding(rs, measures, result, deep, n_repeats, held_out):
    """The paper's emergence claim, "rises, then plateaus" (its curves rise
    within the first 5-10 k of 31 k iterations, then level off), fixed
    before any run: at the deepest layer, the rise of knowledge points per
    image over the first third of training exceeds the change over the last
    third. Kept beside :func:`_emergence_finding`, which it does not
    replace."""
    name = "emergence_rises_then_plateaus"
    statement = (
        f"Knowledge points at the deepest layer ({deep}) rise, then plateau: "
        "the rise in points per image from the first checkpoint to the "
        "intermediate checkpoint nearest one third of training is larger "
        "than the change, either way, from the intermediate checkpoint "
        "nearest two thirds of training to the last (rise - |late change| "
        "> 0)."
    )
    four = _plateau_checkpoints({r["iteration"] for r in result.emergence})
    if four is None:
        return _finding(
            name,
            statement,
            None,
            _above(0.0),
            held_out,
            reason="needs at least 3 checkpoints (the first, one inside "
            "training, the last): pass three or more",
        )

    def counts(iteration):
        at = [measures[(r, ("checkpoint", iteration))] for r in range(n_repeats)]
        return _stack(at, "layers", deep, "count")

    first, early, late, last = (counts(it) for it in four)
    rise = rs.estimate(mean_of, early - first)
    change = rs.estimate(mean_of, last - late)

    def shown(est):
        if est["low"] is None:
            return "undefined"
        return f"{est['value']:.3g} [{est['low']:.3g}, {est['high']:.3g}]"

    a, b, c, d = four
    return _finding(
        name,
        statement,
        rs.estimate(_rise_minus_late_change, first, early, late, last),
        _above(0.0),
        held_out,
        note=f"rise over iterations {a}-{b}: {shown(rise)}; change over "
        f"iterations {c}-{d}: {shown(change)}",
        n_images=rs.n_images,
    )


def _attack_finding(rs, result, shallow, deep, held_out):
    """The paper's comparison of the attack (SPEC 7 and 9), on the images it
    fooled only: the attack moves the deepest layer's regions more than the
    shallowest's, and the adversarial class's knowledge points after the
    attack sit mostly at other regions than the original class's before.
    Each is not evaluated when fewer than ``MIN_FOOLED`` images were fooled.
    """
    from ._studies import MIN_FOOLED, _on_fooled

    per, attack = result.adversarial_measures, result.attack
    fooled = _stack(per, deep, "fooled")
    n_fooled = attack["n_fooled"]
    budget = f"epsilon {attack['epsilon']:.3g}, {attack['n_steps']} steps"
    low, high = attack["success_rate_low"], attack["success_rate_high"]
    interval = "" if low is None else f" [{low:.2f}, {high:.2f}]"
    where = (
        f"on the {n_fooled} fooled of {attack['n_attacked']} attacked images "
        f"(success rate {attack['success_rate']:.2f}{interval}, {budget})"
    )
    too_few = (
        f"the attack fooled {n_fooled} of the {attack['n_attacked']} images it "
        f"could fool (success rate {attack['success_rate']:.0%}, {budget}); "
        f"the comparison needs at least {MIN_FOOLED} fooled images: raise the "
        "attack's budget (analyze(attack={'epsilon': ..., 'n_steps': ...}); "
        "--attack-epsilon and --attack-steps of skvmf analyze and skvmf demo) "
        "or analyse more images"
    )

    def fooled_only(name, statement, values, rule, all_images):
        if n_fooled < MIN_FOOLED:
            return _finding(name, statement, None, rule, held_out, reason=too_few)
        est = rs.estimate(*values)
        note = where
        if all_images is not None and all_images["low"] is not None:
            note += (
                f"; over all {attack['n_images']} attacked images: "
                f"{all_images['value']:.3g} [{all_images['low']:.3g}, "
                f"{all_images['high']:.3g}]"
            )
        return _finding(
            name,
            statement,
            est,
            rule,
            held_out,
            note,
            n_images=n_fooled,
            reason=f"no knowledge point of the adversarial class at {deep} "
            "on the fooled images: nothing to compare",
        )

    out = []
    if shallow != deep:
        diff = _stack(per, deep, "one_minus_cos") - _stack(
            per, shallow, "one_minus_cos"
        )
        out.append(
            fooled_only(
                "attack_moves_deep_regions_more",
                "On the held-out images the PGD attack fooled (classified "
                "correctly before, as another class after), it moves the "
                f"regions of the deepest layer ({deep}) more than those of the "
                f"shallowest ({shallow}): mean 1 - cos difference > 0.",
                (_on_fooled, diff, fooled),
                _above(0.0),
                rs.estimate(mean_of, diff),
            )
        )
    out.append(
        fooled_only(
            "adversarial_points_at_other_regions",
            "On the held-out images the PGD attack fooled, the knowledge "
            f"points of the adversarial class after the attack at the deepest "
            f"layer ({deep}) are mostly at other regions than the knowledge "
            "points of the original class before: the share of them at "
            "regions that were original-class points is < 0.5.",
            (
                ratio_of,
                _stack(per, deep, "overlap"),
                _stack(per, deep, "adversarial_class_points"),
            ),
            _below(0.5),
            None,
        )
    )
    return out


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
                n_images=rs.n_images,
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
        out.append(_plateau_finding(rs, measures, result, deep, n_repeats, is_held_out))
    if result.adversarial is not None:
        out += _attack_finding(rs, result, shallow, deep, is_held_out)
    if result.distillation:
        out += _student_findings(
            rs, measures, result, main, deep, n_repeats, is_held_out
        )
    return out
