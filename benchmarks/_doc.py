"""Write a benchmark's results into its own section of doc/benchmarks.md.

Each script owns the text between ``<!-- <key>:start -->`` and
``<!-- <key>:end -->``; re-running a script replaces only its section.
"""

from __future__ import annotations

from pathlib import Path

BENCHMARKS_MD = Path(__file__).resolve().parents[1] / "doc" / "benchmarks.md"


def write_section(key: str, text: str, path: str | Path = BENCHMARKS_MD) -> Path:
    path = Path(path)
    # the page's sections are level-2 headings: a script's own headings nest
    text = "\n".join(
        "###" + line.lstrip("#") if line.startswith("#") else line
        for line in text.strip().splitlines()
    )
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    block = f"{start}\n{text.strip()}\n{end}"
    doc = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in doc and end in doc:
        head, rest = doc.split(start, 1)
        _, tail = rest.split(end, 1)
        doc = head + block + tail
    else:
        doc = doc.rstrip() + "\n\n" + block + "\n"
    path.write_text(doc)
    return path
