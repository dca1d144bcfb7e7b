"""What users read teaches the public homes, and the API reference is whole.

The gallery, the README, the benchmarks and the documentation import every
name from the module that defines it (``skvmf.architectures``,
``skvmf.training`` ...), never from the compatibility module
``skvmf.models``, which only ``doc/api.rst`` describes, in its own section.
Every module that ``doc/api.rst`` names imports, every entry it lists
resolves, and every public module, every name of a module's ``__all__`` and
every top-level name of ``skvmf`` is listed there. The numpy side of the
package loads without torch.
"""

import ast
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import skvmf

ROOT = Path(__file__).resolve().parents[1]
API = ROOT / "doc" / "api.rst"
# generated trees (sphinx output, sphinx-gallery copies) are not sources
GENERATED = {"_build", "generated", "auto_examples", "gen_modules"}
# the one place allowed to name the compatibility module: its own section of
# the API reference, from its label to the next section's label
COMPAT_SECTION = re.compile(r"^\.\. _api-models:\n.*?(?=^\.\. _api-)", re.M | re.S)
COMPAT_NAME = re.compile(r"\bskvmf\.models\b|from\s+skvmf\s+import\s+[^\n]*\bmodels\b")


def _sources(suffixes):
    files = [ROOT / "README.md"]
    for folder in ("examples", "doc", "benchmarks"):
        files += [
            path
            for path in (ROOT / folder).rglob("*")
            if path.suffix in suffixes
            and not GENERATED & set(path.relative_to(ROOT).parts)
        ]
    return sorted(path for path in files if path.suffix in suffixes)


def _skvmf_imports(tree):
    """(line, dotted module) of every skvmf import, ``from skvmf import x``
    counted as ``skvmf.x``, and of every ``skvmf.<module>.<name>`` access."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module))
            if node.module == "skvmf":
                found += [(node.lineno, f"skvmf.{a.name}") for a in node.names]
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "skvmf"
        ):
            found.append((node.lineno, f"skvmf.{node.attr}"))
    return [(line, name) for line, name in found if name.split(".")[0] == "skvmf"]


def _api_reference():
    """{module: [listed names]} of doc/api.rst, in order of appearance."""
    listed, module, in_list = {}, None, False
    for line in API.read_text(encoding="utf-8").splitlines():
        directive = re.match(
            r"\.\. (automodule|currentmodule|autosummary)::\s*(\S*)", line
        )
        if directive:
            kind, target = directive.groups()
            in_list = kind == "autosummary"
            if kind != "autosummary":
                module = target
                listed.setdefault(module, [])
            continue
        if in_list:
            entry = re.fullmatch(r"   ([A-Za-z_]\w*)", line)
            if entry:
                listed[module].append(entry.group(1))
            elif line.strip() and not line.startswith("   :"):
                in_list = False
    return listed


def _public_modules():
    return {
        f"skvmf.{info.name}"
        for info in pkgutil.iter_modules(skvmf.__path__)
        if not info.name.startswith("_")
    }


@pytest.mark.parametrize(
    "path", _sources({".py"}), ids=lambda p: str(p.relative_to(ROOT))
)
def test_python_sources_import_public_homes(path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for line, name in _skvmf_imports(tree):
        where = f"{path.relative_to(ROOT)}:{line}"
        assert name != "skvmf.models", (
            f"{where} imports the compatibility module skvmf.models; import "
            "from skvmf.architectures or skvmf.training instead"
        )
        if path.parent.name in ("examples", "benchmarks"):
            # what users copy uses the public API only
            assert not any(part.startswith("_") for part in name.split(".")), (
                f"{where} imports the private {name}"
            )


@pytest.mark.parametrize(
    "path", _sources({".rst", ".md"}), ids=lambda p: str(p.relative_to(ROOT))
)
def test_text_names_the_compatibility_module_only_in_its_section(path):
    text = path.read_text(encoding="utf-8")
    if path == API:
        sections = COMPAT_SECTION.findall(text)
        assert len(sections) == 1, "doc/api.rst needs one '.. _api-models:' section"
        text = text.replace(sections[0], "")
    hits = [
        f"{path.relative_to(ROOT)}:{text[: m.start()].count(chr(10)) + 1}: {m.group()}"
        for m in COMPAT_NAME.finditer(text)
    ]
    assert not hits, "skvmf.models outside its section of doc/api.rst:\n" + "\n".join(
        hits
    )


def test_the_guard_sees_every_form_of_the_compatibility_import():
    code = (
        "from skvmf.models import train_digits_classifier\n"
        "import skvmf.models\n"
        "from skvmf import datasets, models\n"
        "skvmf.models.evaluate\n"
    )
    names = [name for _, name in _skvmf_imports(ast.parse(code))]
    assert names.count("skvmf.models") == 4
    assert COMPAT_NAME.search("see :func:`skvmf.models.evaluate`")
    assert COMPAT_NAME.search(">>> from skvmf import models")
    assert not COMPAT_NAME.search("torchvision.models.vgg16; skvmf.modelsx")


def test_every_module_and_entry_of_the_api_reference_resolves():
    listed = _api_reference()
    assert len(listed) > 20, "doc/api.rst was not parsed"
    for module_name, names in listed.items():
        module = importlib.import_module(module_name)
        for name in names:
            assert hasattr(module, name), f"doc/api.rst lists {module_name}.{name}"
        assert len(names) == len(set(names)), f"{module_name} listed twice in api.rst"


def test_the_api_reference_lists_every_public_module_and_name():
    listed = _api_reference()
    assert set(listed) == _public_modules(), (
        "public modules and the sections of doc/api.rst differ: "
        f"{sorted(set(listed) ^ _public_modules())}"
    )
    documented = {name for names in listed.values() for name in names}
    for module_name in listed:
        module = importlib.import_module(module_name)
        # a re-export is documented at its home; constants (upper case) are
        # described in their module's docstring
        missing = [
            name
            for name in getattr(module, "__all__", ())
            if not name.isupper() and name not in documented
        ]
        assert not missing, f"{module_name}.__all__ not in doc/api.rst: {missing}"


def test_every_top_level_name_is_listed_at_its_home():
    listed = _api_reference()
    submodules = {name.split(".")[1] for name in _public_modules()}
    for name in skvmf.__all__:
        if name in submodules or name.startswith("__"):
            continue
        value = getattr(skvmf, name)
        homes = [m for m, names in listed.items() if name in names]
        assert homes, f"skvmf.{name} is not in doc/api.rst"
        # the documented module hands out the very object skvmf does
        assert any(getattr(importlib.import_module(m), name) is value for m in homes), (
            f"skvmf.{name} differs from {homes}"
        )
