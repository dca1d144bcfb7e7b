"""The skvmf command: demo, analyze, help and errors."""

import base64
import contextlib
import csv
import io
import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _helpers import read_csv, same_cell
from PIL import Image

import skvmf
from skvmf.cli import main
from skvmf.models import make_classifier, train_classifier
from skvmf.training import spread_checkpoints

CLASSES = ["blue", "green", "red"]
ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--quick", "--jobs", "1", "--threads", "1"]
PAPER_VGG_LAYERS = ["conv_12", "conv_22", "conv_33", "conv_43", "conv_53"]


def run(argv):
    """main(argv) in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def check_report(directory):
    """The structure every report has; returns results.json."""
    index = directory / "index.html"
    page = index.read_text(encoding="utf-8")
    # scripts: the embedded plotly bundle, the 3-D views, the click panels'
    # data (JSON) and script, none loading a file
    attributes = re.findall(r"<script\b([^>]*)>", page, re.I)
    assert not any(re.search(r"\bsrc\s*=", attrs, re.I) for attrs in attributes)
    data_script = r'\s*(type="application/json"\s*|id="[\w-]+"\s*)+'
    assert all(
        attrs == "" or re.fullmatch(data_script, attrs) for attrs in attributes
    ), attributes
    page = re.sub(r"<script\b[^>]*>.*?</script>", "", page, flags=re.S)
    assert not re.search(r"<link\b|<script\b", page, re.I)
    assert not re.search(r"(src|href)\s*=\s*\"(https?:|//)", page, re.I)
    assert 'src="http' not in page
    figures = sorted((directory / "figures").glob("*.png"))
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(embedded) == len(figures) >= 5
    assert sorted(base64.b64decode(b) for b in embedded) == sorted(
        p.read_bytes() for p in figures
    )
    for path in figures:
        with Image.open(path) as im:
            im.verify()
    results = json.loads((directory / "data" / "results.json").read_text())
    for name, records in results["tables"].items():
        rows = read_csv(directory / "data" / f"{name}.csv")
        assert len(rows) == len(records)
        for row, ref in zip(rows, records):
            assert all(same_cell(row[k], v) for k, v in ref.items()), name
    for path in (directory / "data").glob("*.json"):
        json.loads(path.read_text())
    for path in (directory / "data").glob("*.csv"):
        assert read_csv(path)
    return results


def one_line_error(argv, expected_code):
    """Run ``argv``; the exit status and the single stderr line."""
    code, _, err = run(argv)
    assert code == expected_code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("skvmf: error: ")
    assert "Traceback" not in err
    return lines[0]


# ---------------------------------------------------------------------------
# help and version, as a real process
# ---------------------------------------------------------------------------
def test_python_m_skvmf_help():
    proc = subprocess.run(
        [sys.executable, "-m", "skvmf", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "demo" in proc.stdout and "analyze" in proc.stdout
    assert "examples:" in proc.stdout


def test_help_does_not_import_torch():
    code = (
        "import sys\n"
        "from skvmf.cli import main\n"
        "assert main(['analyze', '--help']) == 0\n"
        "print('torch' in sys.modules, 'matplotlib' in sys.modules, file=sys.stderr)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "False False"


def test_version_and_command_help(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"skvmf {skvmf.__version__}"
    for command, words in (
        ("demo", ("--n-per-class", "--checkpoints", "--no-students", "examples:")),
        ("analyze", ("--arch", "skvmf:", "--model-factory", "weights_only=True")),
    ):
        assert main([command, "--help"]) == 0
        out = capsys.readouterr().out
        assert all(w in out for w in words), command


def test_spread_keeps_first_and_last():
    items = [(i * 10, f"p{i}") for i in range(7)]
    for k in range(2, 8):
        chosen = spread_checkpoints(items, k)
        assert len(chosen) == k
        assert chosen[0] == items[0] and chosen[-1] == items[-1]
        its = [it for it, _ in chosen]
        assert its == sorted(set(its))
    assert spread_checkpoints(items, 9) == items and spread_checkpoints(items, 0) == []


# ---------------------------------------------------------------------------
# skvmf demo --quick
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "report"
    code, stdout, stderr = run(
        ["demo", *QUICK, "--students", "logits,conv_43", "--out", str(out)]
    )
    return code, stdout, stderr, out


@pytest.mark.slow
@pytest.mark.xdist_group("cli_demo")  # one demo run per suite
def test_demo_quick_writes_the_full_report(demo):
    code, stdout, stderr, out = demo
    assert code == 0, stderr[-2000:]
    results = check_report(out)
    figures = {p.stem for p in (out / "figures").glob("*.png")}
    assert figures == {
        "findings",
        "loss_curves",
        "sample_space_3d",
        "sample_space_2d",
        "layer_regions",
        "knowledge_counts",
        "knowledge_masks",
        "emergence",
        "sample_evolution",
        "adversarial_change",
        "distillation",
    }
    # the findings and diagnostics contract of every report
    assert {f["name"] for f in results["findings"]} >= {
        "projection_mimics_network",
        "reliable_ratio_rises_with_depth",
        "attack_moves_deep_regions_more",
        "student_fewer_reliable_points:student_logits",
        "student_fewer_reliable_points:student_conv_43",
    }
    assert {d["stage"] for d in results["diagnostics"]} == {
        "projection",
        "importance",
        "alignment",
    }
    # 4 test images per digit, the paper's five VGG-16 layers
    assert results["settings"]["n_images"] == 40
    assert results["layers"] == PAPER_VGG_LAYERS
    assert results["classes"] == [str(d) for d in range(10)]
    tables = results["tables"]
    # --quick: two checkpoints, the first and the last of training
    assert sorted({r["iteration"] for r in tables["emergence"]}) == [0, 66]
    assert {r["model"] for r in tables["distillation"]} == {
        "teacher",
        "student_logits",
        "student_conv_43",
    }
    assert 0 <= tables["attack"][0]["success_rate"] <= 1
    extra = json.loads((out / "data" / "extra.json").read_text())
    assert extra["checkpoints analysed (iterations)"] == "0, 66"
    history = read_csv(out / "data" / "training_history_teacher.csv")
    assert [int(r["epoch"]) for r in history] == [1, 2, 3]
    # the analysed teacher is the last checkpoint (batch-norm statistics
    # recalibrated when saved, after the last epoch's own evaluation)
    import torch

    last = sorted((out / "checkpoints").glob("*.pt"))[-1]
    saved = torch.load(last, map_location="cpu", weights_only=True)
    assert saved["iteration"] == 66
    assert extra["teacher test accuracy"] == pytest.approx(saved["accuracy"])
    last_epoch = float(history[-1]["val_accuracy"])
    assert abs(extra["teacher test accuracy"] - last_epoch) < 0.05
    assert {r["student"] for r in read_csv(out / "data" / "students.csv")} == {
        "student_logits",
        "student_conv_43",
    }
    assert len(list((out / "checkpoints").glob("*.pt"))) >= 2


@pytest.mark.slow
@pytest.mark.xdist_group("cli_demo")  # one demo run per suite
def test_study_images_tabulates_real_demo_reports(demo, tmp_path):
    """benchmarks/study_images.py reads what `skvmf demo` writes: every
    finding's interval, width and verdict at each size, and the width ratio."""
    import importlib.util
    import shutil

    code, _, stderr, out = demo
    assert code == 0, stderr[-2000:]
    script = ROOT / "benchmarks" / "study_images.py"
    spec = importlib.util.spec_from_file_location("skvmf_study_images", script)
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    # a second "size": the same report with every interval twice as wide
    # around its value, 4x the held-out images
    wide = tmp_path / "images-wide"
    shutil.copytree(out / "data", wide / "data")
    results = json.loads((out / "data" / "results.json").read_text())
    results["settings"]["n_held_out_images"] *= 4
    (wide / "data" / "results.json").write_text(json.dumps(results))
    rows = read_csv(out / "data" / "findings.csv")
    for row in rows:
        if row["low"]:
            v = float(row["value"])
            row["low"] = repr(v - 2 * (v - float(row["low"])))
            row["high"] = repr(v + 2 * (float(row["high"]) - v))
    with open(wide / "data" / "findings.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (tmp_path / "images-wide.run.json").write_text(
        json.dumps({"threads": 1, "wall_seconds": 61.0})
    )
    reports = [study.read_report(wide), study.read_report(out)]
    assert [r["wall_seconds"] for r in reports] == [61.0, None]
    text = study.page(reports)
    base = reports[1]["n_held_out"]
    assert f"| {base} | " in text and "1 min 01 s" in text
    assert f"width {4 * base} / {base} (0.50)" in text  # sorted by held-out
    measured = [r for r in rows if r["low"] and float(r["high"]) > float(r["low"])]
    assert measured, "no finding with a width in the demo report"
    for row in measured:
        line = next(x for x in text.splitlines() if x.startswith(f"| {row['name']} |"))
        assert line.rstrip(" |").endswith("2.00"), line
        assert row["verdict"] in line
    # another seed at the same size: columns labelled by seed, no width ratio
    other = tmp_path / "images-seed"
    shutil.copytree(out / "data", other / "data")
    results = json.loads((out / "data" / "results.json").read_text())
    results["settings"]["random_state"] = 7
    (other / "data" / "results.json").write_text(json.dumps(results))
    lines = study.page([*reports, study.read_report(other)]).splitlines()
    header = next(x for x in lines if x.startswith("| finding |"))
    assert f"{base} held out, seed 7: value" in header
    assert header.count(" / ") == 1 and header.count("seed") == 3
    # a report folder is refused by name when it is not one
    with pytest.raises(ValueError, match="not an skvmf report"):
        study.read_report(tmp_path)
    # the markdown goes into its own section, the rest of the page kept
    doc = tmp_path / "doc"
    doc.mkdir()
    (doc / "results_digits.md").write_text("# Results\n\nkept by hand\n")
    study.write_section(study.KEY, text, doc / "results_digits.md")
    page = (doc / "results_digits.md").read_text()
    assert "kept by hand" in page and "<!-- study_images:start -->" in page


