"""The Colab notebooks in ``examples/`` (design.md "Notebooks").

* every ``examples/*.ipynb`` runs top to bottom in a fresh ``python3`` kernel at small size
  (``JAXCOMP_NOTEBOOK_SMALL=1``) on the real data (``JAXCOMP_DATA_DIR``), and fails on the first
  cell that raises;
* every name a notebook takes from ``jaxcomp`` / ``eie_model`` (``jaxcomp.x``,
  ``from jaxcomp.zoo.presets import x``) is in that package's or module's ``__all__``;
* every notebook is stored stripped (no outputs, no execution counts, minimal metadata), opens
  with a Colab badge linking to itself and then an install cell that runs only on Colab.

The notebooks are found by globbing, so a new notebook is tested without editing this file.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path

import nbformat
import pytest

# Some jupyter_core 5 releases (imported by nbclient / jupyter_client; 5.9 no longer) warn with a
# DeprecationWarning that its paths move to platformdirs unless this opt-in is set; the suite
# turns warnings into errors, so opt in before the first import of nbclient (inside the test).
os.environ.setdefault("JUPYTER_PLATFORM_DIRS", "1")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "examples").glob("*.ipynb"))
IDS = [p.stem for p in NOTEBOOKS]
PACKAGES = ("jaxcomp", "eie_model")
COLAB_REPO = "jaxcomp/jaxcomp"
BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
NOTEBOOK_METADATA = {"kernelspec", "language_info"}
CELL_METADATA = {"tags"}


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def test_the_notebooks_are_there():
    names = set(IDS)
    assert {"quickstart", "deep_compression", "dsd", "eie_sweep"} <= names, names


# ----------------------------------------------------------------------------- execution


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_runs_top_to_bottom(path: Path, mnist_dir, real_data_dir, tmp_path):
    from nbclient import NotebookClient

    nb = _read(path)
    # A last cell reports which interpreter and which jaxcomp the kernel used.
    probe = (
        "import json as _json, sys as _sys, jaxcomp as _jc, eie_model as _em\n"
        "print(_json.dumps([_sys.executable, _jc.__file__, _em.__file__]))"
    )
    nb.cells.append(nbformat.v4.new_code_cell(probe))
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = {
        **os.environ,
        "JAXCOMP_NOTEBOOK_SMALL": "1",
        "JAXCOMP_DATA_DIR": str(real_data_dir),
        "PYTHONPATH": pythonpath,
        "JUPYTER_PLATFORM_DIRS": "1",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",  # ipykernel's debugger warns on frozen modules
    }
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=600,
        resources={"metadata": {"path": str(tmp_path)}},  # the kernel's working directory
    )
    client.execute(env=env)  # raises CellExecutionError naming the cell that failed

    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
    executable, jaxcomp_file, eie_file = json.loads(text.strip().splitlines()[-1])
    assert Path(executable).resolve() == Path(sys.executable).resolve()
    assert Path(jaxcomp_file).resolve().parent == REPO / "jaxcomp"
    assert Path(eie_file).resolve().parent == REPO / "eie_model"


# --------------------------------------------------------------------- public names only


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _public(module: str) -> set[str]:
    names = getattr(importlib.import_module(module), "__all__", None)
    assert names is not None, f"{module} has no __all__"
    return set(names)


def _code(nb: nbformat.NotebookNode) -> str:
    """The notebook's code cells as one Python source (IPython magics transformed away)."""
    from IPython.core.inputtransformer2 import TransformerManager

    tm = TransformerManager()
    return "\n".join(tm.transform_cell(c.source) for c in nb.cells if c.cell_type == "code")


