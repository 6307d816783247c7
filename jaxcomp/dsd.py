"""Dense-Sparse-Dense training (Han et al., ICLR 2017; thesis chapter 5) as one optax factory.

:func:`dsd` composes :func:`jaxcomp.prune` with the DSD schedules of :mod:`jaxcomp.schedules`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import optax
from flax import nnx

from jaxcomp import schedules as _schedules
from jaxcomp.masks import random_mask
from jaxcomp.pruning import PruneState, as_transformation, prune
from jaxcomp.tree import PyTree, leaves_with_paths

__all__ = [
    "DSDState",
    "dsd",
]


class DSDState(NamedTuple):
    """State of :func:`dsd`.

    Attributes:
      prune_state: the :class:`PruneState` of the pruning wrapper DSD drives; its ``count``
        (int32 scalar) is the step, its ``masks`` the current masks (all True in dense phases),
        and its ``inner_state`` holds ``optax.chain(inner, scale_by_schedule(lr_scale))``'s state.
    """

    prune_state: PruneState


_CUTS = ("keepmax", "random")


def _natural_key(key: str) -> list[Any]:
    # "Conv_2" < "Conv_10": digit runs compare as numbers
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", key)]


def _model_order(tree: PyTree) -> list[tuple[str, Any]]:
    """``(path string, leaf)`` in the model's order, as far as the params tell it.

    A mapping is walked in its own order (a Linen params dict: creation order), except one whose
    keys are sorted (NNX sorts its ``State``; ``jit`` re-sorts dicts), which is walked in natural
    order (Linen's ``Conv_2`` before ``Conv_10``).
    """
    out: list[tuple[str, Any]] = []

    def walk(node: Any, prefix: list[str]) -> None:
        if isinstance(node, nnx.Variable):
            node = node.get_value()
        if isinstance(node, Mapping):
            keys = [str(k) for k in node]
            items = list(zip(keys, node.values(), strict=True))
            if keys == sorted(keys):
                items.sort(key=lambda kv: _natural_key(kv[0]))
            for k, v in items:
                walk(v, [*prefix, k])
        elif hasattr(node, "shape") and hasattr(node, "ndim"):
            out.append(("/".join(prefix), node))
        else:
            for path, leaf in leaves_with_paths(node):
                out.append(("/".join([*prefix, path] if path else prefix), leaf))

    walk(tree, [])
    return out


def _first_conv_path(params: PyTree, first_conv_dense: bool | str) -> str | None:
    convs = [(p, x) for p, x in _model_order(params) if getattr(x, "ndim", 0) == 4]
    if isinstance(first_conv_dense, str):
        if first_conv_dense not in {p for p, _ in convs}:
            raise ValueError(
                f"first_conv_dense={first_conv_dense!r} names no 4-D kernel of params; "
                f"the 4-D kernels are {[p for p, _ in convs]}"
            )
        return first_conv_dense
    if not first_conv_dense or not convs:
        return None
    path, first = convs[0]
    # The first convolution reads the input image: no other kernel takes fewer input channels
    # (Flax kernels are (kh, kw, in, out)). When the order the params give disagrees, the model
    # order is not known from the params (NNX sorts its State: "block10_conv" before "stem").
    fewest = min(x.shape[-2] for _, x in convs)
    if first.shape[-2] > fewest:
        raise ValueError(
            f"dsd: cannot tell the model's first convolution from the params (their order puts "
            f"{path!r} first, but it has {first.shape[-2]} input channels and another kernel "
            f"has {fewest}); name it: first_conv_dense='<path>', one of {[p for p, _ in convs]}"
        )
    return path


def dsd(
    inner: optax.GradientTransformation,
    dense_steps: int,
    sparse_steps: int,
    redense_steps: int,
    sparsity: float,
    *,
    cycles: int = 1,
    lr_drop: float = 0.1,
    cut: str = "keepmax",
    seed: int = 0,
    first_conv_dense: bool | str = True,
    include: Any = None,
    exclude: Any = None,
    predicate: Any = None,
) -> optax.GradientTransformationExtraArgs:
    """Dense-Sparse-Dense training (Han et al., ICLR 2017) inside one ordinary training loop.

    Phases, by optimizer step: dense for ``dense_steps``; then ``cycles`` times: sparse for
    ``sparse_steps`` (every selected layer pruned to the same ``sparsity`` by magnitude, pruned
    weights held at exactly 0), then re-dense for ``redense_steps`` (masks released, pruned
    weights restart from 0, the learning rate multiplied by ``lr_drop``; each further re-dense
    phase multiplies it again). No branching on the user side: call ``update`` every step.

    It composes :func:`prune` (the masks), :func:`jaxcomp.schedules.dsd_sparsity` (the target)
    and ``optax.scale_by_schedule`` with :func:`jaxcomp.schedules.dsd_lr_scale` (the learning
    rate drop; scaling the update is scaling the learning rate for SGD, momentum and Adam).

    Args:
      inner: the optimizer (any ``optax.GradientTransformation``), at the dense learning rate.
      dense_steps: Python int >= 0, steps before the first pruning.
      sparse_steps: Python int > 0, steps of each sparse phase.
      redense_steps: Python int >= 0, steps of each re-dense phase.
      sparsity: fraction of each selected layer pruned in the sparse phases, in ``[0, 1]``.
      cycles: number of S-D cycles (repeated DSD).
      lr_drop: learning-rate multiplier applied at each re-dense phase, in ``(0, 1]``.
      cut: ``"keepmax"`` (prune the smallest weights; the thesis' method) or ``"random"``
        (Random-Cut: prune the same number of weights at random, its control experiment).
      seed: seed of the random cut.
      first_conv_dense: leave the first convolution kernel dense, as the thesis does. True: the
        first 4-D leaf in the model's order as the params give it (a Linen dict's creation
        order, or natural order ``Conv_2`` before ``Conv_10`` for sorted keys); refused with a
        ValueError when that kernel has more input channels than another one (NNX sorts its
        ``State`` alphabetically, so ``"block10_conv"`` would come before ``"stem"``). A path
        string (``"stem/kernel"``) names it; False prunes every selected kernel.
      include, exclude, predicate: leaf selection (default: arrays with ``ndim >= 2``).

    Returns:
      ``optax.GradientTransformationExtraArgs`` with state :class:`DSDState`; ``update`` needs
      ``params``.

    Raises:
      ValueError: on bad phase lengths, a sparsity outside [0, 1], an unknown ``cut``.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> params = {"w": jnp.arange(1.0, 9.0).reshape(2, 4)}
      >>> tx = dsd(optax.sgd(0.1), dense_steps=1, sparse_steps=1, redense_steps=1, sparsity=0.5)
      >>> state = tx.init(params)
      >>> g = {"w": jnp.ones((2, 4))}
      >>> for _ in range(2):
      ...     u, state = tx.update(g, state, params)
      ...     params = optax.apply_updates(params, u)
      >>> int((params["w"] == 0).sum())  # after the sparse step
      4
    """
    if cut not in _CUTS:
        raise ValueError(f"cut must be one of {_CUTS}, got {cut!r}")
    target = _schedules.dsd_sparsity(
        sparsity, dense_steps, sparse_steps, redense_steps, cycles=cycles
    )
    lr_scale = _schedules.dsd_lr_scale(
        lr_drop, dense_steps, sparse_steps, redense_steps, cycles=cycles
    )
    scaled = optax.chain(as_transformation(inner), optax.scale_by_schedule(lr_scale))
    if cut == "keepmax":
        criterion: Any = "magnitude"
    else:

        def criterion(w: jax.Array, s: jax.Array) -> jax.Array:
            return random_mask(w, s, seed=seed)

    if not isinstance(first_conv_dense, (bool, str)):
        raise TypeError(
            f"first_conv_dense must be a bool or a path string, got {first_conv_dense!r}"
        )

    def build(first: str | None) -> optax.GradientTransformationExtraArgs:
        # the leaves prune selects are fixed at init (its state's masks); ``first`` matters there
        excl = exclude
        if first is not None:
            extra = re.compile("^" + re.escape(first) + "$")
            if excl is None:
                excl = [extra]
            elif isinstance(excl, (str, re.Pattern)):
                excl = [excl, extra]
            else:
                excl = [*excl, extra]
        return prune(scaled, target, criterion, include=include, exclude=excl, predicate=predicate)

    def init_fn(params: PyTree) -> DSDState:
        return DSDState(build(_first_conv_path(params, first_conv_dense)).init(params))

    def update_fn(
        updates: PyTree, state: DSDState, params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, DSDState]:
        if params is None:
            raise ValueError("dsd needs the params: call update(grads, state, params)")
        new_updates, ps = build(None).update(updates, state.prune_state, params, **extra_args)
        return new_updates, DSDState(ps)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