@pytest.mark.slow
@pytest.mark.xdist_group("cli_demo")  # one demo run per suite
def test_demo_prints_summary_on_stdout_progress_on_stderr(demo):
    code, stdout, stderr, out = demo
    assert code == 0
    assert "Knowledge points per layer (tau = 0.4)" in stdout
    assert "Emergence over training" in stdout and "Distillation" in stdout
    assert stdout.startswith("Findings (3 repeat(s), 95 % intervals")
    assert "Diagnostics (loss of every fitted stage" in stdout
    assert f"Report: {out / 'index.html'}" in stdout
    assert re.search(r"Total time: \d+\.\d s", stdout)
    assert "training" in stderr and "aligning" in stderr
    assert "Knowledge points per layer" not in stderr


# ---------------------------------------------------------------------------
# skvmf analyze on an ImageFolder made here
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def workload(tmp_path_factory):
    """Three colour classes of 16 px PNGs; a plain state_dict, skvmf
    checkpoints of a short training, and the same weights as plain files."""
    root = tmp_path_factory.mktemp("analyze")
    rng = np.random.default_rng(0)
    images = root / "images"
    for c, name in enumerate(CLASSES):
        (images / name).mkdir(parents=True)
        for i in range(6):
            a = rng.integers(0, 80, (16, 16, 3)).astype(np.uint8)
            a[..., 2 - c] += 150
            Image.fromarray(a).save(images / name / f"{i}.png")
    model = make_classifier(
        "vgg16", 3, width=0.0625, input_size=16, batch_norm=True, random_state=0
    )
    torch.save(model.state_dict(), root / "plain.pt")
    X = torch.rand(12, 3, 16, 16)
    y = torch.arange(12) % 3
    ckpt = root / "ckpt"
    result = train_classifier(
        model,
        (X, y),
        epochs=2,
        batch_size=6,
        checkpoint_dir=ckpt,
        checkpoint_iterations=[0, 2, 4],
    )
    plain = root / "plain_ckpt"
    plain.mkdir()
    for it, path in result.checkpoints:
        state = torch.load(path, weights_only=True)["state_dict"]
        torch.save({"model": state, "epoch": it * 10}, plain / f"weights_{it}.pth")
    factory = root / "nets.py"
    factory.write_text(
        "from skvmf.models import make_classifier\n"
        "def build(num_classes):\n"
        "    return make_classifier('vgg16', num_classes, width=0.0625,\n"
        "                           input_size=16, batch_norm=True)\n"
    )
    return root


