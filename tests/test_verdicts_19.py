"""Three verdicts instead of two (issue 19, item 1): holds, contradicted,
inconclusive (with the images that would decide it) and not evaluated, in
the findings and in every view of them (summary, HTML, report, CLI, JSON)."""

from __future__ import annotations

import json
import math
import time
import types

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skvmf._utils import tables
from skvmf.analysis._findings import _above, _below, _finding, _images_to_decide
from skvmf.analysis._result import AnalysisResult


def _est(value, low, high):
    return {"value": value, "low": low, "high": high}


# (rule, interval, verdict): wholly on the claimed side, wholly on the other,
# spanning the threshold, and touching it from either side
CASES = [
    (_above(0.9), (0.92, 0.99), "holds"),
    (_above(0.9), (0.5, 0.85), "contradicted"),
    (_above(0.9), (0.88, 0.95), "inconclusive"),
    (_above(0.0), (0.0, 0.4), "inconclusive"),  # low on t: not shown
    (_above(0.0), (-0.4, 0.0), "contradicted"),  # nowhere above 0
    (_above(0.0), (0.0, 0.0), "contradicted"),
    (_below(0.0), (-0.9, -0.1), "holds"),
    (_below(0.0), (0.1, 0.9), "contradicted"),
    (_below(0.0), (-11.8, 3.1), "inconclusive"),
    (_below(0.0), (-0.4, 0.0), "inconclusive"),  # high on t: not shown
    (_below(0.0), (0.0, 0.4), "contradicted"),
]


@pytest.mark.parametrize(("rule", "interval", "verdict"), CASES)
def test_verdict_from_the_interval(rule, interval, verdict):
    low, high = interval
    f = _finding(
        "f", "claim", _est((low + high) / 2, low, high), rule, True, n_images=50
    )
    assert f["verdict"] == verdict
    # the old key stays: True exactly when the verdict is holds
    assert f["holds"] is (verdict == "holds")
    assert f["side"] == rule.side and f["threshold"] == rule.threshold
    assert f["n_images"] == 50
    assert (f["images_to_decide"] is not None) == (
        verdict == "inconclusive" and (low + high) / 2 != rule.threshold
    )


def test_the_issue_intervals_are_inconclusive_with_the_closed_form():
    # the demo's two "does not hold" of issue 19, on 60 held-out images
    emergence = _finding(
        "emergence", "s", _est(6.2, -1.1, 12.3), _above(0.0), True, n_images=60
    )
    student = _finding(
        "student", "s", _est(-4.9, -11.8, 3.1), _below(0.0), True, n_images=60
    )
    assert emergence["verdict"] == student["verdict"] == "inconclusive"
    # the half-width on the threshold's side (asymmetric intervals)
    assert emergence["images_to_decide"] == math.ceil(60 * (7.3 / 6.2) ** 2) == 84
    assert student["images_to_decide"] == math.ceil(60 * (8.0 / 4.9) ** 2) == 160


@settings(max_examples=300, deadline=None)
@given(
    t=st.floats(-5, 5),
    d=st.floats(1e-3, 10),  # |value - threshold|
    over=st.floats(1e-6, 50),  # how far the near bound lies past t
    far=st.floats(0, 50),
    n=st.integers(2, 5000),
    value_above=st.booleans(),
    side=st.sampled_from(["above", "below"]),
)
def test_images_to_decide_just_excludes_the_threshold(
    t, d, over, far, n, value_above, side
):
    """With n' images and the 1/sqrt(n) scaling the scaled interval just
    excludes t: at n' it does, at n' - 1 it does not (yet)."""
    value = t + d if value_above else t - d
    # the bound on t's side reaches past t; the other one anywhere beyond value
    if value_above:
        low, high = t - over, value + far
        width = value - low
    else:
        low, high = value - far, t + over
        width = high - value
    rule = _above(t) if side == "above" else _below(t)
    f = _finding("f", "s", _est(value, low, high), rule, True, n_images=n)
    assert f["verdict"] == "inconclusive"
    need = f["images_to_decide"]
    assert need == _images_to_decide(value, low, high, t, n)[0]
    assert need > n  # the near bound is past t, so w > |value - t|
    distance = abs(value - t)
    # at n' the near bound, value -+ w sqrt(n / n'), has crossed t; at n' - 1
    # it has not
    assert width * math.sqrt(n / need) < distance * (1 + 1e-9)
    assert width * math.sqrt(n / (need - 1)) >= distance * (1 - 1e-9)


def test_no_estimate_on_the_threshold_or_without_images():
    f = _finding("f", "s", _est(0.0, -1.0, 1.0), _above(0.0), True, n_images=60)
    assert f["verdict"] == "inconclusive" and f["images_to_decide"] is None
    assert "sits on the threshold" in f["note"]
    g = _finding("g", "s", _est(0.5, -1.0, 1.0), _above(0.0), True)
    assert g["images_to_decide"] is None and g["n_images"] is None
    assert "cannot be estimated" in tables.verdict_sentence(f)
    assert tables.findings_rows([f])[0]["images to decide"] == "cannot be estimated"


