"""Interval widths against the number of held-out images: the demo's
findings at several ``skvmf demo --images`` sizes, side by side.

Run by hand (the demo's full settings; measured on two CPU cores: 5.6 min
at 60, 12.5 min at 120, 20 min for every test digit)::

    python benchmarks/study_images.py --run 60 120 all --threads 2 \\
        --workdir /tmp/study-images --markdown doc
    python benchmarks/study_images.py --reports A B C --markdown doc

``--run`` runs ``python -m skvmf demo --images N`` for each size (same
networks: the demo's recipe and seed) into ``<workdir>/images-<N>`` and
records its wall time beside the report (``images-<N>.run.json``);
``--reports`` tabulates reports that exist already (any ``skvmf demo`` or
``skvmf analyze`` report folder). Nothing is tuned: the table is what the
reports say. ``--markdown DOC_DIR`` replaces the section between
``<!-- study_images:start -->`` and ``<!-- study_images:end -->`` of
``DOC_DIR/results_digits.md``; the reading written by hand around it stays.

The width ratio column compares each size's interval width with the
smallest size's, next to 1/sqrt(held-out ratio): the scaling that a
finding's ``images_to_decide`` assumes.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _doc import write_section  # noqa: E402

RESULTS_MD = "results_digits.md"
KEY = "study_images"


# ---------------------------------------------------------------------------
# running the demo
# ---------------------------------------------------------------------------
def run_demo(size, workdir, *, threads=None, seed=None):
    """``skvmf demo --images N`` into ``<workdir>/images-<N>``; returns the
    report folder. ``size`` is N (``"all"`` or a number) or ``"N:F"`` for
    ``--held-out F`` too. Its wall time, thread count and command are
    written to ``images-<N>.run.json`` beside the report. ``seed`` is the
    demo's ``--seed``: another seed trains other networks too."""
    size, _, held_out = str(size).partition(":")
    name = f"images-{size}" + (f"-held-out-{held_out}" if held_out else "")
    name += "" if seed is None else f"-seed-{seed}"
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / name
    command = [sys.executable, "-m", "skvmf", "demo", "--images", size]
    command += ["--out", str(out)]
    if held_out:
        command += ["--held-out", held_out]
    if threads:
        command += ["--threads", str(threads)]
    if seed is not None:
        command += ["--seed", str(seed)]
    start = time.perf_counter()
    with (
        open(workdir / f"{name}.out", "w") as stdout,
        open(workdir / f"{name}.err", "w") as stderr,
    ):
        code = subprocess.run(command, stdout=stdout, stderr=stderr).returncode
    wall = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited with {code}; see {workdir}/{name}.err"
        )
    record = {"images": size, "threads": threads, "wall_seconds": wall,
              "command": " ".join(command[1:])}  # fmt: skip
    (workdir / f"{name}.run.json").write_text(json.dumps(record, indent=1))
    return out


# ---------------------------------------------------------------------------
# reading a report
# ---------------------------------------------------------------------------
def _number(text):
    """A CSV cell as a float, None when empty."""
    return None if text in ("", None) else float(text)


def read_report(folder):
    """What the table needs from one report folder: its sizes, findings and
    timings (and the wall time of ``run_demo``, when it made the report)."""
    folder = Path(folder)
    data = folder / "data"
    if not (data / "results.json").is_file():
        raise ValueError(f"{folder} is not an skvmf report (no data/results.json)")
    settings = json.loads((data / "results.json").read_text())["settings"]
    with open(data / "findings.csv", newline="") as handle:
        findings = {}
        for row in csv.DictReader(handle):
            findings[row["name"]] = {
                "value": _number(row["value"]),
                "low": _number(row["low"]),
                "high": _number(row["high"]),
                "verdict": row["verdict"],
                "n_images": _number(row["n_images"]),
                "images_to_decide": _number(row["images_to_decide"]),
            }
    with open(data / "timings.csv", newline="") as handle:
        timings = {r["step"]: float(r["seconds"]) for r in csv.DictReader(handle)}
    extra_path = data / "extra.json"
    extra = json.loads(extra_path.read_text()) if extra_path.is_file() else {}
    run_path = folder.parent / f"{folder.name}.run.json"
    run = json.loads(run_path.read_text()) if run_path.is_file() else {}
    return {
        "folder": str(folder),
        "n_held_out": int(settings["n_held_out_images"]),
        "n_fit": int(settings["n_fit_images"]),
        "n_repeats": int(settings["n_repeats"]),
        "seed": settings.get("random_state"),
        "findings": findings,
        "timings": timings,
        "total_seconds": extra.get("total before the report (s)"),
        "wall_seconds": run.get("wall_seconds"),
        "threads": run.get("threads"),
    }