def _arch_args(root):
    return [
        "--arch",
        "skvmf:vgg16_bn",
        "--width",
        "0.0625",
        "--input-size",
        "16",
        "--checkpoint",
        str(root / "plain.pt"),
        "--data",
        str(root / "images"),
    ]


def test_analyze_arch_with_plain_state_dict(workload, tmp_path):
    out = tmp_path / "r"
    code, stdout, stderr = run(
        [
            "analyze",
            *_arch_args(workload),
            "--layers",
            "conv_33,conv_53",
            "--n-per-class",
            "4",
            "--attack",
            "--faithfulness",
            "--faithfulness-steps",
            "4",
            "--tau",
            "0.5",
            "--out",
            str(out),
            *QUICK,
        ]
    )
    assert code == 0, stderr[-2000:]
    results = check_report(out)
    methods = [row["method"] for row in results["tables"]["faithfulness"]]
    assert "random" in methods and "knowledge points conv_53" in methods
    assert "guided backprop" in methods
    assert results["classes"] == CLASSES
    assert results["layers"] == ["conv_33", "conv_53"]
    assert results["settings"]["n_images"] == 12
    assert results["settings"]["tau"] == 0.5
    assert "attack" in results["tables"] and "emergence" not in results["tables"]
    assert "Sample projection" in stdout and "Report:" in stdout
    page = (out / "index.html").read_text()
    assert "skvmf:vgg16_bn" in page and '<section id="adversarial">' in page
    assert '<section id="faithfulness">' in page
    assert (out / "figures" / "faithfulness.png").is_file()


