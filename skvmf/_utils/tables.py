"""Plain tables: lists of dict rows ("records"), written as CSV, Markdown or HTML.

Every table in skvmf is a list of dicts with the same keys, so it is JSON as
is, loads into pandas with ``pandas.DataFrame(records)``, and needs no
dependency here. The display rows that the analysis' summary and the HTML
report both show (knowledge columns, findings, diagnostics) are built here
once, so the two views cannot drift apart.
"""

from __future__ import annotations

import csv
import html
import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

# the knowledge table's columns, in the order every view shows them
KNOWLEDGE_COLUMNS = (
    "layer",
    "mean_count",
    "mean_reliable",
    "reliable_ratio",
    "vote_accuracy",
    "mean_cos_h_g",
)


def columns(records: Sequence[dict]) -> list[str]:
    """Column names in first-seen order."""
    cols: list[str] = []
    for row in records:
        for key in row:
            if key not in cols:
                cols.append(key)
    return cols


def _fmt(value, digits: int) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 10 ** (-digits)):
            return f"{value:.{digits}g}"
        return f"{value:.{digits}f}"
    return str(value)


def to_csv(records: Sequence[dict], path: str | Path | None = None) -> str:
    """Write ``records`` as CSV (full precision); return the text."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns(records), lineterminator="\n")
    writer.writeheader()
    for row in records:
        writer.writerow(row)
    text = buf.getvalue()
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text


def to_markdown(records: Sequence[dict], digits: int = 3) -> str:
    """A GitHub-flavoured Markdown table."""
    cols = columns(records)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in records:
        lines.append(
            "| " + " | ".join(_fmt(row.get(c, ""), digits) for c in cols) + " |"
        )
    return "\n".join(lines)


def to_html(
    records: Sequence[dict],
    digits: int = 3,
    caption: str | None = None,
    styles: dict | None = None,
) -> str:
    """An HTML ``<table>`` (values escaped).

    ``styles`` maps a column to ``{cell text: CSS}``: inline styles, so the
    table keeps them where no stylesheet reaches (a Jupyter output cell).
    """
    styles = styles or {}
    cols = columns(records)
    out = ['<table class="skvmf-table">']
    if caption:
        out.append(f"<caption>{html.escape(caption)}</caption>")
    out.append("<thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols))
    out.append("</tr></thead><tbody>")
    for row in records:
        cells = ""
        for c in cols:
            text = _fmt(row.get(c, ""), digits)
            css = styles.get(c, {}).get(text)
            attr = f' style="{html.escape(css)}"' if css else ""
            cells += f"<td{attr}>{html.escape(text)}</td>"
        out.append(f"<tr>{cells}</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def to_text(records: Sequence[dict], digits: int = 3) -> str:
    """A fixed-width plain-text table for terminals."""
    cols = columns(records)
    cells = [[_fmt(row.get(c, ""), digits) for c in cols] for row in records]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(cols)]
    line = "  ".join(c.ljust(w) for c, w in zip(cols, widths))
    rule = "  ".join("-" * w for w in widths)
    body = ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join([line, rule, *body])


def with_intervals(records: Sequence[dict], digits: int = 3) -> list[dict]:
    """Rows for display: each ``x`` with ``x_low`` and ``x_high`` becomes one
    cell ``"x [low, high]"`` (the bounds' columns are dropped)."""
    out = []
    for row in records:
        shown = {}
        for key, value in row.items():
            if key.endswith(("_low", "_high")) and key.rsplit("_", 1)[0] in row:
                continue
            low, high = row.get(f"{key}_low"), row.get(f"{key}_high")
            if (
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and (isinstance(low, (int, float)) and isinstance(high, (int, float)))
            ):
                shown[key] = (
                    f"{_fmt(float(value), digits)} "
                    f"[{_fmt(float(low), digits)}, {_fmt(float(high), digits)}]"
                )
            else:
                shown[key] = "" if value is None else value
        out.append(shown)
    return out


def select(records: Sequence[dict], cols: Sequence[str]) -> list[dict]:
    """Columns ``cols`` of every record, with their interval bounds."""
    keep = [k for c in cols for k in (c, f"{c}_low", f"{c}_high")]
    return [{c: r[c] for c in keep if c in r} for r in records]


# a finding's verdicts, in the order every view lists them (made by
# skvmf.analysis._findings._finding: holds = the interval lies on the
# claimed side of the threshold, contradicted = on the other side,
# inconclusive = it spans the threshold, not evaluated = no interval)
VERDICTS = ("holds", "contradicted", "inconclusive", "not evaluated")

# each verdict's colour in the HTML views: green, red, amber, grey
VERDICT_COLOURS = {
    "holds": "#1a7f37",
    "contradicted": "#cf222e",
    "inconclusive": "#9a6700",
    "not evaluated": "#6e7781",
}

# the verdict cell's style in the HTML tables (see :func:`to_html`)
VERDICT_STYLES = {
    "verdict": {v: f"color:{c};font-weight:600" for v, c in VERDICT_COLOURS.items()}
}

# the assumption behind ``images_to_decide``, as every view states it
DECIDE_ASSUMPTION = "if the interval narrows as 1/sqrt(images)"

# beyond this the number of images is only said to be "more than a million"
_MANY_IMAGES = 1_000_000


def verdict_of(finding: dict) -> str:
    """The finding's verdict (records written before there were three
    verdicts carry only ``holds``: False there is "does not hold")."""
    if finding.get("verdict"):
        return finding["verdict"]
    return {True: "holds", False: "does not hold", None: "not evaluated"}[
        finding.get("holds")
    ]


def about_images(n) -> str:
    """``n`` images in words, to two significant digits ("about 480": a
    rough estimate); "more than a million" beyond a million (the 1/sqrt(n)
    scaling is no guide that far)."""
    n = int(n)
    if n > _MANY_IMAGES:
        return "more than a million"
    if n >= 100:
        step = 10 ** (len(str(n)) - 2)
        n = (n + step // 2) // step * step
    return f"about {n}"


def _images_cell(finding: dict) -> str:
    """The "images to decide" cell: inconclusive findings only."""
    if verdict_of(finding) != "inconclusive":
        return ""
    need, now = finding.get("images_to_decide"), finding.get("n_images")
    if need is None:
        return "cannot be estimated"
    return about_images(need) + ("" if now is None else f" (now {now})")


def verdict_sentence(finding: dict, digits: int = 3) -> str:
    """The verdict in words: what the interval shows, and for an
    inconclusive finding roughly how many images would decide it."""
    verdict = verdict_of(finding)
    low, high, value = finding.get("low"), finding.get("high"), finding.get("value")
    if verdict == "not evaluated" or low is None or high is None:
        why = finding.get("note") or "the run lacked what it needs"
        return f"{verdict}: {why}"
    interval = f"[{_fmt(float(low), digits)}, {_fmt(float(high), digits)}]"
    side, t = finding.get("side"), finding.get("threshold")
    if side is None or t is None:  # a record without its claim
        return f"{verdict}: the interval is {interval}"
    t_text = f"{float(t):.{digits}g}"
    other = {"above": "below", "below": "above"}[side]
    if verdict == "holds":
        return f"holds: the interval {interval} lies {side} {t_text}, as claimed"
    if verdict == "contradicted":
        return (
            f"contradicted: the interval {interval} lies {other} {t_text} "
            f"(the statement claims {side}): on these images the data "
            "disagree with it, they are not merely undecided"
        )
    text = f"inconclusive: the interval {interval} spans {t_text}"
    need, now = finding.get("images_to_decide"), finding.get("n_images")
    if need is None:
        why = finding.get("note") or "the number of images is unknown"
        return f"{text}; how many images would decide it cannot be estimated ({why})"
    lean = value > t if side == "above" else value < t
    kind = "held-out images" if finding.get("held_out", True) else "images"
    now_text = "" if now is None else f" (now {now})"
    return (
        f"{text} and the estimate leans "
        f"{'the claimed way' if lean else 'against the claim'}; "
        f"{about_images(need)} {kind}{now_text} would decide it, "
        f"{DECIDE_ASSUMPTION}"
    )


def findings_rows(findings: Sequence[dict], *, wide: bool = False) -> list[dict]:
    """The findings of an analysis for display: verdict, value and interval
    (``value``, ``value_low``, ``value_high``: see :func:`with_intervals`)
    and, for an inconclusive one, about how many images would decide it.

    ``wide`` is the report page's form: each statement too, and where it was
    measured in words; the narrow form fits a terminal.
    """
    rows = []
    for f in findings:
        row = {"finding": f["name"]}
        if wide:
            row["statement"] = f["statement"]
        row.update(
            {
                "value": "" if f["value"] is None else f["value"],
                "value_low": f["low"],
                "value_high": f["high"],
                "verdict": verdict_of(f),
            }
        )
        if wide:
            row["measured on"] = "held-out images" if f["held_out"] else "fit images"
        else:
            row["on"] = "held-out" if f["held_out"] else "fit images"
        row["images to decide"] = _images_cell(f)
        rows.append(row)
    return rows


def findings_notes(findings: Sequence[dict], digits: int = 3) -> list[str]:
    """``"name: sentence"`` (:func:`verdict_sentence`) for every finding that
    does not hold: what its interval shows and what would decide it."""
    return [
        f"{f['name']}: {verdict_sentence(f, digits)}"
        for f in findings
        if verdict_of(f) != "holds"
    ]


def diagnostics_rows(diagnostics: Sequence[dict]) -> list[dict]:
    """The diagnostics of an analysis for display: mean first and last loss
    of every fitted stage, how many repeats lowered it, and the verdict."""
    return [
        {
            "network": d["network"],
            "layer": d["layer"],
            "stage": d["stage"],
            "loss_first": d["loss_first"],
            "loss_last": d["loss_last"],
            "fell": f"{d['n_converged']}/{d['n_repeats']}",
            "converged": {True: "yes", False: "NO", None: "-"}[d["converged"]],
        }
        for d in diagnostics
    ]


def pivot(records, value):
    """One row per iteration, one column per layer (with the interval bounds
    as ``LAYER_low``/``LAYER_high`` when the records have them)."""
    layers = list(dict.fromkeys(r["layer"] for r in records))
    out = {}
    for r in records:
        row = out.setdefault(r["iteration"], {"iteration": r["iteration"]})
        if "accuracy" in r:
            row["accuracy"] = r["accuracy"]
        row[r["layer"]] = r[value]
        for bound in ("low", "high"):
            if f"{value}_{bound}" in r:
                row[f"{r['layer']}_{bound}"] = r[f"{value}_{bound}"]
    cols = ["iteration", "accuracy"]
    for layer in layers:
        cols += [layer, f"{layer}_low", f"{layer}_high"]
    return [{k: row[k] for k in cols if k in row} for row in out.values()]


def jsonable(value):
    """``value`` with numpy scalars and arrays as Python values, tuples as lists,
    dict keys as strings and non-finite floats as ``None`` (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
