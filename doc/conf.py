"""Sphinx configuration of the skvmf documentation.

Build (offline; the gallery runs every ``examples/plot_*.py``)::

    python -m sphinx -b html doc doc/_build/html

Add ``-D plot_gallery=0`` to skip running the examples while editing text.
"""

import os
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# the checkout's skvmf, installed or not; HERE for the gallery's sort key
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

# Before torch or numpy load: no display, and one thread per BLAS/OpenMP pool
# unless the caller chose otherwise (on a small, busy machine, spinning
# worker threads made the gallery several times slower).
os.environ.setdefault("MPLBACKEND", "Agg")
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import skvmf  # noqa: E402

# -- project -----------------------------------------------------------------
project = "skvmf"
author = "skvmf developers"
copyright = "2025, skvmf developers"
release = skvmf.__version__
version = ".".join(release.split(".")[:2])

# -- extensions ----------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    # No LaTeX on the build machine, so no imgmath: formulas are typeset by
    # MathJax in the browser (building needs no network; viewing loads
    # MathJax from its CDN).
    "sphinx.ext.mathjax",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "_sorting.py"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
default_role = "literal"

# -- autodoc / autosummary / numpydoc -------------------------------------------
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
autodoc_typehints = "none"  # the numpydoc sections say it all
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True

# -- MyST (the Markdown pages: benchmarks, developer notes) -------------------------
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3
suppress_warnings = ["myst.header"]

# -- sphinx-gallery --------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    # run every plot_* script during the build
    "filename_pattern": r"/plot_",
    "within_subsection_order": "_sorting.GalleryOrder",
    "backreferences_dir": "gen_modules/backreferences",
    "doc_module": ("skvmf",),
    # links from gallery code to this API reference (local only: no fetching)
    "reference_url": {"skvmf": None},
    "remove_config_comments": True,
    "show_memory": False,
    "default_thumb_file": None,
    "matplotlib_animations": False,
    # no sg_execution_times.rst written into the source tree
    "write_computation_times": False,
}

# -- HTML ------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"skvmf {release}"
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
}
html_show_sourcelink = False


# -- hooks -----------------------------------------------------------------------
def _skip_metadata_routing(app, what, name, obj, skip, options):
    # scikit-learn generates set_{fit,score,...}_request on every estimator;
    # their docstrings point into scikit-learn's own docs
    if name == "get_metadata_routing" or (
        name.startswith("set_") and name.endswith("_request")
    ):
        return True
    return None


# "name : type" lines of numpydoc sections
_FIELD = re.compile(r"^(\s*\*{0,2}[A-Za-z_][\w, *]*\s:\s)(.*)$")
# a word ending in "_" (``n_features_in_``) is a hyperlink reference in
# reStructuredText; in a type it means the attribute
_TRAILING_UNDERSCORE = re.compile(r"(?<![`\\])\b([A-Za-z]\w*?)_(?![\w`])")


def _fix_numpydoc_types(app, what, name, obj, options, lines):
    """Make plain-text type specifications safe for reStructuredText.

    Joins a type line continued with a trailing backslash with the next line,
    and escapes attribute names such as ``n_features_in_`` in types (as in
    ``ndarray of shape (n_features_in_,)``), which docutils would otherwise
    read as references to undefined targets.
    """
    i = 0
    while i < len(lines):
        match = _FIELD.match(lines[i])
        if match:
            while lines[i].rstrip().endswith("\\") and i + 1 < len(lines):
                lines[i] = (
                    lines[i].rstrip()[:-1].rstrip() + " " + lines.pop(i + 1).strip()
                )
            match = _FIELD.match(lines[i])
            head, spec = match.groups()
            lines[i] = head + _TRAILING_UNDERSCORE.sub(r"\1\\_", spec)
        i += 1


def setup(app):
    app.connect("autodoc-skip-member", _skip_metadata_routing)
    # before numpydoc (priority 500) turns the sections into markup
    app.connect("autodoc-process-docstring", _fix_numpydoc_types, priority=400)