def test_analyze_skvmf_checkpoint_alone_with_checkpoints_dir(workload, tmp_path):
    out = tmp_path / "r"
    code, stdout, stderr = run(
        [
            "analyze",
            "--checkpoint",
            str(workload / "ckpt" / "checkpoint_iter0000004.pt"),
            "--data",
            str(workload / "images"),
            "--checkpoints-dir",
            str(workload / "ckpt"),
            "--layers",
            "conv_53",
            "--out",
            str(out),
            "-q",
            *QUICK,
        ]
    )
    assert code == 0, stderr[-2000:]
    assert stderr == ""  # --quiet
    results = check_report(out)
    # the whole folder, every image (18 <= 500), the checkpoint's 16 px size
    assert results["settings"]["n_images"] == 18
    assert sorted({r["iteration"] for r in results["tables"]["emergence"]}) == [
        0,
        2,
        4,
    ]
    assert (out / "figures" / "emergence.png").is_file()


def test_analyze_factory_and_plain_checkpoints(workload, tmp_path):
    out = tmp_path / "r"
    code, _, stderr = run(
        [
            "analyze",
            "--model-factory",
            f"{workload / 'nets.py'}:build",
            "--checkpoint",
            str(workload / "plain.pt"),
            "--data",
            str(workload / "images"),
            "--image-size",
            "16",
            "--checkpoints-dir",
            str(workload / "plain_ckpt"),
            "--layers",
            "features.42",
            "--n-images",
            "12",
            "--out",
            str(out),
            *QUICK,
        ]
    )
    assert code == 0, stderr[-2000:]
    results = check_report(out)
    assert results["settings"]["n_images"] == 12
    assert results["layers"] == ["features.42"]
    # iterations from the files' "epoch" entries
    assert sorted({r["iteration"] for r in results["tables"]["emergence"]}) == [
        0,
        20,
        40,
    ]


# ---------------------------------------------------------------------------
# errors: one line, no traceback
# ---------------------------------------------------------------------------
def test_missing_data_path(workload, tmp_path):
    args = _arch_args(workload)
    args[args.index("--data") + 1] = str(tmp_path / "nowhere")
    line = one_line_error(["analyze", *args, *QUICK], 1)
    assert "nowhere" in line and "does not exist" in line


