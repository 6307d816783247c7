"""The ``share_weights`` optax factory: trained quantization (weight sharing) with centroid
fine-tuning.

:func:`share_weights` returns an ``optax.GradientTransformationExtraArgs`` whose
:class:`ShareState` holds each shared leaf's codebook and codes; the updates it returns keep
every shared weight exactly on its centroid. :func:`shared_params` rebuilds the shared params
from a state. The k-means kernels it composes live in :mod:`jaxcomp.quantize`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcomp.pruning import INSIDE_SHARE, OUTER_MASKS, as_transformation, raise_if
from jaxcomp.quantize import (
    INITS,
    _check_bits,
    centroid_grads,
    kmeans_fit,
    nearest_codes,
    shared_weight,
    uniform_fit,
)
from jaxcomp.tree import align_leaves, path_to_str

__all__ = [
    "ShareState",
    "share_weights",
    "shared_params",
]

SHARE_INITS = (*INITS, "uniform")


class ShareState(NamedTuple):
    """State of :func:`share_weights`; every tree below has the structure of the params.

    Attributes:
      count: ``()`` int32, update steps taken so far.
      codebooks: per shared leaf ``(2**bits,)`` float32 (``codebooks[0] == 0.0``), ``None`` for
        leaves that are not shared.
      codes: per shared leaf the leaf's shape, ``uint8`` (``bits <= 8``) or ``uint16``; 0 where
        the weight is pruned. ``None`` for leaves that are not shared.
      latent: with ``reassign_every > 0``, per shared leaf the dense float32 latent weights of
        the leaf's shape (trained with the weight gradients, used only to reassign codes);
        otherwise ``None`` everywhere.
      inner_state: state of the inner optimizer, which sees the params with every shared leaf
        replaced by its codebook (by ``(codebook, latent)`` with ``reassign_every > 0``).
    """

    count: jax.Array
    codebooks: Any
    codes: Any
    latent: Any
    inner_state: Any


def _leaf_bits(bits: Any, path: str, leaf: Any) -> int | None:
    if not hasattr(leaf, "ndim"):
        return None
    if isinstance(bits, Mapping):
        b = bits.get(path)
    elif callable(bits):
        b = bits(path, leaf)
    else:
        b = bits if leaf.ndim >= 2 else None
    if b is None:
        return None
    dtype = jnp.asarray(leaf).dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"params[{path!r}] has dtype {dtype}: share_weights needs floating-point params; "
            "leave it out with a bits mapping or a (path, leaf) -> bits | None function"
        )
    return _check_bits(b)


def shared_params(params: Any, state: ShareState) -> Any:
    """Return ``params`` with every shared leaf replaced by exactly ``codebook[codes]``.

    Use it to evaluate or export the shared model bit-exactly, or to start fine-tuning from
    weights that already sit on their centroids:
    ``params = shared_params(params, tx.init(params))`` (then the updates of
    :func:`share_weights` land exactly on the centroids, see there).

    Args:
      params: the params pytree the state was made for, e.g. ``nnx.state(model, nnx.Param)``.
      state: a :class:`ShareState` (e.g. ``state``, ``state[i]`` inside ``optax.chain``, or
        ``optimizer.opt_state.inner_state`` of an ``nnx.Optimizer`` around
        ``jaxcomp.prune(share_weights(...))``, held as it is, ``OptVariable`` nodes and all).

    Returns:
      a pytree like ``params``; shared leaves in the leaf's dtype, other leaves unchanged.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> params = {"w": jnp.array([[0.0, 1.0], [2.0, 3.0]])}
      >>> state = share_weights(optax.sgd(0.1), bits=1).init(params)
      >>> shared_params(params, state)["w"].tolist()
      [[0.0, 2.0], [2.0, 2.0]]
    """
    if not isinstance(state, ShareState):
        raise TypeError(f"state must be a ShareState, got {type(state).__name__}")
    flat_p, treedef = jax.tree_util.tree_flatten(params)
    cbs = align_leaves(params, state.codebooks, "state.codebooks")
    cds = align_leaves(params, state.codes, "state.codes")
    out = [
        p if cb is None else shared_weight(cb, cd).astype(jnp.asarray(p).dtype)
        for p, cb, cd in zip(flat_p, cbs, cds, strict=True)
    ]
    return treedef.unflatten(out)


def _landing_centroids(old: jax.Array, target: jax.Array) -> jax.Array:
    # New centroids next to ``target`` (the inner optimizer's step) on which a weight sitting on
    # its old centroid lands bit for bit: ``old + (new - old) == new`` in float, the sum
    # ``optax.apply_updates`` computes with the update ``new - w`` of a weight ``w == old``.
    # ``n = old + (target - old)`` is within half an ulp of ``target`` but not always such a
    # fixed point (e.g. a centroid near 0 that moves across a power of two); one more round trip
    # ``old + (n - old)`` was one in every case tried (16.5M random and binade-edge float32
    # pairs). The check keeps it exact regardless: a centroid whose round trip still misses
    # keeps its old value for this step (NaN passes through, so divergence stays visible).
    new = old + (target - old)
    new = old + (new - old)
    lands = (old + (new - old) == new) | jnp.isnan(new)
    # A trained centroid never lands on exactly 0.0: 0 means "pruned" (code 0) in the params.
    lands &= (new != 0) | (jnp.arange(new.shape[0]) == 0)
    return jnp.where(lands, new, old)


# Inits whose result depends only on the kept weights' values, not on the array's size, so a
# leaf padded with masked-out entries gets bit for bit the fit it gets alone. The random inits
# draw from arrays of the leaf's size and keep one k-means compilation per shape.
BUCKETED_INITS = ("linear", "density")
# Above this many padded entries (and 4x the real ones) a bits group is split by size bucket.
_BATCH_BUDGET = 2**22


def _pow2(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def _bucket(n: int) -> int:
    return max(1024, _pow2(n))


@functools.partial(jax.jit, static_argnames=("bits", "init", "iters"))
def _fit_rows(rows, masks, tol, *, bits, init, iters):
    # lax.map, not vmap: every row runs the unbatched program, the same as a leaf alone
    return jax.lax.map(
        lambda wm: kmeans_fit(wm[0], bits, init=init, iters=iters, tol=tol, mask=wm[1]),
        (rows, masks),
    )


def _bucketed_kmeans(
    leaves: list[Any], leaf_bits: list[int | None], *, init: str, iters: int, tol: float
) -> dict[int, tuple[jax.Array, jax.Array]]:
    """k-means fits of every shared leaf, one compilation per bits value instead of per shape.

    The leaves of one bits value are flattened, padded with masked-out entries to a common
    power-of-two size (rows too, so that models of similar sizes share it) and fitted in one
    ``lax.map`` call; a padded entry is a pruned weight (code 0), so each fit equals the one of
    the leaf alone (``tests/test_sharing.py`` compares them bit for bit).
    """
    groups: dict[int, list[int]] = {}
    for i, b in enumerate(leaf_bits):
        if b is not None:
            groups.setdefault(b, []).append(i)
    out: dict[int, tuple[jax.Array, jax.Array]] = {}
    for b, idx in groups.items():
        sizes = {i: int(np.prod(jnp.shape(leaves[i]), dtype=np.int64)) for i in idx}
        width = max(_bucket(n) for n in sizes.values())
        if _pow2(len(idx)) * width > max(_BATCH_BUDGET, 4 * sum(sizes.values())):
            parts: dict[int, list[int]] = {}
            for i in idx:
                parts.setdefault(_bucket(sizes[i]), []).append(i)
        else:
            parts = {width: idx}
        for width, members in parts.items():
            rows, masks = [], []
            for i in members:
                w = jnp.ravel(jnp.asarray(leaves[i])).astype(jnp.float32)
                kept = w != 0
                if not isinstance(w, jax.core.Tracer):
                    wn = np.asarray(w)
                    if not np.isfinite(wn[wn != 0]).all():
                        raise ValueError(
                            f"leaf {i} of params has NaN or Inf among the kept weights; clean "
                            "them (or mask them out) before weight sharing"
                        )
                pad = width - w.shape[0]
                rows.append(jnp.pad(w, (0, pad)))
                masks.append(jnp.pad(kept, (0, pad)))
            extra = _pow2(len(members)) - len(members)
            rows += [jnp.zeros((width,), jnp.float32)] * extra
            masks += [jnp.zeros((width,), jnp.bool_)] * extra
            cb, cd = _fit_rows(
                jnp.stack(rows), jnp.stack(masks), jnp.float32(tol), bits=b, init=init, iters=iters
            )
            for r, i in enumerate(members):
                shape = jnp.shape(leaves[i])
                out[i] = (cb[r], cd[r, : sizes[i]].reshape(shape))
    return out


def _init_inside(inner: optax.GradientTransformationExtraArgs, view: Any) -> Any:
    token = INSIDE_SHARE.set(True)
    try:
        return inner.init(view)
    finally:
        INSIDE_SHARE.reset(token)


def share_weights(
    inner: optax.GradientTransformation,
    bits: int | Mapping[str, int] | Callable[[str, Any], int | None] = 5,
    *,
    init: str = "linear",
    iters: int = 50,
    tol: float = 0.0,
    seed: int = 0,
    train_centroids: bool = True,
    reassign_every: int = 0,
) -> optax.GradientTransformationExtraArgs:
    """Weight sharing with centroid fine-tuning (trained quantization, thesis §4.2) for optax.

    ``init`` fits a codebook per shared leaf (:func:`jaxcomp.kmeans_fit`, or
    :func:`jaxcomp.uniform_fit` for ``init="uniform"``) over its non-zero weights: exact zeros
    are pruned weights (code 0, codebook entry 0 == 0.0), so the transform composes with pruning.
    Each ``update``:

    1. sums the weight gradients per code (Deep Compression eq. 3,
       :func:`jaxcomp.centroid_grads`);
    2. runs ``inner`` (any optax optimizer: SGD, momentum, Adam, weight decay ...) on the params
       with each shared leaf replaced by its codebook (entry 0 is kept at 0.0), so the inner
       state is per centroid; leaves that are not shared get ``inner``'s ordinary update;
    3. returns, for a shared leaf, updates that put every kept weight exactly on its new
       centroid and pruned weights at exactly 0 after ``optax.apply_updates``: every weight
       gets ``codebook_new[code] - w``. Each new centroid ``c'_k`` is the float next to
       ``c_k + inner step`` (within an ulp) for which ``c_k + (c'_k - c_k) == c'_k``, so a
       weight sitting on centroid k lands on the new one bit for bit whatever the sizes (a
       centroid with no such float, never seen, would keep its value for that step).
       A weight not on its centroid (the very first update, which snaps the dense weights;
       a reassigned code) lands exactly whenever ``t / 2 <= w <= 2 t`` (Sterbenz); a weight
       far from a centroid close to 0 can end one rounding step (below ``ulp(w - t)``) off it,
       and no float32 update could do better. Start from :func:`shared_params` for a
       bit-exact first step.

    Codes stay fixed (the thesis' default). With ``reassign_every = R > 0`` (the "-c+l"
    variant of Table 4.9) dense latent weights are trained alongside (by ``inner``, on the raw
    weight gradients) and every R steps each kept weight's code becomes the one of the centroid
    nearest to its latent weight.

    Compose with pruning by putting the pruning transform outside:
    ``jaxcomp.prune(share_weights(optax.sgd(lr)), ...)``. Every weight it prunes gets code 0 in
    the same step (also when it prunes a weight that had a code), so a file written from the
    state's codebooks and codes equals the trained params bit for bit. The other orders are
    refused: pruning inside (``share_weights(jaxcomp.prune(...))``: the inner optimizer here sees
    codebooks, not params) raises at ``init``; ``optax.chain`` of the two, in either order,
    raises at the update after the one where a transform undid the other's guarantee (pruned
    weights moved, or weights zeroed that keep a code).

    Args:
      inner: the optimizer applied to the codebooks (and to leaves that are not shared).
      bits: Python int in 1..16 for every array leaf with ``ndim >= 2`` (biases untouched), or a
        mapping from leaf path string (``jaxcomp.tree.path_to_str``, e.g. ``"fc1/kernel"``) to
        bits (other leaves untouched; every key must name a leaf), or a function
        ``(path, leaf) -> bits | None`` (None: not shared), e.g.
        ``lambda p, x: 8 if x.ndim == 4 else 5 if x.ndim == 2 else None``.
      init: ``"linear"``, ``"density"``, ``"random"``, ``"kmeans++"`` (k-means initialisation)
        or ``"uniform"`` (uniform quantization grid, no k-means).
      iters: Python int, maximum Lloyd iterations of the k-means.
      tol: early-stop tolerance of the k-means (see :func:`jaxcomp.kmeans_fit`).
      seed: Python int, seeds ``"random"`` / ``"kmeans++"`` (folded with the leaf index).
      train_centroids: False freezes the codebooks (post-training quantization); non-shared
        leaves still train.
      reassign_every: Python int >= 0; 0 keeps codes fixed.

    Returns:
      an ``optax.GradientTransformationExtraArgs`` with state :class:`ShareState`. Its ``update``
      needs ``params``; extra keyword arguments go to ``inner``.

    Raises:
      ValueError / TypeError: bad ``bits`` (outside 1..16, a mapping key that names no leaf, no
        shared leaf at all), unknown ``init``, negative ``reassign_every``, missing ``params``.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> params = {"w": jnp.array([[0.0, 1.0], [1.1, -2.0]]), "b": jnp.ones(2)}
      >>> tx = share_weights(optax.sgd(0.1), bits=2)
      >>> state = tx.init(params)
      >>> grads = jax.tree.map(jnp.ones_like, params)
      >>> updates, state = tx.update(grads, state, params)
      >>> params = optax.apply_updates(params, updates)
      >>> bool(jnp.all(params["w"] == state.codebooks["w"][state.codes["w"]]))
      True
    """
    if init not in SHARE_INITS:
        raise ValueError(f"init must be one of {SHARE_INITS}, got {init!r}")
    if isinstance(reassign_every, bool) or not isinstance(reassign_every, (int, np.integer)):
        raise TypeError(f"reassign_every must be a Python int >= 0, got {reassign_every!r}")
    if reassign_every < 0:
        raise ValueError(f"reassign_every must be >= 0 (0 = codes fixed), got {reassign_every}")
    if not (isinstance(bits, (Mapping, int, np.integer)) or callable(bits)) or isinstance(
        bits, bool
    ):
        raise TypeError(f"bits must be an int, a mapping path -> int or a callable, got {bits!r}")
    if isinstance(bits, (int, np.integer)):
        _check_bits(bits)
    reassign_every = int(reassign_every)
    inner = as_transformation(inner)

    def _view(flat_p, cbs, lts):
        return [
            p if cb is None else (cb if lt is None else (cb, lt))
            for p, cb, lt in zip(flat_p, cbs, lts, strict=True)
        ]

    def init_fn(params):
        flat, treedef = jax.tree_util.tree_flatten_with_path(params)
        paths = [path_to_str(p) for p, _ in flat]
        if isinstance(bits, Mapping):
            unknown = sorted(set(bits) - set(paths))
            if unknown:
                raise ValueError(f"bits names leaves {unknown} that are not in params {paths}")
        leaf_bits = [
            _leaf_bits(bits, path, leaf) for path, (_, leaf) in zip(paths, flat, strict=True)
        ]
        fits: dict[int, tuple[jax.Array, jax.Array]] = {}
        if init in BUCKETED_INITS:
            fits = _bucketed_kmeans(
                [leaf for _, leaf in flat], leaf_bits, init=init, iters=iters, tol=tol
            )
        cbs, cds, lts = [], [], []
        for i, ((_, leaf), b) in enumerate(zip(flat, leaf_bits, strict=True)):
            if b is None:
                cbs.append(None)
                cds.append(None)
                lts.append(None)
                continue
            if i in fits:
                cb, cd = fits[i]
            elif init == "uniform":
                cb, cd = uniform_fit(leaf, b)
            else:
                key = jax.random.fold_in(jax.random.key(seed), i)
                cb, cd = kmeans_fit(leaf, b, init=init, iters=iters, tol=tol, key=key)
            cbs.append(cb)
            cds.append(cd)
            lts.append(
                jnp.where(cd != 0, jnp.asarray(leaf, jnp.float32), 0.0) if reassign_every else None
            )
        if all(cb is None for cb in cbs):
            raise ValueError(f"share_weights: bits={bits!r} selects no leaf of params {paths}")
        flat_p = [leaf for _, leaf in flat]
        view = treedef.unflatten(_view(flat_p, cbs, lts))
        return ShareState(
            count=jnp.zeros((), jnp.int32),
            codebooks=treedef.unflatten(cbs),
            codes=treedef.unflatten(cds),
            latent=treedef.unflatten(lts),
            inner_state=_init_inside(inner, view),
        )

    def update_fn(updates, state, params=None, **extra_args):
        if params is None:
            raise ValueError("share_weights needs params: call tx.update(grads, state, params)")
        flat_pp, treedef = jax.tree_util.tree_flatten_with_path(params)
        flat_p = [x for _, x in flat_pp]
        flat_g = treedef.flatten_up_to(updates)
        cbs = treedef.flatten_up_to(state.codebooks)
        cds = treedef.flatten_up_to(state.codes)
        lts = treedef.flatten_up_to(state.latent)
        # Masks of an enclosing jaxcomp.prune for this step: its pruned weights get code 0 now.
        outer = OUTER_MASKS.get() or {}
        consistent, masked_cds = [], []
        for (kp, p), cb, cd in zip(flat_pp, cbs, cds, strict=True):
            if cb is None:
                masked_cds.append(cd)
                continue
            m = outer.get(path_to_str(kp))
            if m is None or tuple(m.shape) != tuple(cd.shape):
                m = jnp.ones(cd.shape, jnp.bool_)
            # after an update of this transform, a weight is 0 exactly when its code is 0
            consistent.append(jnp.any(m & ((p == 0) != (cd == 0))))
            masked_cds.append(jnp.where(m, cd, jnp.zeros_like(cd)))
        raise_if(
            (state.count > 0) & jnp.any(jnp.stack(consistent)),
            "share_weights: weights are 0 in the params but keep a non-zero code (or the "
            "reverse): a transform after share_weights changed its updates (e.g. "
            "optax.chain(jaxcomp.share_weights(...), jaxcomp.prune(...))), or the params were "
            "changed between steps. Put pruning outside: "
            "jaxcomp.prune(jaxcomp.share_weights(inner, bits=...), schedule)",
        )
        cds = masked_cds
        view_g = []
        for g, cb, cd, lt in zip(flat_g, cbs, cds, lts, strict=True):
            if cb is None:
                view_g.append(g)
                continue
            cg = centroid_grads(g, cd, cb.shape[0]).astype(cb.dtype).at[0].set(0.0)
            if lt is None:
                view_g.append(cg)
            else:
                view_g.append((cg, jnp.where(cd != 0, g, 0.0).astype(lt.dtype)))
        inner_u, inner_state = inner.update(
            treedef.unflatten(view_g),
            state.inner_state,
            treedef.unflatten(_view(flat_p, cbs, lts)),
            **extra_args,
        )
        flat_u = treedef.flatten_up_to(inner_u)
        count = state.count + 1
        out_u, new_cbs, new_cds, new_lts = [], [], [], []
        for p, u, cb, cd, lt in zip(flat_p, flat_u, cbs, cds, lts, strict=True):
            if cb is None:
                out_u.append(u)
                new_cbs.append(None)
                new_cds.append(None)
                new_lts.append(None)
                continue
            u_c, u_l = (u, None) if lt is None else u
            old = cb.astype(p.dtype)
            if train_centroids:
                target = (cb + u_c.astype(cb.dtype)).at[0].set(0.0).astype(p.dtype)
                new = _landing_centroids(old, target)
            else:
                new = old
            if lt is not None:
                kept = cd != 0
                lt = jnp.where(kept, lt + u_l.astype(lt.dtype), 0.0)
                cd = jax.lax.cond(
                    count % reassign_every == 0,
                    lambda lt=lt, new=new, cd=cd, kept=kept: nearest_codes(lt, new, mask=kept),
                    lambda cd=cd: cd,
                )
            # Every weight gets codebook_new[code] - w: exact on its centroid (old + (new - old)
            # == new by the choice of new), elsewhere (dense start, reassigned codes) exact when
            # new / 2 <= w <= 2 new. One gather from a (2**bits,) table per weight.
            out_u.append(new[cd] - p)
            cb = new.astype(cb.dtype)
            new_cbs.append(cb)
            new_cds.append(cd)
            new_lts.append(lt)
        new_state = ShareState(
            count=count,
            codebooks=treedef.unflatten(new_cbs),
            codes=treedef.unflatten(new_cds),
            latent=treedef.unflatten(new_lts),
            inner_state=inner_state,
        )
        return treedef.unflatten(out_u), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