def api_misses(source: str) -> list[str]:
    """Names taken from ``jaxcomp`` / ``eie_model`` in ``source`` that are not in ``__all__``.

    ``import jaxcomp [as j]``, ``import jaxcomp.pruning as o``, ``from jaxcomp import x`` and
    ``from eie_model.sweep import x`` are followed; ``a.b.c`` on a bound module resolves
    submodules (``jaxcomp.pruning.prune``: ``prune`` must be in ``jaxcomp.pruning.__all__``). A name
    that is itself a submodule (``from jaxcomp import schedules``) is allowed.
    """
    tree = ast.parse(source)
    bound: dict[str, str] = {}
    misses: list[str] = []

    def ours(module: str | None) -> bool:
        return module is not None and module.split(".")[0] in PACKAGES

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if ours(a.name):
                    if a.asname:
                        bound[a.asname] = a.name
                    else:
                        root = a.name.split(".")[0]
                        bound[root] = root
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and ours(node.module):
            for a in node.names:
                if a.name == "*":
                    misses.append(f"from {node.module} import * (name the imports)")
                elif _is_module(f"{node.module}.{a.name}"):
                    bound[a.asname or a.name] = f"{node.module}.{a.name}"
                elif a.name not in _public(node.module):
                    misses.append(f"from {node.module} import {a.name} (line {node.lineno})")

    def module_of(node: ast.expr) -> str | None:
        if isinstance(node, ast.Name):
            return bound.get(node.id)
        if isinstance(node, ast.Attribute):
            parent = module_of(node.value)
            if parent is not None and _is_module(f"{parent}.{node.attr}"):
                return f"{parent}.{node.attr}"
        return None

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            parent = module_of(node.value)
            if parent is None or _is_module(f"{parent}.{node.attr}"):
                continue
            if node.attr not in _public(parent):
                misses.append(f"{parent}.{node.attr} (line {node.lineno})")
    return sorted(set(misses))


def test_api_check_finds_names_outside_all():
    src = (
        "import jaxcomp\nimport eie_model.sweep as sw\nfrom jaxcomp import schedules\n"
        "from jaxcomp.zoo.presets import preset, _load_data\n"
        "jaxcomp.prune, jaxcomp.pruning.prune, jaxcomp.pruning.MODELS_NOT_HERE, jaxcomp.fit\n"
        "sw.pareto_front, sw._normalize, schedules.polynomial, schedules.nope\n"
        "jaxcomp.zoo.load_mnist().x_train  # attributes of results are not checked\n"
    )
    assert api_misses(src) == [
        "eie_model.sweep._normalize (line 6)",
        "from jaxcomp.zoo.presets import _load_data (line 4)",
        "jaxcomp.fit (line 5)",
        "jaxcomp.pruning.MODELS_NOT_HERE (line 5)",
        "jaxcomp.schedules.nope (line 6)",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_uses_only_public_names(path: Path):
    source = _code(_read(path))
    assert any(f"import {p}" in source or f"from {p}" in source for p in PACKAGES), path.name
    assert api_misses(source) == []


# ------------------------------------------------------------------- stripped, Colab-first


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_is_stripped_and_colab_first(path: Path):
    nb = _read(path)
    nbformat.validate(nb)
    assert set(nb.metadata) <= NOTEBOOK_METADATA, f"strip notebook metadata: {set(nb.metadata)}"
    for i, cell in enumerate(nb.cells):
        assert set(cell.metadata) <= CELL_METADATA, f"cell {i}: metadata {dict(cell.metadata)}"
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {i} has outputs; strip them"
            assert cell.execution_count is None, f"cell {i} has an execution count"

    first, second = nb.cells[0], nb.cells[1]
    link = f"https://colab.research.google.com/github/{COLAB_REPO}/blob/main/examples/{path.name}"
    assert first.cell_type == "markdown"
    assert f"[![Open In Colab]({BADGE})]({link})" in first.source
    assert "JAXCOMP_NOTEBOOK_SMALL" in first.source, "document the size knob in the first cell"
    assert any("JAXCOMP_NOTEBOOK_SMALL" in c.source for c in nb.cells if c.cell_type == "code"), (
        "read the size knob"
    )

    # The install cell: plain Python (valid in any kernel), every statement guarded by the
    # Colab check, and a pip install inside the guard.
    assert second.cell_type == "code"
    body = ast.parse(second.source).body
    guards = [s for s in body if isinstance(s, ast.If)]
    assert guards, "the second cell must install under `if 'google.colab' in sys.modules:`"
    for stmt in body:
        if isinstance(stmt, ast.If):
            assert "google.colab" in ast.unparse(stmt.test) and "sys.modules" in ast.unparse(
                stmt.test
            )
            assert "pip" in ast.unparse(stmt) and "install" in ast.unparse(stmt)
        else:
            assert isinstance(stmt, ast.Import | ast.ImportFrom), ast.unparse(stmt)