def test_unknown_layer_lists_closest_names(workload):
    line = one_line_error(["analyze", *_arch_args(workload), "--layers", "conv_35"], 1)
    assert "conv_35" in line and "closest valid names" in line
    assert "'conv_53'" in line


def test_checkpoint_of_another_architecture(workload):
    args = _arch_args(workload)
    args[args.index("skvmf:vgg16_bn")] = "skvmf:vgg16"  # no batch norm
    line = one_line_error(["analyze", *args], 1)
    assert "missing" in line and "unexpected" in line
    argv = ["analyze", "--arch", "resnet18", "--checkpoint", str(workload / "plain.pt")]
    line = one_line_error([*argv, "--data", str(workload / "images")], 1)
    assert "does not match ResNet" in line


@pytest.mark.parametrize(
    "argv, words",
    [
        (["analyze", "--data", "x", "--tau", "1.5"], "tau must be in (0, 1)"),
        (["analyze", "--data", "x", "--tau", "abc"], "tau must be a number"),
        (["frobnicate"], "invalid choice"),
        (["demo", "--bogus"], "unrecognized arguments: --bogus"),
        (["demo", "--n-per-class", "0"], "positive integer"),
        (["demo", "--checkpoints", "1"], "--checkpoints must be 0"),
        ([], "a command is required"),
        (["analyze", "--data", "x", "--arch", "vgg19"], "unknown architecture"),
        (["analyze", "--arch", "resnet18", "--data", "x"], "--arch needs"),
        (["analyze", "--data", "x"], "give the network"),
        (["analyze", "--model-factory", "nocolon", "--data", "x"], "MODULE:FUNCTION"),
        (
            ["analyze", "--arch", "resnet18", "--width", "0.5", "--checkpoint", "c"]
            + ["--data", "x"],
            "--width and --input-size apply to skvmf:",
        ),
    ],
)
def test_usage_errors_exit_2(argv, words):
    line = one_line_error(argv, 2)
    assert words in line


def test_runtime_errors_exit_1(workload, tmp_path):
    images = str(workload / "images")
    cases = [
        (
            ["--checkpoint", str(tmp_path / "none.pt"), "--data", images],
            "does not exist",
        ),
        (
            ["--checkpoint", str(workload / "plain.pt"), "--data", images],
            "is not a skvmf checkpoint",
        ),
        (
            ["--model-factory", "no_such_module_xyz:build", "--data", images],
            "could not import",
        ),
        (
            [*_arch_args(workload), "--n-per-class", "7"],
            "fewer than n_per_class=7",
        ),
        (
            [*_arch_args(workload), "--checkpoints-dir", str(tmp_path)],
            "no *.pt or *.pth",
        ),
    ]
    for argv, words in cases:
        line = one_line_error(["analyze", *argv, *QUICK], 1)
        assert words in line, line


def test_out_must_be_a_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    line = one_line_error(["demo", "--out", str(tmp_path / "file")], 2)
    assert "is not a folder" in line
    assert not (tmp_path / "file" / "checkpoints").exists()


def _fake_report(folder):
    """The files by which an earlier skvmf report is recognised."""
    (folder / "data").mkdir(parents=True)
    (folder / "index.html").write_text("<html></html>")
    results = {"settings": {}, "classes": [], "layers": [], "tables": {}}
    (folder / "data" / "results.json").write_text(json.dumps(results))


# a demo that stops, after the --out checks, at its first own check
_STOPS_AFTER_OUT = ["demo", "--students", "logits,conv_99"]


