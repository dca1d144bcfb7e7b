"""Issue 19, item 2: attacks measured where they succeed.

The attack's success rate beside its figures, the attack findings made on
the fooled images only (not evaluated when too few were fooled), the
attack's budget from analyze() and the command line, and the regions kept
for the report's clean-against-adversarial view.
"""

import json
import pickle
import re
import types
import warnings

import numpy as np
import pytest
import torch
from _helpers import four_class_workload
from sklearn.exceptions import ConvergenceWarning

import skvmf
import skvmf.analysis
from skvmf import cli
from skvmf._utils.uncertainty import Resampler
from skvmf.analysis import _studies
from skvmf.analysis._findings import _attack_finding
from skvmf.analysis._studies import MIN_FOOLED
from skvmf.attacks import pgd_attack

FAST = {
    "aligner_params": {"max_epochs": 2, "weight_steps": 2, "n_candidates": 10},
    "projector_params": {"max_iter": 200},
}
LAYERS = ["conv_33", "conv_53"]
BUDGET = {"epsilon": 1.0, "n_steps": 4, "step_size": 0.4}


def _recording(monkeypatch):
    """pgd_attack as analyze calls it, recording its arguments and result."""
    calls = []

    def record(model, images, labels, **params):
        out = pgd_attack(model, images, labels, **params)
        calls.append({"labels": np.asarray(labels), "params": params, "out": out})
        return out

    monkeypatch.setattr(_studies, "pgd_attack", record)
    return calls


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    torch.manual_seed(0)
    model, X, y = four_class_workload(tmp_path_factory.mktemp("ckpt"), lr=4e-3)
    with pytest.MonkeyPatch.context() as mp:
        calls = _recording(mp)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # tiny fits
            result = skvmf.analyze(
                model,
                X.numpy(),
                y.numpy(),
                layers=LAYERS,
                attack=dict(BUDGET),
                n_repeats=2,
                n_bootstrap=200,
                n_display=0,
                random_state=0,
                **FAST,
            )
    return result, calls


def _finding(result, name):
    return next(f for f in result.findings if f["name"] == name)


def test_the_budget_reaches_pgd_attack(run):
    result, calls = run
    (call,) = calls
    for key, value in BUDGET.items():
        assert call["params"][key] == value
    assert {k: result.attack[k] for k in BUDGET} == BUDGET


def test_success_rate_is_fooled_over_attacked(run):
    result, calls = run
    out, y = calls[0]["out"], calls[0]["labels"]
    correct = out.clean_pred == y
    fooled = correct & (out.adv_pred != y)
    attack = result.attack
    assert attack["n_images"] == len(y) == len(result.eval_index)
    assert attack["n_attacked"] == correct.sum()
    assert attack["n_fooled"] == fooled.sum() >= MIN_FOOLED
    assert attack["success_rate"] == pytest.approx(fooled.sum() / correct.sum())
    assert attack["success_rate"] == pytest.approx(out.success_rate)
    low, high = attack["success_rate_low"], attack["success_rate_high"]
    assert 0 <= low <= attack["success_rate"] <= high <= 1
    # beside every row of the attack table, and in the summary's heading
    for row in result.adversarial:
        assert row["success_rate"] == attack["success_rate"]
        assert row["n_fooled"] == attack["n_fooled"]
    assert "success_rate_low" in result.summary()


def test_findings_and_fooled_columns_use_the_fooled_images_only(run):
    result, calls = run
    out, y = calls[0]["out"], calls[0]["labels"]
    fooled = (out.clean_pred == y) & (out.adv_pred != y)
    per = result.adversarial_measures
    shallow, deep = LAYERS

    def on_fooled(layer, name):
        return np.mean([m[layer][name][fooled].mean() for m in per])

    f = _finding(result, "attack_moves_deep_regions_more")
    diff = on_fooled(deep, "one_minus_cos") - on_fooled(shallow, "one_minus_cos")
    assert f["value"] == pytest.approx(diff)
    assert f["n_images"] == fooled.sum()
    assert f["verdict"] in ("holds", "contradicted", "inconclusive")
    assert "over all" in f["note"] and "success rate" in f["note"]
    row = next(r for r in result.adversarial if r["layer"] == deep)
    assert row["mean_one_minus_cos_fooled"] == pytest.approx(
        on_fooled(deep, "one_minus_cos")
    )
    # the all-images columns are kept
    all_images = np.mean([m[deep]["one_minus_cos"].mean() for m in per])
    assert row["mean_one_minus_cos"] == pytest.approx(all_images)
    points = _finding(result, "adversarial_points_at_other_regions")
    assert points["n_images"] == fooled.sum()


