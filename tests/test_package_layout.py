"""The package's layout, read from its source with ``ast`` (nothing imported).

Checks of how skvmf's modules depend on each other, e.g. that the private
torch files of ``skvmf/_torch/`` import each other without a cycle.
"""

import ast
from pathlib import Path

import skvmf

PACKAGE = Path(skvmf.__file__).parent


def _torch_imports(path: Path) -> set[str]:
    """The ``skvmf/_torch`` modules one ``skvmf/_torch`` file imports, at its
    top or inside a function (both can close a cycle)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:  # from .x import y / from . import x
                base = node.module
            elif node.level == 0 and (node.module or "").startswith("skvmf._torch"):
                base = node.module[len("skvmf._torch") :].lstrip(".") or None
            else:
                continue
            if base is None:  # from . import a, b: the modules a and b
                found.update(alias.name for alias in node.names)
            else:
                found.add(base.split(".")[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("skvmf._torch."):
                    found.add(alias.name.split(".")[2])
    return found


def _torch_import_graph() -> dict[str, set[str]]:
    files = {p.stem: p for p in (PACKAGE / "_torch").glob("*.py")}
    files.pop("__init__", None)
    return {name: _torch_imports(path) & set(files) for name, path in files.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as ``[a, b, ..., a]``, or None."""
    state = {}  # name -> "open" while on the path, "done" when fully explored

    def visit(name, path):
        state[name] = "open"
        for other in sorted(graph[name]):
            if state.get(other) == "open":
                return [*path[path.index(other) :], other]
            if other not in state:
                found = visit(other, [*path, other])
                if found:
                    return found
        state[name] = "done"
        return None

    for name in sorted(graph):
        if name not in state:
            found = visit(name, [name])
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_private_torch_files_import_each_other_without_a_cycle():
    graph = _torch_import_graph()
    assert {"hooks", "layers", "images", "layout", "checkpoints"} <= set(graph)
    # the reader sees the edges that exist (lazy imports included)
    assert "images" in graph["layers"] and "files" in graph["checkpoints"]
    cycle = _cycle(graph)
    assert cycle is None, "import cycle in skvmf/_torch: " + " -> ".join(cycle)


# ---------------------------------------------------------------------------
# the numpy side stays numpy (issue 18): skvmf/_numerics/ and the numpy-side
# public modules load without torch
_NUMPY_SIDE = (
    "vmf",
    "mixture",
    "features",
    "hierarchy",
    "embedding",
    "prediction_tree",
    "knowledge",
)


def _numerics_modules() -> list[str]:
    return sorted(
        p.stem for p in (PACKAGE / "_numerics").glob("*.py") if p.stem != "__init__"
    )


def test_numerics_and_the_numpy_side_import_without_torch():
    import subprocess
    import sys

    modules = [
        "skvmf._numerics",
        *(f"skvmf._numerics.{m}" for m in _numerics_modules()),
        *(f"skvmf.{m}" for m in _NUMPY_SIDE),
    ]
    assert {"arrays", "bessel", "soft_labels"} <= set(_numerics_modules())
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "    assert 'torch' not in sys.modules, name + ' loaded torch'\n"
        "print('ok')\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]


def _top_level_torch_imports(path: Path) -> list[int]:
    """Lines of ``import torch``/``from torch ...`` outside any function or
    class (a module-level ``if``/``try`` counts: it runs at import)."""
    lines = []

    def is_torch(module):
        return module == "torch" or module.startswith("torch.")

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue  # a lazy import, run only with tensors
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0:
                names = [child.module or ""]
            else:
                names = []
            if any(is_torch(n) for n in names):
                lines.append(child.lineno)
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return lines


def test_the_torch_import_finder_sees_top_level_imports_only():
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.py"
        path.write_text(
            "import numpy\nimport torch.nn\ntry:\n    from torch import nn\n"
            "except ImportError:\n    pass\n\ndef f():\n    import torch\n",
            encoding="utf-8",
        )
        assert _top_level_torch_imports(path) == [2, 4]


def test_no_numerics_module_imports_torch_at_its_top():
    found = {
        p.name: lines
        for p in sorted((PACKAGE / "_numerics").glob("*.py"))
        if (lines := _top_level_torch_imports(p))
    }
    assert not found, f"top-level torch imports in skvmf/_numerics: {found}"