# ---------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------
def _count(n):
    if n is None:
        return ""
    if n > 1e6:
        return "more than a million"
    return f"{n:,.0f}" if n >= 100 else f"{n:.0f}"


def _width(f):
    """The interval's width, None where the finding has no interval."""
    if f is None or f["value"] is None or f["low"] is None:
        return None
    return f["high"] - f["low"]


def _cell(f):
    """value [low, high], width, verdict of one finding at one size."""
    if f is None or f["value"] is None:
        return "n/a", "", f["verdict"] if f else "absent"
    low, high = f["low"], f["high"]
    width = _width(f)
    interval = f"{f['value']:.3f}"
    if low is not None:
        interval += f" [{low:.3f}, {high:.3f}]"
    verdict = f["verdict"]
    if verdict == "inconclusive" and f["images_to_decide"]:
        verdict += f" (about {_count(f['images_to_decide'])})"
    return interval, "" if width is None else f"{width:.3f}", verdict


def _minutes(seconds):
    if seconds is None:
        return "?"
    return f"{int(seconds // 60)} min {seconds % 60:02.0f} s"


def _label(report, with_seed):
    label = f"{report['n_held_out']} held out"
    return label + (f", seed {report['seed']}" if with_seed else "")


def page(reports):
    """The Markdown table of every finding's interval at every size (and
    seed), and the time each took. Width ratios against the smallest size
    are given where the sizes differ."""
    reports = sorted(reports, key=lambda r: (r["n_held_out"], str(r["seed"])))
    with_seed = len({str(r["seed"]) for r in reports}) > 1
    base = reports[0]
    ratios = [r for r in reports[1:] if r["n_held_out"] != base["n_held_out"]]
    names = []
    for r in reports:
        names += [n for n in r["findings"] if n not in names]
    head = ["finding"]
    for r in reports:
        label = _label(r, with_seed)
        head += [f"{label}: value [95 %]", "width", "verdict (images to decide)"]
    for r in ratios:
        expected = math.sqrt(base["n_held_out"] / r["n_held_out"])
        head.append(f"width {r['n_held_out']} / {base['n_held_out']} ({expected:.2f})")
    lines = [
        "Sizes and time (the demo's own total before the report; wall time of "
        "the whole command where `study_images.py --run` made the report):",
        "",
        "| held out | fit | seed | repeats | torch threads | projection "
        "| alignment | demo total | wall |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in reports:
        t = r["timings"]
        lines.append(
            f"| {r['n_held_out']} | {r['n_fit']} | {r['seed']} | {r['n_repeats']} | "
            f"{r['threads'] or '?'} | {_minutes(t.get('projection'))} | "
            f"{_minutes(t.get('alignment'))} | {_minutes(r['total_seconds'])} | "
            f"{_minutes(r['wall_seconds'])} |"
        )
    lines += [
        "",
        "| " + " | ".join(head) + " |",
        "|---|" + "---|---:|---|" * len(reports) + "---:|" * len(ratios),
    ]
    for name in names:
        row = [name]
        for r in reports:
            row += _cell(r["findings"].get(name))
        w0 = _width(base["findings"].get(name))
        for r in ratios:
            w = _width(r["findings"].get(name))
            row.append(f"{w / w0:.2f}" if w0 and w is not None else "-")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--run", nargs="+", metavar="N[:F]",
        help="--images sizes to run; N:F adds --held-out F (e.g. 240:0.6)",
    )  # fmt: skip
    source.add_argument("--reports", nargs="+", metavar="DIR", help="report folders")
    parser.add_argument("--workdir", default="study-images", help="for --run")
    parser.add_argument("--threads", type=int, default=None, help="for --run")
    parser.add_argument(
        "--seeds", nargs="+", type=int, default=None,
        help="for --run: the demo's --seed, each size at each seed",
    )  # fmt: skip
    parser.add_argument(
        "--section", default=KEY,
        help=f"the marked section of results_digits.md to write (default {KEY})",
    )  # fmt: skip
    parser.add_argument("--markdown", metavar="DOC_DIR")
    args = parser.parse_args(argv)
    if args.run:
        folders = [
            run_demo(n, args.workdir, threads=args.threads, seed=seed)
            for n in args.run
            for seed in (args.seeds or [None])
        ]
    else:
        folders = args.reports
    text = page([read_report(f) for f in folders])
    print(text)
    if args.markdown:
        write_section(args.section, text, Path(args.markdown) / RESULTS_MD)
    return text


if __name__ == "__main__":
    main()
