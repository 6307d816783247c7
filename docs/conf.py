"""Sphinx configuration of the jaxcomp + eie_model documentation (``make docs``)."""

import filecmp
import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(DOCS / "_ext"))

project = "jaxcomp + eie_model"
author = "the jaxcomp authors"
copyright = "the jaxcomp authors, Apache-2.0"

extensions = [
    "myst_nb",  # Markdown (MyST) pages and the notebooks, rendered without running them
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "jaxcomp_docs",  # {api-reference} and {cli-help}: generated from the code at build time
]

source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "_ext", "Thumbs.db", ".DS_Store", "**/.ipynb_checkpoints"]
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "dollarmath"]
nb_execution_mode = "off"  # the test suite runs the notebooks; the site shows them as they are
suppress_warnings = ["mystnb.unknown_mime_type"]

autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"  # no bare "Parameters" list of fields
autodoc_member_order = "bysource"
autosummary_generate = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # a class' Attributes section documents fields without new targets

html_theme = "alabaster"
html_title = project
html_static_path: list[str] = []


def _copy_notebooks() -> None:
    """Mirror ``examples/*.ipynb`` into ``docs/notebooks/`` (git-ignored) for the site."""
    dest = DOCS / "notebooks"
    dest.mkdir(exist_ok=True)
    wanted = {p.name: p for p in sorted((REPO / "examples").glob("*.ipynb"))}
    for stale in dest.glob("*.ipynb"):
        if stale.name not in wanted:
            stale.unlink()
    for name, src in wanted.items():
        target = dest / name
        if not target.exists() or not filecmp.cmp(src, target, shallow=False):
            shutil.copyfile(src, target)


_copy_notebooks()


def _skip_namedtuple_fields(app, what, name, obj, skip, options):
    """Leave out NamedTuple fields: the class' Attributes section already describes them."""
    doc = getattr(obj, "__doc__", None) or ""
    if doc.startswith("Alias for field number"):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_namedtuple_fields)
