"""Per-layer pruning sensitivity (thesis Figure 3.14): prune one layer at a time, evaluate.

For every selected layer and every sparsity in a list, only that layer is pruned (the others
stay dense) and a user-supplied ``eval_fn(params) -> scalar`` (accuracy, loss, ...) is
evaluated. The evaluations of one layer are batched with ``jax.vmap`` (in chunks with
``lax.map`` if asked) when ``eval_fn`` is traceable; otherwise the sweep falls back to a Python
loop. The result is a :class:`SensitivityTable`, which :func:`plot_sensitivity` draws.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxcomp.atomic import atomic_open
from jaxcomp.masks import magnitude_mask
from jaxcomp.tree import PyTree, leaves_with_paths, map_with_path_str, selected_paths

__all__ = [
    "SensitivityTable",
    "plot_sensitivity",
    "sensitivity_sweep",
]


class SensitivityTable(NamedTuple):
    """Result of :func:`sensitivity_sweep`.

    Attributes:
      layers: the ``L`` layer path strings, in flattening order.
      sparsities: float64 ``(S,)``, the sparsities tried.
      values: float64 ``(L, S)``, ``eval_fn`` with only ``layers[i]`` pruned to
        ``sparsities[j]``.
      baseline: ``eval_fn`` of the unpruned params.
      vectorized: whether the evaluations ran under ``vmap`` (False: the loop fallback).
    """

    layers: tuple[str, ...]
    sparsities: np.ndarray
    values: np.ndarray
    baseline: float
    vectorized: bool

    def to_markdown(self, fmt: str = "{:.4f}") -> str:
        """A Markdown table: one row per layer, one column per sparsity (host side)."""
        head = "| layer | " + " | ".join(f"{s:.0%}" for s in self.sparsities) + " |"
        sep = "|---|" + "---|" * len(self.sparsities)
        rows = [
            f"| {name} | " + " | ".join(fmt.format(v) for v in vals) + " |"
            for name, vals in zip(self.layers, self.values, strict=True)
        ]
        return "\n".join([head, sep, *rows])


def _check_sparsities(sparsities: Any) -> np.ndarray:
    s = np.asarray(sparsities, dtype=np.float64).reshape(-1)
    if s.size == 0:
        raise ValueError("sparsities must be a non-empty list of numbers in [0, 1]")
    if not np.all(np.isfinite(s)) or np.any(s < 0) or np.any(s > 1):
        raise ValueError(f"sparsities must lie in [0, 1], got {s.tolist()}")
    return s


def sensitivity_sweep(
    params: PyTree,
    eval_fn: Callable[[PyTree], Any],
    sparsities: Sequence[float],
    *,
    criterion: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
    include: Any = None,
    exclude: Any = None,
    predicate: Any = None,
    vectorize: bool | None = None,
    batch_size: int | None = None,
) -> SensitivityTable:
    """Prune each selected layer alone to each sparsity and evaluate ``eval_fn``.

    Args:
      params: any pytree of arrays (NNX pure dict, Linen dict, ...).
      eval_fn: ``params -> scalar`` (e.g. test accuracy). If it is traceable (pure JAX), the
        ``S`` evaluations of a layer run as one ``jit(vmap(...))`` call.
      sparsities: ``S`` numbers in ``[0, 1]``.
      criterion: ``(w, sparsity) -> bool mask``; default :func:`jaxcomp.magnitude_mask`.
      include, exclude, predicate: the layers swept (default: arrays with ``ndim >= 2``).
      vectorize: True = vmap (errors propagate), False = Python loop, None = try vmap and fall
        back to the loop if ``eval_fn`` cannot be traced.
      batch_size: with vmap, evaluate at most this many sparsities at once (``lax.map``
        chunks) to bound memory; None = all at once.

    Returns:
      a :class:`SensitivityTable`.

    Raises:
      ValueError: if ``sparsities`` is empty or outside ``[0, 1]``, or no layer is selected.

    Example:
      >>> import jax.numpy as jnp
      >>> p = {"w": jnp.arange(1.0, 5.0).reshape(2, 2)}
      >>> t = sensitivity_sweep(p, lambda q: jnp.sum(q["w"]), [0.0, 0.5])
      >>> t.values.tolist(), t.baseline
      ([[10.0, 7.0]], 10.0)
    """
    s = _check_sparsities(sparsities)
    crit = magnitude_mask if criterion is None else criterion
    sel = selected_paths(params, include=include, exclude=exclude, predicate=predicate)
    if not sel:
        raise ValueError("sensitivity_sweep: no layer selected; check include/exclude/predicate")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a Python int >= 1 or None, got {batch_size!r}")
    leaves = dict(leaves_with_paths(params))
    s32 = jnp.asarray(s, jnp.float32)

    def with_leaf(tree: PyTree, path: str, w: jax.Array) -> PyTree:
        return map_with_path_str(lambda p, x: w if p == path else x, tree)

    def pruned(w: jax.Array, sp: jax.Array) -> jax.Array:
        return jnp.where(crit(w, sp), w, jnp.zeros_like(w))

    def run_vmapped(path: str) -> np.ndarray:
        # params are arguments, not closed-over constants: XLA would otherwise constant-fold
        # the sort of every layer at compile time
        def evaluate_all(tree: PyTree, ss: jax.Array) -> jax.Array:
            w = dict(leaves_with_paths(tree))[path]

            def one(sp: jax.Array) -> jax.Array:
                return jnp.asarray(eval_fn(with_leaf(tree, path, pruned(w, sp)))).reshape(())

            if batch_size is None:
                return jax.vmap(one)(ss)
            return jax.lax.map(one, ss, batch_size=batch_size)

        return np.asarray(jax.jit(evaluate_all)(params, s32), np.float64)

    def run_loop(path: str) -> np.ndarray:
        w = leaves[path]
        prune_one = jax.jit(pruned)
        return np.array(
            [float(eval_fn(with_leaf(params, path, prune_one(w, sp)))) for sp in s32], np.float64
        )

    baseline = float(eval_fn(params))
    vectorized = vectorize is not False
    values = []
    for path in sel:
        if vectorized:
            try:
                values.append(run_vmapped(path))
                continue
            except Exception:
                if vectorize:
                    raise
                vectorized = False  # eval_fn is not traceable: loop from now on
        values.append(run_loop(path))
    return SensitivityTable(
        layers=tuple(sel),
        sparsities=s,
        values=np.stack(values),
        baseline=baseline,
        vectorized=vectorized,
    )


def plot_sensitivity(
    table: SensitivityTable,
    path: str | os.PathLike[str] | None = None,
    *,
    ylabel: str = "accuracy",
    title: str | None = "Pruning sensitivity per layer",
    percent: bool = False,
    dpi: int = 100,
) -> Any:
    """Draw the thesis' Figure 3.14: ``eval_fn`` vs sparsity, one curve per layer.

    Uses the Agg backend through ``matplotlib.figure.Figure`` (no pyplot, no display). The
    baseline is a dashed horizontal line.

    Args:
      table: a :class:`SensitivityTable`.
      path: if given, the PNG is written there atomically (temp file + fsync + rename).
      ylabel: the y axis label.
      title: the title (None for none).
      percent: multiply values by 100 (e.g. accuracy in %).
      dpi: resolution of the saved PNG.

    Returns:
      the ``matplotlib.figure.Figure``.

    Example:
      >>> import numpy as np
      >>> t = SensitivityTable(("fc1",), np.array([0.0, 0.5]), np.array([[0.9, 0.8]]), 0.9, True)
      >>> fig = plot_sensitivity(t)
      >>> len(fig.axes[0].lines)
      2
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    k = 100.0 if percent else 1.0
    fig = Figure(figsize=(6.0, 4.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    x = 100.0 * np.asarray(table.sparsities)
    markers = "osd^v<>px*h"
    for i, (name, vals) in enumerate(zip(table.layers, table.values, strict=True)):
        ax.plot(x, k * np.asarray(vals), marker=markers[i % len(markers)], label=name)
    ax.axhline(k * table.baseline, color="gray", linestyle="--", linewidth=1, label="dense")
    ax.set_xlabel("parameters pruned away (%)")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    if path is not None:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
        with atomic_open(path, make_parents=True) as f:
            f.write(buf.getvalue())
    return fig
