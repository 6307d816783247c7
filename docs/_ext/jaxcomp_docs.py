"""Sphinx directives that generate the reference pages from the code at build time.

``{api-reference} PACKAGE``
    Every name in ``PACKAGE.__all__``: a summary table, then one autodoc entry per name,
    grouped under the module that defines it. A name added to ``__all__`` appears without
    editing the docs (``tests/test_docs.py`` checks that each one does).

``{cli-help} MODULE:FUNCTION`` or ``{cli-help} path/to/script.py:FUNCTION``
    The ``--help`` of a command-line entry point and of each of its subcommands, as printed.
    The function is called with ``["--help"]``; the parser it builds is captured when it calls
    ``parse_args``, so nothing in the command runs and no parser factory is needed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import inspect
import os
import pkgutil
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.errors import PycodeError
from sphinx.pycode import ModuleAnalyzer
from sphinx.util.docutils import SphinxDirective

REPO = Path(__file__).resolve().parents[2]
HELP_WIDTH = "100"


# ------------------------------------------------------------------------------ API reference


def public_names(package: str) -> list[str]:
    """``package.__all__`` in its order."""
    return list(importlib.import_module(package).__all__)


def _submodules(package: str) -> list:
    pkg = importlib.import_module(package)
    mods = [pkg]
    for info in pkgutil.iter_modules(pkg.__path__, package + "."):
        mods.append(importlib.import_module(info.name))
    return mods


def _defining_module(package: str, name: str) -> str:
    """The module whose code defines ``package.name`` (for a constant: that binds it)."""
    obj = getattr(importlib.import_module(package), name)
    mod = getattr(obj, "__module__", None)
    if (inspect.isfunction(obj) or inspect.isclass(obj)) and isinstance(mod, str):
        return mod
    for m in _submodules(package)[1:]:
        if vars(m).get(name) is obj:
            return m.__name__
    return package


def _constant_doc(module: str, name: str) -> list[str]:
    """The ``#:`` comment above ``name`` in ``module``'s source (autodoc's convention)."""
    try:
        docs = ModuleAnalyzer.for_module(module).find_attr_docs()
    except PycodeError:
        return []
    return [line for line in docs.get(("", name), []) if line is not None]


def _first_paragraph(obj) -> str:
    doc = inspect.getdoc(obj) or ""
    return " ".join(doc.strip().split("\n\n")[0].split())


def _autodoc_directive(package: str, name: str, module: str) -> list[str]:
    obj = getattr(importlib.import_module(package), name)
    target = f"{package}.{name}"
    if inspect.isclass(obj):
        return [f".. autoclass:: {target}", "   :members:", ""]
    if callable(obj):
        return [f".. autofunction:: {target}", ""]
    doc = _constant_doc(module, name) or [f"Defined in ``{module}``."]
    out = [f".. py:data:: {target}", f"   :type: {type(obj).__name__}", ""]
    return out + [f"   {line}" for line in doc] + [""]


def _summary_table(package: str, names: list[str]) -> list[str]:
    pkg = importlib.import_module(package)
    rows = [".. list-table::", "   :widths: 30 70", ""]
    for n in names:
        obj = getattr(pkg, n)
        text = _first_paragraph(obj) if callable(obj) else ""
        rows += [f"   * - :py:obj:`{package}.{n}`", f"     - {text}"]
    return rows + [""]


def api_markdown(package: str) -> str:
    """The MyST Markdown of ``package``'s API reference (autodoc inside ``eval-rst`` blocks)."""
    names = public_names(package)
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(_defining_module(package, n), []).append(n)
    parts = [_eval_rst(_summary_table(package, names))]
    for mod, members in groups.items():
        parts.append(f"## `{mod}`")
        first = _first_paragraph(importlib.import_module(mod))
        if first:
            parts.append(_eval_rst([first]))
        lines = [line for n in members for line in _autodoc_directive(package, n, mod)]
        parts.append(_eval_rst(lines))
    return "\n\n".join(parts) + "\n"


def _eval_rst(lines: list[str]) -> str:
    body = "\n".join(lines).rstrip("\n")
    return "````{eval-rst}\n" + body + "\n````"


class APIReference(SphinxDirective):
    required_arguments = 1

    def run(self):
        package = self.arguments[0]
        node = nodes.section()
        node.document = self.state.document
        text = api_markdown(package)
        self.state.nested_parse(StringList(text.split("\n")), 0, node, match_titles=True)
        return node.children


# ------------------------------------------------------------------------------ CLI reference


class _Captured(Exception):
    def __init__(self, parser):
        self.parser = parser


def _load_function(spec: str):
    target, _, func = spec.rpartition(":")
    if target.endswith(".py"):
        path = REPO / target
        mod_spec = importlib.util.spec_from_file_location(path.stem + "_cli_docs", path)
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    return getattr(module, func)


def capture_parser(spec: str) -> argparse.ArgumentParser:
    """The root parser that ``MODULE:FUNCTION`` (an argv-taking entry point) builds."""
    fn = _load_function(spec)
    originals = {k: getattr(argparse.ArgumentParser, k) for k in ("parse_args", "parse_known_args")}

    def capture(self, *args, **kwargs):
        raise _Captured(self)

    for k in originals:
        setattr(argparse.ArgumentParser, k, capture)
    try:
        fn(["--help"])
    except _Captured as c:
        return c.parser
    except SystemExit as e:  # never let an entry point end the docs build
        raise RuntimeError(f"{spec} exited ({e.code}) before parsing its arguments") from None
    finally:
        for k, v in originals.items():
            setattr(argparse.ArgumentParser, k, v)
    raise RuntimeError(f"{spec} returned without calling ArgumentParser.parse_args")


def cli_helps(spec: str) -> list[tuple[str, str]]:
    """``[(prog, help text)]`` for the root parser and each subcommand, depth first."""
    with _fixed_width():
        out = []

        def walk(parser):
            out.append((parser.prog, parser.format_help()))
            for action in parser._actions:
                if isinstance(action, argparse._SubParsersAction):
                    for sub in dict.fromkeys(action.choices.values()):
                        if sub.add_help:  # a pass-through (``eie-model reference``) has its own
                            walk(sub)

        walk(capture_parser(spec))
        return out


@contextlib.contextmanager
def _fixed_width():
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_WIDTH
    try:
        yield
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


class CLIHelp(SphinxDirective):
    required_arguments = 1

    def run(self):
        result = []
        helps = cli_helps(self.arguments[0])
        for i, (prog, text) in enumerate(helps):
            if i > 0:  # a subcommand: its name as a heading outside the table of contents
                result.append(nodes.rubric(text=prog))
            block = nodes.literal_block(text, text)
            block["language"] = "text"
            result.append(block)
        return result


def setup(app):
    app.add_directive("api-reference", APIReference)
    app.add_directive("cli-help", CLIHelp)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