def test_not_evaluated_says_why():
    f = _finding(
        "f", "s", None, _above(0.0), True, reason="too few fooled images: raise eps"
    )
    assert f["verdict"] == "not evaluated" and f["holds"] is None
    assert f["images_to_decide"] is None and f["value"] is None
    assert "raise eps" in f["note"]
    assert (
        tables.verdict_sentence(f) == "not evaluated: too few fooled images: raise eps"
    )
    # an estimate whose every draw was undefined has no interval either
    g = _finding("g", "s", _est(None, None, None), _below(0.0), True, n_images=9)
    assert g["verdict"] == "not evaluated" and "undefined" in g["note"]


def test_about_images_rounds_up_and_caps():
    assert tables.about_images(84) == "about 84"
    assert tables.about_images(473) == "about 470"
    assert tables.about_images(481) == "about 480"
    assert tables.about_images(12_501) == "about 13000"
    assert tables.about_images(1_000_001) == "more than a million"
    big = _finding("f", "s", _est(1e-5, -1.0, 1.0), _above(0.0), True, n_images=60)
    assert big["images_to_decide"] > 10**6
    assert "more than a million held-out images" in tables.verdict_sentence(big)


def _findings():
    return [
        _finding("agree", "s", _est(0.95, 0.92, 0.98), _above(0.9), True, n_images=120),
        _finding("wrong", "s", _est(-0.5, -1.0, -0.1), _above(0.0), True, n_images=120),
        _finding("open", "s", _est(1.0, -1.0, 3.0), _above(0.0), True, n_images=120),
        _finding("none", "s", None, _above(0.0), True, reason="needs 3 checkpoints"),
    ]


def test_rows_and_sentences():
    fs = _findings()
    rows = tables.findings_rows(fs)
    assert [r["verdict"] for r in rows] == list(tables.VERDICTS)
    # 120 (2 / 1)^2 = 480: the issue's example
    assert fs[2]["images_to_decide"] == 481
    assert [r["images to decide"] for r in rows] == ["", "", "about 480 (now 120)", ""]
    notes = tables.findings_notes(fs)
    assert len(notes) == 3 and not any(n.startswith("agree") for n in notes)
    assert notes[0].startswith("wrong: contradicted: the interval")
    assert notes[1] == (
        "open: inconclusive: the interval [-1.000, 3.000] spans 0 and the "
        "estimate leans the claimed way; about 480 held-out images (now 120) "
        "would decide it, if the interval narrows as 1/sqrt(images)"
    )
    assert notes[2] == "none: not evaluated: needs 3 checkpoints"
    # records from before the three verdicts still show
    legacy = {"name": "x", "statement": "s", "value": 1.0, "low": -1.0}
    legacy |= {"high": 2.0, "holds": False, "held_out": True}
    assert tables.findings_rows([legacy])[0]["verdict"] == "does not hold"


def _result(findings):
    """An AnalysisResult with just what its tables need."""
    return AnalysisResult(
        features=None,
        labels=np.arange(4),
        classes=["a", "b"],
        layers=["conv"],
        extractor=None,
        projector=None,
        aligner=None,
        counter=types.SimpleNamespace(tau=0.4),
        projection={"dnn_accuracy": 1.0},
        knowledge=[{"layer": "conv", "mean_count": 2.0}],
        findings=findings,
        settings={"n_repeats": 3, "confidence": 0.95, "n_held_out_images": 120},
    )


def test_summary_html_json_and_cli(tmp_path, capsys):
    from skvmf.cli import _print_result

    result = _result(_findings())
    text = result.summary()
    for verdict in tables.VERDICTS:
        assert verdict in text
    assert "about 480 held-out images (now 120) would decide it" in text
    assert "1/sqrt(images)" in text and "does not hold" not in text
    # Jupyter: each verdict in its colour, inline
    page = result._repr_html_()
    for verdict, colour in tables.VERDICT_COLOURS.items():
        assert f'style="color:{colour};font-weight:600">{verdict}<' in page
    assert "would decide it" in page
    # results.json carries the verdicts and the image counts
    saved = json.loads(result.save(tmp_path)["results"].read_text())
    by_name = {f["name"]: f for f in saved["findings"]}
    assert by_name["open"]["verdict"] == "inconclusive"
    assert by_name["open"]["n_images"] == 120
    assert by_name["open"]["images_to_decide"] == 481
    assert by_name["none"]["verdict"] == "not evaluated"
    assert by_name["none"]["images_to_decide"] is None
    # the command line prints the same findings
    _print_result(result, tmp_path / "index.html", time.perf_counter())
    out = capsys.readouterr().out
    assert "inconclusive" in out and "contradicted" in out
    assert "would decide it, if the interval narrows as 1/sqrt(images)" in out


def test_report_section_and_figure():
    import matplotlib.pyplot as plt

    from skvmf import report
    from skvmf.plotting import plot_findings

    fs = _findings()
    html = report._findings_html(fs)
    for verdict, colour in tables.VERDICT_COLOURS.items():
        assert f'style="color:{colour};font-weight:600">{verdict}<' in html
    assert "images to decide" in html and "would decide it" in html
    text = report._TEXT["findings"]
    assert "contradicted" in text and "inconclusive" in text
    assert "1/sqrt(images)" in text and "does not hold" not in text
    assert "amber: inconclusive" in report._FIGURE_CAPTIONS["findings"]
    fig = plot_findings(fs)
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    assert any(t.endswith("(inconclusive)") for t in titles)
    assert any(t.endswith("(contradicted)") for t in titles)
    plt.close(fig)