def _synthetic(fooled, deep_cos, shallow_cos, overlap, adv_points, n_repeats=2):
    """result-like object with per-image attack measures (same every repeat)."""
    layer = {
        "fooled": fooled.astype(float),
        "overlap": overlap.astype(float),
        "adversarial_class_points": adv_points.astype(float),
    }
    per = [
        {
            "s": {**layer, "one_minus_cos": shallow_cos},
            "d": {**layer, "one_minus_cos": deep_cos},
        }
        for _ in range(n_repeats)
    ]
    n_fooled = int(fooled.sum())
    attack = {
        "epsilon": 0.1,
        "n_steps": 50,
        "n_images": len(fooled),
        "n_attacked": len(fooled),
        "n_fooled": n_fooled,
        "success_rate": n_fooled / len(fooled),
        "success_rate_low": None,
        "success_rate_high": None,
    }
    return types.SimpleNamespace(adversarial_measures=per, attack=attack)


def test_the_finding_ignores_images_that_were_not_fooled():
    # 20 fooled images where the deep layer moves more (+0.5), 20 not fooled
    # where it moves much less (-2): over all images the difference is
    # negative, on the fooled ones exactly +0.5
    fooled = np.r_[np.ones(20), np.zeros(20)].astype(bool)
    shallow = np.full(40, 0.1)
    deep = np.where(fooled, 0.6, -1.9)
    overlap = np.where(fooled, 1.0, 0.0)
    adv_points = np.where(fooled, 4.0, 0.0)
    rs = Resampler(2, 40, 300, 0.95, 0)
    result = _synthetic(fooled, deep, shallow, overlap, adv_points)
    moves, points = _attack_finding(rs, result, "s", "d", True)
    assert moves["value"] == pytest.approx(0.5)
    assert moves["low"] == pytest.approx(0.5) and moves["verdict"] == "holds"
    assert moves["n_images"] == 20
    assert "-0.75 [" in moves["note"]  # the all-images value, for comparison
    # one adversarial-class point in four at a former original-class point
    assert points["value"] == pytest.approx(0.25) and points["verdict"] == "holds"


def test_too_few_fooled_images_is_not_evaluated_and_says_what_to_change():
    fooled = np.zeros(40, dtype=bool)
    fooled[: MIN_FOOLED - 1] = True
    rs = Resampler(2, 40, 300, 0.95, 0)
    zeros = np.zeros(40)
    result = _synthetic(fooled, zeros + 1, zeros, zeros, zeros + 1)
    for f in _attack_finding(rs, result, "s", "d", True):
        assert f["verdict"] == "not evaluated" and f["value"] is None
        assert f["holds"] is None
        assert "--attack-epsilon" in f["note"] and "--attack-steps" in f["note"]
        assert f"fooled {MIN_FOOLED - 1} of" in f["note"]


