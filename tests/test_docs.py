"""The documentation site: every public name is in the API reference, the CLI reference is the
parsers' own ``--help``, and the site builds with warnings as errors.

The API check reads the Sphinx object inventory of a build that is newer than every source it
documents (``make test`` builds ``docs/_build/html`` first); when there is none, it builds the
site into a temporary folder.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sphinx.util.inventory import InventoryFile

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
BUILT = DOCS / "_build" / "html"
PACKAGES = ("jaxcomp", "eie_model")

sys.path.insert(0, str(DOCS / "_ext"))
import jaxcomp_docs  # noqa: E402


def _sources() -> list[Path]:
    out = []
    for folder in (REPO / "jaxcomp", REPO / "eie_model", DOCS, REPO / "examples"):
        for p in folder.rglob("*"):
            skip = {"_build", "notebooks", "__pycache__"} & set(p.relative_to(REPO).parts)
            if p.suffix in {".py", ".md", ".ipynb"} and not skip:
                out.append(p)
    return out


def _build(out: Path) -> Path:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", "docs"]
    r = subprocess.run(
        [*cmd, str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=900
    )
    assert r.returncode == 0, f"docs build failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return out


@pytest.fixture(scope="module")
def inventory(tmp_path_factory) -> set[str]:
    inv = BUILT / "objects.inv"
    fresh = inv.exists() and inv.stat().st_mtime > max(p.stat().st_mtime for p in _sources())
    if not fresh:
        inv = _build(tmp_path_factory.mktemp("html")) / "objects.inv"
    with open(inv, "rb") as f:
        data = InventoryFile.load(f, "", lambda base, uri: uri)
    return {name for entries in data.values() for name in entries}


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_is_in_the_api_reference(inventory, package):
    names = importlib.import_module(package).__all__
    missing = [n for n in names if f"{package}.{n}" not in inventory]
    assert not missing, f"{package}: public names missing from docs/api/{package}: {missing}"
    assert len(names) == len(set(names)), f"{package}.__all__ lists a name twice"


@pytest.mark.parametrize("package", PACKAGES)
def test_api_groups_names_under_their_defining_module(package):
    pkg = importlib.import_module(package)
    for name in pkg.__all__:
        obj = getattr(pkg, name)
        module = importlib.import_module(jaxcomp_docs._defining_module(package, name))
        assert module.__name__.startswith(package)
        # the module defines it (a function or class) or binds it (a constant), maybe renamed
        assert getattr(obj, "__module__", None) == module.__name__ or any(
            v is obj for v in vars(module).values()
        ), (package, name, module.__name__)


def _printed_help(main, argv) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    return out.getvalue()


@pytest.mark.parametrize(
    ("spec", "subcommands"),
    [
        ("jaxcomp.cli:main", ["compress", "evaluate"]),
        ("eie_model.cli:main", ["simulate", "sweep", "table", "figures"]),
        ("jaxcomp.zoo.train:main", []),
    ],
)
def test_cli_reference_is_what_help_prints(monkeypatch, spec, subcommands):
    monkeypatch.setenv("COLUMNS", jaxcomp_docs.HELP_WIDTH)
    helps = jaxcomp_docs.cli_helps(spec)
    assert len(helps) == 1 + len(subcommands)
    main = jaxcomp_docs._load_function(spec)
    for (prog, text), argv in zip(helps, [[]] + [[s] for s in subcommands], strict=True):
        assert text == _printed_help(main, [*argv, "--help"]), prog
        assert prog.endswith(argv[0]) if argv else True


def test_cli_reference_refuses_a_function_that_never_parses():
    with pytest.raises(RuntimeError, match="parse_args"):
        jaxcomp_docs.capture_parser("builtins:len")
