"""The Python blocks of docs/guides/*.md run as written, top to bottom, one namespace per page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

GUIDES = Path(__file__).resolve().parents[1] / "docs" / "guides"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
PAGES = ["flax.md", "shrink.md"]


def python_blocks(text: str) -> list[str]:
    """The fenced ``python`` blocks of a Markdown text, in order."""
    return BLOCK.findall(text)


def test_block_extraction_finds_each_python_block():
    text = "a\n```python\nx = 1\n```\n```bash\nls\n```\n```python\ny = x + 1\n```\n"
    assert python_blocks(text) == ["x = 1\n", "y = x + 1\n"]


@pytest.mark.parametrize("page", PAGES)
def test_guide_runs_verbatim(page):
    path = GUIDES / page
    if not path.exists():
        pytest.fail(f"{path} is missing")
    blocks = python_blocks(path.read_text())
    assert blocks, f"{page} has no python block"
    namespace: dict = {"__name__": f"guide_{page}"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{page}[block {i}]", "exec"), namespace)  # noqa: S102
