"""Physically remove pruned channels: a smaller dense Flax NNX model with the same outputs.

Filter pruning (``functools.partial(jaxcomp.structured_mask, axis=-1)`` with ``dependents=`` in
:func:`jaxcomp.prune`) leaves whole output channels at exactly 0, bias and BatchNorm included.
Such a channel contributes nothing, so the layers that make and read it can drop it: the
producer loses its output column, a BatchNorm its entries, the next convolution its input
slice, the next dense layer its input rows. That is what makes structured pruning pay on
hardware without sparse kernels (``benchmarks/bench_shrink.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = ["shrink"]


def _module(model: nnx.Module, path: str) -> Any:
    mod: Any = model
    for part in path.split("/"):
        if not hasattr(mod, part):
            raise ValueError(f"shrink: the model has no submodule {path!r} (no {part!r})")
        mod = getattr(mod, part)
    return mod


def _value(v: Any) -> np.ndarray:
    return np.asarray(v[...])


def _set(mod: Any, name: str, value: np.ndarray, like: Any) -> None:
    setattr(mod, name, type(like)(jnp.asarray(value, like[...].dtype)))


def _kept_channels(path: str, mod: Any) -> np.ndarray:
    if not isinstance(mod, (nnx.Conv, nnx.Linear)):
        raise TypeError(f"shrink: {path!r} is a {type(mod).__name__}, not an nnx.Conv/nnx.Linear")
    k = _value(mod.kernel)
    return np.flatnonzero(np.any(k.reshape(-1, k.shape[-1]) != 0, axis=0))


def shrink(model: nnx.Module, readers: Mapping[str, Sequence[str]]) -> nnx.Module:
    """A copy of ``model`` without the output channels that pruning set entirely to zero.

    For each producer (an ``nnx.Conv`` or ``nnx.Linear`` named by its attribute path), the
    channels kept are those whose kernel column is not all zero. The copy keeps only those in
    the producer (kernel's last axis, bias) and in every reader of its output listed in
    ``readers``: an ``nnx.BatchNorm`` (scale, bias, running mean and variance), an ``nnx.Conv``
    (the kernel's input axis) or an ``nnx.Linear`` (its input rows; when it reads a flattened
    ``(..., channels)`` activation, every ``channels``-th row). Removing a channel keeps the
    outputs only if it outputs exactly 0, so a removed channel's bias and the scale and bias
    of a BatchNorm reader must be 0 (prune with ``dependents=``); otherwise this raises.

    Args:
      model: an NNX module; it is not modified.
      readers: producer path -> paths of the modules that read its channels, in any order,
        e.g. ``{"conv1": ["bn1", "conv2"], "conv2": ["bn2", "linear1"]}``.

    Returns:
      a new module of the same class whose layers are smaller; call it as the original.

    Raises:
      ValueError / TypeError: an unknown path, an unsupported module type, a reader whose
        input size does not match, or a removed channel that does not output 0.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> class MLP(nnx.Module):
      ...     def __init__(self, rngs):
      ...         self.fc1 = nnx.Linear(4, 3, rngs=rngs)
      ...         self.fc2 = nnx.Linear(3, 2, rngs=rngs)
      ...     def __call__(self, x):
      ...         return self.fc2(nnx.relu(self.fc1(x)))
      >>> m = MLP(nnx.Rngs(0))
      >>> m.fc1.kernel[...] = m.fc1.kernel[...].at[:, 1].set(0.0)  # output 1 pruned
      >>> small = shrink(m, {"fc1": ["fc2"]})
      >>> small.fc1.kernel.shape, small.fc2.kernel.shape
      ((4, 2), (2, 2))
      >>> x = jnp.ones((1, 4))
      >>> bool(jnp.allclose(small(x), m(x)))
      True
    """
    if not isinstance(model, nnx.Module):
        raise TypeError(f"model must be an nnx.Module, got {type(model).__name__}")
    out = nnx.clone(model)
    for producer, reads in readers.items():
        src = _module(model, producer)
        kept = _kept_channels(producer, src)
        n = _value(src.kernel).shape[-1]
        removed = np.setdiff1d(np.arange(n), kept)
        checks = [(f"{producer}/bias", src.bias)] if getattr(src, "bias", None) is not None else []
        for r in reads:
            mod = _module(model, r)
            if isinstance(mod, nnx.BatchNorm):
                checks += [(f"{r}/scale", mod.scale), (f"{r}/bias", mod.bias)]
        for name, var in checks:
            v = _value(var)
            if v.shape != (n,):
                raise ValueError(f"shrink: {name} has shape {v.shape}, expected ({n},)")
            if np.any(v[removed] != 0):
                raise ValueError(
                    f"shrink: {producer!r} channels {removed[v[removed] != 0].tolist()} are "
                    f"pruned but {name} is not 0 there, so they still output a constant; prune "
                    "with dependents= (jaxcomp.prune) so that removing them keeps the outputs"
                )
        dst = _module(out, producer)
        # from the copy: an earlier producer may already have cut this layer's input axis
        _set(dst, "kernel", _value(dst.kernel)[..., kept], dst.kernel)
        if getattr(dst, "bias", None) is not None:
            _set(dst, "bias", _value(dst.bias)[kept], dst.bias)
        dst.out_features = len(kept)
        if isinstance(dst, nnx.Conv):
            dst.kernel_shape = tuple(dst.kernel[...].shape)
        for r in reads:
            mod = _module(out, r)
            if isinstance(mod, nnx.BatchNorm):
                for name in ("scale", "bias", "mean", "var"):
                    var = getattr(mod, name, None)
                    if var is not None:
                        _set(mod, name, _value(var)[kept], var)
                mod.num_features = len(kept)
            elif isinstance(mod, nnx.Conv):
                k = _value(mod.kernel)
                if k.shape[-2] != n:
                    raise ValueError(f"shrink: {r!r} reads {k.shape[-2]} channels, not {n}")
                _set(mod, "kernel", k[..., kept, :], mod.kernel)
                mod.in_features = len(kept)
                mod.kernel_shape = tuple(mod.kernel[...].shape)
            elif isinstance(mod, nnx.Linear):
                k = _value(mod.kernel)
                if k.shape[0] % n:
                    raise ValueError(
                        f"shrink: {r!r} reads {k.shape[0]} inputs, not a multiple of {n} channels"
                    )
                rows = k.reshape(-1, n, k.shape[-1])[:, kept, :].reshape(-1, k.shape[-1])
                _set(mod, "kernel", rows, mod.kernel)
                mod.in_features = rows.shape[0]
            else:
                raise TypeError(
                    f"shrink: reader {r!r} is a {type(mod).__name__}; supported: nnx.BatchNorm, "
                    "nnx.Conv, nnx.Linear"
                )
    return out
