"""Every exported name exists, is documented, and packages respect the dependency direction."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import eie_model
import jaxcomp

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("pkg", [jaxcomp, eie_model], ids=lambda p: p.__name__)
def test_all_names_exist_and_have_docstrings(pkg):
    assert len(pkg.__all__) == len(set(pkg.__all__)), "duplicate names in __all__"
    for name in pkg.__all__:
        obj = getattr(pkg, name)  # AttributeError if missing
        if inspect.isfunction(obj) or inspect.isclass(obj):
            assert inspect.getdoc(obj), f"{pkg.__name__}.{name} has no docstring"


def test_jaxcomp_never_imports_eie_model():
    for path in (ROOT / "jaxcomp").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n.split(".")[0] == "eie_model" for n in names), path