def test_a_tiny_epsilon_fools_nothing_and_the_findings_say_so(monkeypatch):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(24, 3, 16, 16, generator=g)
    y = (X[:, 2].mean(dim=(1, 2)) > 0).long()
    X[:, 2] += 2 * y[:, None, None].float()
    model = skvmf.architectures.make_classifier(
        "vgg16", 2, width=0.0625, input_size=16, batch_norm=True, random_state=0
    )
    calls = _recording(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        result = skvmf.analyze(
            model,
            X.numpy(),
            y.numpy(),
            layers=LAYERS,
            attack={"epsilon": 1e-12, "n_steps": 1},
            tau=0.6,  # above 1/C for two classes
            n_repeats=1,
            n_bootstrap=100,
            n_display=0,
            random_state=0,
            **FAST,
        )
    out = calls[0]["out"]
    assert result.attack["n_fooled"] == int(
        (
            (out.clean_pred == y.numpy()[result.eval_index])
            & (out.adv_pred != out.clean_pred)
        ).sum()
    )
    assert result.attack["n_fooled"] < MIN_FOOLED
    names = {"attack_moves_deep_regions_more", "adversarial_points_at_other_regions"}
    found = [f for f in result.findings if f["name"] in names]
    assert {f["name"] for f in found} == names
    for f in found:
        assert f["verdict"] == "not evaluated" and f["value"] is None
        assert "--attack-epsilon" in f["note"]


def test_embeddings_for_the_clean_against_adversarial_view(run):
    result, calls = run
    out = calls[0]["out"]
    emb = result.adversarial_embeddings
    assert list(emb) == LAYERS
    held = list(result.eval_index)
    r = result.features.h[LAYERS[0]].shape[1]
    # the same regions at every layer, at most 1500, of held-out images
    assert len(emb[LAYERS[0]]["image"]) == min(1500, len(held) * r)
    for layer, e in emb.items():
        m = len(e["image"])
        assert e["clean"].shape == e["adversarial"].shape == (m, 3)
        assert np.array_equal(e["image"], emb[LAYERS[0]]["image"])
        assert np.array_equal(e["region"], emb[LAYERS[0]]["region"])
        assert set(e["image"]) <= set(held)
        # the coordinates of the report's layer-regions view
        h = result.features.h[layer][e["image"], e["region"]]
        assert np.allclose(e["clean"], h[:, :3] / result.counter.scales_[layer])
        pos = np.searchsorted(held, e["image"])
        y = result.labels[e["image"]]
        fooled = (out.clean_pred[pos] == y) & (out.adv_pred[pos] != y)
        assert np.array_equal(e["fooled"], fooled)
        assert np.array_equal(e["predicted_adversarial"], out.adv_pred[pos])
        assert e["point_clean"].min() >= -1
    json.dumps(result.to_dict())
    assert pickle.loads(pickle.dumps(emb)).keys() == emb.keys()


def test_bad_attack_options_are_named_before_any_work():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
    X, y = np.zeros((4, 3, 2, 2)), np.array([0, 1, 0, 1])
    for attack, words in (
        ({"eps": 0.1}, "unknown key(s) ['eps']"),
        ({"epsilon": -0.1}, "attack['epsilon']"),
        ({"epsilon": float("inf")}, "attack['epsilon']"),
        ({"n_steps": 0}, "attack['n_steps']"),
        ({"step_size": "big"}, "attack['step_size']"),
        ({"targeted": True}, "unknown key(s) ['targeted']"),
    ):
        with pytest.raises(ValueError, match=re.escape(words)):
            skvmf.analyze(model, X, y, attack=attack)


def _captured_attack(monkeypatch):
    seen = {}

    def fake(model, data, **kwargs):
        seen.update(kwargs)
        return "result"

    monkeypatch.setattr(skvmf.analysis, "analyze", fake)
    return seen


def test_cli_budget_flags_reach_analyze(monkeypatch):
    parser = cli._build_parser()
    flags = [
        "--attack-epsilon",
        "0.2",
        "--attack-steps",
        "7",
        "--attack-step-size",
        "0.05",
    ]
    seen = _captured_attack(monkeypatch)
    args = parser.parse_args(
        ["analyze", "--checkpoint", "x.pt", "--data", "d", "--attack", *flags]
    )
    assert cli._analyze_images(args, None, None, None) == "result"
    assert seen["attack"] == {"epsilon": 0.2, "n_steps": 7, "step_size": 0.05}
    args = parser.parse_args(
        ["analyze", "--checkpoint", "x.pt", "--data", "d", "--attack"]
    )
    cli._analyze_images(args, None, None, None)
    assert seen["attack"] is True
    args = parser.parse_args(["analyze", "--checkpoint", "x.pt", "--data", "d"])
    cli._analyze_images(args, None, None, None)
    assert seen["attack"] is False
    # the demo: the attack runs by default, with the budget given
    args = parser.parse_args(["demo", "--n-per-class", "1", "--attack-steps", "9"])
    cli._analyze_demo(args, None, [], {})
    assert seen["attack"] == {"n_steps": 9}


def test_cli_budget_without_the_attack_is_a_usage_error(tmp_path, capsys):
    out = str(tmp_path / "out")
    assert (
        cli.main(["demo", "--no-attack", "--attack-epsilon", "0.1", "--out", out]) == 2
    )
    assert "--no-attack" in capsys.readouterr().err
    code = cli.main(
        [
            "analyze",
            "--checkpoint",
            "x.pt",
            "--data",
            "d",
            "--attack-steps",
            "3",
            "--out",
            out,
        ]
    )
    assert code == 2 and "no --attack" in capsys.readouterr().err
    assert cli.main(["demo", "--attack-epsilon", "-1", "--out", out]) == 2
    assert "finite number >= 0" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