def test_out_keeps_the_user_s_files(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    line = one_line_error(["demo", "--out", str(out)], 2)
    assert "is not empty" in line and "notes.txt" in line and "--force" in line
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    # --force passes the check (the run then stops at the student layer)
    line = one_line_error([*_STOPS_AFTER_OUT, "--force", "--out", str(out)], 1)
    assert "conv_99" in line and (out / "notes.txt").read_text() == "precious"
    # an earlier report, or what an interrupted demo left, may be overwritten
    report = tmp_path / "report"
    _fake_report(report)
    line = one_line_error([*_STOPS_AFTER_OUT, "--out", str(report)], 1)
    assert "conv_99" in line
    (tmp_path / "unfinished" / "checkpoints").mkdir(parents=True)
    (tmp_path / "unfinished" / "checkpoints" / "checkpoint_iter0000066.pt").touch()
    line = one_line_error([*_STOPS_AFTER_OUT, "--out", str(tmp_path / "unfinished")], 1)
    assert "conv_99" in line
    (report / "data" / "results.json").write_text("{}")  # not ours after all
    line = one_line_error([*_STOPS_AFTER_OUT, "--out", str(report)], 2)
    assert "is not empty" in line


def test_an_unwritable_out_fails_before_any_work(workload, tmp_path):
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "report"  # its parent is a file: cannot be created
    line = one_line_error(["demo", "--out", str(out)], 1)
    assert line.startswith(f"skvmf: error: cannot write in --out {str(out)!r}")
    line = one_line_error(["analyze", *_arch_args(workload), "--out", str(out)], 1)
    assert "cannot write in --out" in line
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        line = one_line_error(["demo", "--out", str(locked)], 1)
        assert "cannot write in --out" in line
    out_ok = tmp_path / "new" / "deeper"
    one_line_error([*_STOPS_AFTER_OUT, "--out", str(out_ok)], 1)
    assert out_ok.is_dir() and not list(out_ok.iterdir())  # the probe is gone


class _System:
    """Unpickling this would run a shell command that creates ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("bad", ["crafted", "truncated", "foreign"])
def test_a_bad_file_in_checkpoints_dir_is_named(workload, tmp_path, bad):
    folder = tmp_path / "run"
    folder.mkdir()
    for path in (workload / "plain_ckpt").iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    marker = tmp_path / "marker"
    bad_file = folder / "weights_9.pth"
    if bad == "crafted":
        torch.save({"model": {}, "x": _System(marker)}, bad_file)
    elif bad == "truncated":
        raw = (workload / "plain.pt").read_bytes()
        bad_file.write_bytes(raw[: len(raw) // 2])
    else:
        torch.save(make_classifier("resnet18", 3).state_dict(), bad_file)
    argv = [*_arch_args(workload), "--checkpoints-dir", str(folder), *QUICK]
    line = one_line_error(["analyze", *argv, "--out", str(tmp_path / "r")], 1)
    assert f"{str(bad_file)!r}" in line, line
    assert not marker.exists()
    assert not (tmp_path / "r" / "index.html").exists()


def test_a_crafted_checkpoint_runs_no_code(workload, tmp_path):
    marker = tmp_path / "marker"
    crafted = tmp_path / "weights.pt"
    torch.save({"model": {}, "x": _System(marker)}, crafted)
    args = _arch_args(workload)
    args[args.index("--checkpoint") + 1] = str(crafted)
    line = one_line_error(["analyze", *args, "--out", str(tmp_path / "r")], 1)
    assert f"{str(crafted)!r}" in line and "not plain weights" in line
    assert not marker.exists()


def test_a_crafted_cifar_folder_runs_no_code(workload, tmp_path):
    marker = tmp_path / "marker"
    folder = tmp_path / "cifar" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        entry = {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1]}
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    meta = {"label_names": ["a", "b"], "x": _System(marker)}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    args = _arch_args(workload)
    args[args.index("--data") + 1] = str(tmp_path / "cifar")
    line = one_line_error(["analyze", *args, "--out", str(tmp_path / "r")], 1)
    assert f"{str(folder / 'batches.meta')!r}" in line and "system" in line
    assert not marker.exists()
    # a truncated batch: named, one line
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": ["a", "b"]}))
    raw = (folder / "test_batch").read_bytes()
    (folder / "test_batch").write_bytes(raw[:100])
    line = one_line_error(["analyze", *args, "--out", str(tmp_path / "r")], 1)
    assert f"{str(folder / 'test_batch')!r}" in line and "truncated" in line


def test_a_one_class_image_folder_in_the_user_s_terms(workload, tmp_path):
    one = tmp_path / "one"
    (one / "red").mkdir(parents=True)
    for path in (workload / "images" / "red").iterdir():
        (one / "red" / path.name).write_bytes(path.read_bytes())
    args = _arch_args(workload)
    args[args.index("--data") + 1] = str(one)
    line = one_line_error(["analyze", *args, "--out", str(tmp_path / "r")], 1)
    assert line == (
        f"skvmf: error: the image folder {str(one)!r} has 1 class (red); "
        "analysis needs at least 2 classes, one sub-folder per class"
    )


def test_the_command_s_architectures_are_the_library_s():
    import argparse

    from skvmf import cli
    from skvmf.sources import ARCH_NAMES

    assert [cli._arch(name) for name in ARCH_NAMES] == list(ARCH_NAMES)
    for name in ("skvmf:vit_b_16", "vit", "resnet101"):
        with pytest.raises(argparse.ArgumentTypeError, match="choose from"):
            cli._arch(name)


def test_outputs_must_match_the_classes(workload, tmp_path):
    model = make_classifier("vgg16", 4, width=0.0625, input_size=16, batch_norm=True)
    torch.save(model.state_dict(), tmp_path / "four.pt")
    args = _arch_args(workload)
    args[args.index("--checkpoint") + 1] = str(tmp_path / "four.pt")
    line = one_line_error(["analyze", *args, "--n-classes", "4"], 1)
    assert "has 4 outputs" in line and "3 classes" in line


def test_debug_shows_the_exception(workload):
    with pytest.raises(ValueError, match="closest valid names"):
        main(["analyze", *_arch_args(workload), "--layers", "conv_35", "--debug"])


def test_errors_in_a_real_process(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "skvmf",
            "analyze",
            "--arch",
            "resnet18",
            "--checkpoint",
            str(tmp_path / "w.pt"),
            "--data",
            str(tmp_path / "missing"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("skvmf: error: checkpoint file")


def test_demo_refuses_an_unknown_student_layer_before_training(tmp_path, capsys):
    code = main(["demo", "--students", "logits,conv_99", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 1 and "conv_99" in err and "Traceback" not in err
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_spread_follows_training_iterations_not_list_positions():
    its = [0, 8, 16, 33, 50, 66, 82, 99, 116, 132]  # dense at the start
    chosen = spread_checkpoints([(it, f"p{it}") for it in its], 5)
    assert [it for it, _ in chosen] == [0, 33, 66, 99, 132]


def test_analyze_a_small_vit_by_arch(workload, tmp_path):
    # skvmf:vit: the digits recipe's small ViT at 16 px; regions = patch tokens
    from skvmf.models import make_vit_classifier

    weights = tmp_path / "vit.pt"
    torch.save(
        make_vit_classifier(3, input_size=16, random_state=0).state_dict(), weights
    )
    out = tmp_path / "r"
    code, stdout, stderr = run(
        [
            "analyze",
            "--arch",
            "skvmf:vit",
            "--checkpoint",
            str(weights),
            "--data",
            str(workload / "images"),
            "--repeats",
            "1",
            "--out",
            str(out),
            *QUICK,
        ]
    )
    assert code == 0, stderr[-2000:]
    results = json.loads((out / "data" / "results.json").read_text())
    assert results["layers"] and all(
        name.startswith("block_") for name in results["layers"]
    )
    assert results["settings"]["grid"] == [4, 4]  # 16 px / 4 px patches
    assert "skvmf:vit" in (out / "index.html").read_text()


def test_transformer_arch_names_are_accepted_and_width_refused(workload):
    line = one_line_error(
        [
            "analyze",
            "--arch",
            "skvmf:vit",
            "--width",
            "0.5",
            "--checkpoint",
            str(workload / "plain.pt"),
            "--data",
            str(workload / "images"),
        ],
        2,
    )
    assert "--width applies to skvmf's CNNs" in line
    line = one_line_error(["analyze", "--arch", "vit_b_99", "--data", "x"], 2)
    assert "vit_b_16" in line and "skvmf:vit" in line
