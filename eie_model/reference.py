"""A slow, obviously-correct cycle-by-cycle EIE simulator: the test oracle (docs/design.md).

Written the way the hardware is: every cycle each unit reads the registers as they were at the
start of the cycle and writes the registers it owns; the loop body is one clock tick. The
per-PE units are NumPy arrays with a leading PE axis, so one tick is a handful of vectorized
operations (the real 1000x4096 layer at 64 PEs runs in about a second).

Units, in the order one tick evaluates them (a later unit sees what an earlier one did this
cycle, exactly as the stated timing requires):

1. **Arithmetic unit** (per PE): a ``write_latency``-deep shift register. The entry read from
   the SpMat SRAM at cycle t is written to its accumulator at ``t + write_latency`` (``s + m + 5``
   for entry m of a column started at s). Codes 0 (fillers) do not write.
2. **SpMat read** (per PE): a PE that is free and holds a pointer pair read in an earlier cycle
   starts that column this cycle (the activation leaves the queue); a column takes
   ``max(1, entries)`` cycles, one entry read per cycle, fillers included. The SRAM line of each
   entry (address p on line ``p // entries_per_line``) is compared with the previous entry's
   line (none at first); a differing line is one line read. A second count,
   ``spm_line_reads_fresh``, forgets the line when a column starts (a fresh fetch per column).
3. **Pointer read** (per PE): a PE whose pointer register is empty reads ``ptr[j], ptr[j+1]`` for
   the activation at the head of its queue, if that activation was broadcast in an earlier cycle.
   Hence ``s >= e + 2`` and ``s[k] >= s[k-1] + d[k-1]``.
4. **LNZD / broadcast** (global): activations are latched in groups of N lanes; the first group
   at cycle 1. Each cycle the LNZD looks for the next non-zero lane of the latched group:
   found and every queue has room -> broadcast (all PEs' queues in the same cycle); found but
   a queue is full -> a broadcast stall cycle; not found -> the next group is latched and
   visible next cycle. A broadcast from lane N-1 also latches the next group for next cycle.
   After the last group, the bias column (its own group, lane 0, activation 1.0).
   Room, with ``fifo_depth`` D >= 2: every PE has at most D-2 broadcast activations whose column
   has not started by this cycle (equivalently ``e[k] >= max_i s[i, k-D+1]``). D = 1 (no waiting
   slot): every PE is idle this cycle with nothing pending, i.e.
   ``e[k] >= max_i (s[i, k-1] + d[i, k-1])``: the PE's only register, freed in the last cycle of
   column k-1, can be written the next cycle.

End: the layer ends one cycle after its last accumulator write (``cycles = last write + 1``).
Edge case the timing rules leave open (decided here): a layer with no accumulator write at all
ends when the LNZD has scanned every group (the cycle the group after the last would latch).

Counters (all docs/design.md): ``cycles``; ``busy`` per PE = entries read (fillers included; an
empty column's one cycle is not busy); ``useful_macs`` = entries with code != 0 in broadcast
columns; ``fillers``; ``stall_cycles`` = cycles the LNZD had an activation but a queue was full;
``starvation_cycles`` = summed over PEs, cycles between a PE's first and last column that it
spends idle waiting for an activation (``sum_k max(0, s[k] - s[k-1] - d[k-1])``);
``pointer_reads`` = N per broadcast; ``spm_line_reads``; ``spm_line_reads_fresh``;
``mac_efficiency`` =
useful / (cycles x N); ``load_efficiency`` = busy / (cycles x N).

``acc_regs`` (EIE's 64 by default; 0 = unlimited, as the authors' simulator runs): outputs
beyond ``N * acc_regs`` run as extra passes, each pass a fresh run over the next
``N * acc_regs`` output rows that rebroadcasts the input; passes run back to back, so every
counter (cycles included) is the sum over passes.

Command line::

    eie-model reference --layer layer.npz --pes 64 --fifo 8 --json
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np

from eie_model.capacity import check_capacity
from eie_model.format import Encoding, encode_layer
from eie_model.types import Counters, EIEParams, EIEStatic, Layer

__all__ = ["run", "simulate", "simulate_encoded"]


def _counters(static: EIEStatic, params: EIEParams, c: dict[str, Any]) -> Counters:
    return Counters(
        static,
        params,
        cycles=int(c["cycles"]),
        useful_macs=int(c["useful_macs"]),
        fillers=int(c["fillers"]),
        pointer_reads=int(c["pointer_reads"]),
        spm_line_reads=int(c["spm_line_reads"]),
        stall_cycles=int(c["stall_cycles"]),
        starvation_cycles=int(c["starvation_cycles"]),
        busy=np.asarray(c["busy"], np.int64),
        spm_line_reads_fresh=int(c["spm_line_reads_fresh"]),
    )


def _spmat(enc: Encoding) -> tuple[np.ndarray, np.ndarray]:
    """``(code, row)`` ``(N, E)``: each PE's SpMat SRAM and the output row of each entry."""
    spm_code, _ = enc.padded()
    spm_row = np.zeros_like(spm_code, dtype=np.int64)
    pe_of = np.repeat(np.arange(enc.n_pes), enc.entries_per_pe)
    spm_row[pe_of, np.arange(enc.n_entries) - enc.pe_offset[pe_of]] = enc.entry_rows()
    return spm_code, spm_row


def simulate_encoded(
    static: EIEStatic,
    params: EIEParams,
    enc: Encoding,
    act: np.ndarray,
    *,
    codebook: np.ndarray | None = None,
    max_cycles: int | None = None,
    groups: tuple[int, int] | None = None,
    y0: np.ndarray | None = None,
    _mem: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[Counters, np.ndarray]:
    """Run an encoded layer cycle by cycle (one pass; ``acc_regs`` is not applied here).

    Args:
        static: :class:`eie_model.types.EIEStatic` (latencies, ``code_bits``).
        params: one design point; ``n_pes`` and ``index_bits`` must be the encoding's.
        enc: the layer in EIE format (:func:`eie_model.format.encode_layer`).
        act: ``(n,)`` input activations (any float dtype; non-zero means != 0).
        codebook: optional ``(2**code_bits,)`` float32 codebook; without it ``y`` is zeros.
        max_cycles: safety bound (default: generous, from the layer size).
        groups: keyword-only ``(g0, g1)``: one activation batch, the LNZD scans only the
            groups ``[g0, g1)`` of N lanes (the first of them latched at cycle 1); the SpMat
            keeps the whole layer's addresses. ``None``: every group.
        y0: keyword-only ``(m,)`` float32 partial sums the accumulators start from (an
            earlier batch's ``y``); ``None``: zeros.

    Returns:
        ``(Counters, y)``: ``y`` ``(m,)`` float32, the outputs as the accumulators hold them.

    Example:
        >>> from eie_model.format import encode_layer
        >>> enc = encode_layer(np.array([[1, 2]], np.uint8), n_pes=1)
        >>> c, _ = simulate_encoded(EIEStatic(max_pes=1), EIEParams(n_pes=1), enc, np.ones(2))
        >>> c.cycles, c.useful_macs   # broadcasts at 1, 2; starts 3, 4; writes 8, 9
        (10, 2)
    """
    if not isinstance(enc, Encoding):
        raise TypeError(f"simulate_encoded: enc must be an Encoding, got {type(enc).__name__}")
    if not isinstance(params, EIEParams) or not isinstance(static, EIEStatic):
        raise TypeError("simulate_encoded: give an EIEStatic and an EIEParams")
    if params.batch_shape != ():
        raise ValueError("simulate_encoded: params must be a single design point (unbatched)")
    if enc.n_pes != int(params.n_pes):
        raise ValueError(f"simulate_encoded: enc.n_pes={enc.n_pes} != params.n_pes={params.n_pes}")
    if (enc.index_bits, enc.code_bits) != (int(params.index_bits), static.code_bits):
        raise ValueError(
            "simulate_encoded: the layer was encoded with index_bits/code_bits "
            f"{enc.index_bits}/{enc.code_bits}, the params/static have "
            f"{int(params.index_bits)}/{static.code_bits}; encode with those values"
        )
    params.check(static)
    m, n = enc.shape
    act = np.asarray(act)
    if act.shape != (n,):
        raise ValueError(f"simulate_encoded: act must have shape ({n},) = (n,), got {act.shape}")
    N = enc.n_pes
    D = int(params.fifo_depth)
    epl = int(params.entries_per_line(static))
    lat_b, lat_w = static.bcast_latency, static.write_latency
    if codebook is None:
        cb = np.zeros(1 << enc.code_bits, np.float32)
    else:
        cb = np.asarray(codebook, np.float32)
        if cb.shape != (1 << enc.code_bits,):
            raise ValueError(
                f"simulate_encoded: codebook must have shape ({1 << enc.code_bits},), "
                f"got {cb.shape}"
            )

    # ---- memories (read-only during the run) ---------------------------------------------
    n_cols = enc.n_cols
    act_mem = np.zeros(n_cols, np.float32)  # activation SRAM, padded columns are 0
    act_mem[:n] = act.astype(np.float32)
    if enc.has_bias:
        act_mem[n_cols - 1] = 1.0
    n_groups = -(-n_cols // N)
    lanes = np.zeros(n_groups * N, np.float32)
    lanes[:n_cols] = act_mem
    lanes = lanes.reshape(n_groups, N)
    g0 = 0
    if groups is not None:  # one activation batch: only its groups are scanned
        g0, n_groups = int(groups[0]), int(groups[1])
        if not 0 <= g0 < n_groups <= lanes.shape[0]:
            raise ValueError(f"simulate_encoded: groups={groups} outside 0..{lanes.shape[0]}")
        lanes[:g0] = 0
        lanes[n_groups:] = 0
    spm_code, spm_row = _spmat(enc) if _mem is None else _mem  # (N, E) SpMat SRAM of each PE
    ptr_mem = enc.col_ptr  # (N, n_cols + 1) pointer SRAM of each PE
    n_bcast_total = int(np.count_nonzero(lanes))
    pes = np.arange(N)

    # ---- registers -----------------------------------------------------------------------
    # LNZD / activation read unit
    group = g0  # latched group
    lane = 0  # next lane to look at in the latched group
    bc_col = np.zeros(n_bcast_total + 1, np.int64)  # broadcast log: column of k
    bc_val = np.zeros(n_bcast_total + 1, np.float32)  # value of k
    bc_time = np.full(n_bcast_total + 1, np.iinfo(np.int64).max // 2, np.int64)  # e[k]
    n_bcast = 0  # activations written to the queues so far
    scan_done_at = None  # cycle the group after the last would latch
    # per PE: queue head (broadcasts whose column started), pointer register, column in process
    head = np.zeros(N, np.int64)
    ptr_valid = np.zeros(N, bool)
    ptr_lo = np.zeros(N, np.int64)
    ptr_hi = np.zeros(N, np.int64)
    cur = np.zeros(N, np.int64)  # next SpMat address of the column in process
    end = np.zeros(N, np.int64)  # end address of the column in process
    active = np.zeros(N, bool)  # a column in process still has entries for later cycles
    cur_val = np.zeros(N, np.float32)  # activation of the column in process
    last_line = np.full(N, -1, np.int64)
    fresh_line = np.full(N, -1, np.int64)  # the same, forgotten when a column starts
    # arithmetic pipeline (ring of write_latency slots) and accumulators
    pipe_valid = np.zeros((lat_w, N), bool)
    pipe_row = np.zeros((lat_w, N), np.int64)
    pipe_prod = np.zeros((lat_w, N), np.float32)
    acc = np.zeros((N, enc.local_rows), np.float32)
    if y0 is not None:  # local row l of PE i is output l*N + i
        start = np.zeros(N * enc.local_rows, np.float32)
        start[:m] = np.asarray(y0, np.float32)
        acc[:] = start.reshape(enc.local_rows, N).T
    # counters
    busy = np.zeros(N, np.int64)
    lines = np.zeros(N, np.int64)
    fresh_lines = np.zeros(N, np.int64)
    useful = fillers = stalls = starve = ptr_reads = 0
    last_write = None

    if max_cycles is None:
        max_cycles = 16 + (n_groups + 2) * 2 + (enc.n_entries + n_bcast_total + 2) * (lat_b + 4)
        max_cycles += lat_w + n_bcast_total * (D + 2)
    t = 0
    while True:
        t += 1
        if t > max_cycles:
            raise RuntimeError(f"simulate_encoded: no end after {max_cycles} cycles (bug)")
        # 1. arithmetic unit: write what was read write_latency cycles ago
        slot = t % lat_w
        w = pipe_valid[slot]
        if w.any():
            p, r = pes[w], pipe_row[slot, w]
            acc[p, r] = acc[p, r] + pipe_prod[slot, w]
            last_write = t
            pipe_valid[slot] = False
        # 2. SpMat read: start a column if free and the pointers are ready, then read one entry
        start = ~active & ptr_valid
        if start.any():
            cur[start] = ptr_lo[start]
            end[start] = ptr_hi[start]
            cur_val[start] = bc_val[head[start]]
            head[start] += 1  # the activation leaves the queue when its column starts
            ptr_valid[start] = False
            fresh_line[start] = -1
        proc = active | start  # PEs occupied this cycle (an empty column takes one cycle)
        read = proc & (cur < end)
        if read.any():
            p = pes[read]
            a = cur[read]
            code = spm_code[p, a]
            line = a // epl
            newline = line != last_line[read]
            lines[p[newline]] += 1
            last_line[read] = line
            fresh_lines[p[line != fresh_line[read]]] += 1
            fresh_line[read] = line
            busy[read] += 1
            nz = code != 0
            useful += int(nz.sum())
            fillers += int((~nz).sum())
            pipe_valid[slot, p] = nz
            pipe_row[slot, p] = spm_row[p, a]
            pipe_prod[slot, p] = cb[code] * cur_val[read]
            cur[read] += 1
        active = proc & (cur < end)
        # starvation: idle, has started a column, and more columns are still to come
        starve += int((~proc & (head >= 1) & (head < n_bcast_total)).sum())
        # 3. pointer read: for the queue head broadcast in an earlier cycle
        want = ~ptr_valid & (head < n_bcast) & (bc_time[head] + (lat_b - 1) <= t)
        if want.any():
            col = bc_col[head[want]]
            ptr_lo[want] = ptr_mem[pes[want], col]
            ptr_hi[want] = ptr_mem[pes[want], col + 1]
            ptr_valid[want] = True
            ptr_reads += int(want.sum())
        # 4. LNZD: next non-zero lane of the latched group, broadcast if every queue has room
        if group < n_groups:
            nzl = np.flatnonzero(lanes[group, lane:])
            if nzl.size:
                ln = lane + int(nzl[0])
                pending = n_bcast - head  # broadcast, column not started (this cycle counted)
                if D >= 2:
                    room = bool(np.all(pending <= D - 2))
                else:
                    room = bool(np.all((pending == 0) & ~proc))
                if room:
                    bc_col[n_bcast] = group * N + ln
                    bc_val[n_bcast] = lanes[group, ln]
                    bc_time[n_bcast] = t
                    n_bcast += 1
                    lane = ln + 1
                    if ln == N - 1:
                        group, lane = group + 1, 0
                else:
                    stalls += 1
            else:
                group, lane = group + 1, 0
            if group == n_groups:
                scan_done_at = t + 1
        # end: everything drained
        if (
            group == n_groups
            and n_bcast == n_bcast_total
            and bool(np.all(head == n_bcast))
            and not active.any()
            and not ptr_valid.any()
            and not pipe_valid.any()
        ):
            break

    cycles = last_write + 1 if last_write is not None else scan_done_at
    y = acc.T.reshape(-1)[:m].copy()  # local row l of PE i is output l*N + i
    c = dict(
        cycles=int(cycles),
        busy=busy,
        useful_macs=useful,
        fillers=fillers,
        stall_cycles=stalls,
        starvation_cycles=starve,
        pointer_reads=ptr_reads,
        spm_line_reads=int(lines.sum()),
        spm_line_reads_fresh=int(fresh_lines.sum()),
    )
    return _counters(static, params, c), y


def run(static: EIEStatic, params: EIEParams, layer: Layer) -> tuple[Counters, np.ndarray]:
    """Encode a layer for ``params`` and run it cycle by cycle (with ``acc_regs`` passes).

    Args:
        static: :class:`eie_model.types.EIEStatic`.
        params: one design point (:class:`eie_model.types.EIEParams`, unbatched).
        layer: a :class:`eie_model.types.Layer` (its codebook gives ``y``).

    Returns:
        ``(Counters, y)``; with ``acc_regs`` > 0 the counters are the sums over passes and
        ``y`` their concatenation. Inputs beyond ``N * static.act_regs`` columns run in
        activation batches (each its own LNZD scan over ``act_regs`` groups; the bias group
        at the end of the last), whose counters add up and whose partial sums stay in the
        accumulators.
        ``Counters.busy`` has length N.

    Example:
        >>> layer = Layer(np.array([[1, 0, 2], [0, 3, 0]], np.uint8), np.arange(4.0),
        ...               np.array([1.0, 0.0, 2.0]))
        >>> c, y = run(EIEStatic(max_pes=2), EIEParams(n_pes=2, fifo_depth=2), layer)
        >>> c.useful_macs, int(c.broadcasts), y.tolist()  # y0 = 1 * 1 + 2 * 2
        (2, 2, [5.0, 0.0])
    """
    if not isinstance(layer, Layer):
        raise TypeError(f"reference: layer must be an eie_model.Layer, got {type(layer).__name__}")
    if not isinstance(params, EIEParams) or not isinstance(static, EIEStatic):
        raise TypeError("reference: give an EIEStatic and an EIEParams")
    codes = np.asarray(layer.codes)
    if codes.ndim != 2:
        raise ValueError(f"reference: codes must be 2-D (m, n), got shape {codes.shape}")
    check_capacity(static, params, layer)
    bias_codes, codebook, act = layer.bias_codes, layer.codebook, layer.act
    N, m = int(params.n_pes), codes.shape[0]
    A = int(params.acc_regs)
    kw = dict(n_pes=N, index_bits=int(params.index_bits), code_bits=static.code_bits)
    cb = None
    if codebook is not None and np.shape(codebook) == (1 << static.code_bits,):
        cb = codebook
    elif codebook is not None:  # a smaller codebook fills the first entries of the SRAM's
        cb = np.zeros(1 << static.code_bits, np.float32)
        cb[: np.shape(codebook)[0]] = codebook
    rows = N * A if A and m > N * A else m
    in_groups = -(-codes.shape[1] // N)  # LNZD groups of inputs (the bias group follows)
    n_groups = in_groups + (bias_codes is not None)
    per = int(static.act_regs) or n_groups  # groups per activation batch (N lanes each)
    starts = list(range(0, max(in_groups, 1), per))  # the last batch scans the bias group too
    totals, ys = [], []
    for lo in range(0, m, rows):  # acc_regs passes, each a layer of its own
        b = None if bias_codes is None else np.asarray(bias_codes)[lo : lo + rows]
        enc = encode_layer(codes[lo : lo + rows], b, **kw)
        y, mem = None, _spmat(enc)
        for j, g0 in enumerate(starts):  # activation batches: partial sums stay in place
            g1 = n_groups if j == len(starts) - 1 else g0 + per
            groups = None if len(starts) == 1 else (g0, g1)
            c, y = simulate_encoded(static, params, enc, act, codebook=cb, groups=groups, y0=y,
                                    _mem=mem)  # fmt: skip
            totals.append(c)
        ys.append(y)
    total = totals[0]
    for c in totals[1:]:
        total = _add(total, c)
    return total, np.concatenate(ys)


def _add(a: Counters, b: Counters) -> Counters:
    """Counters of two passes run back to back (every counter adds up)."""
    fields = ("cycles", "useful_macs", "fillers", "pointer_reads", "spm_line_reads",
              "stall_cycles", "starvation_cycles", "busy", "spm_line_reads_fresh")  # fmt: skip
    return a.replace(**{k: getattr(a, k) + getattr(b, k) for k in fields})


def simulate(static: EIEStatic, params: EIEParams, layer: Layer) -> Counters:
    """The cycle-by-cycle counters of one design point (:func:`run` without the outputs).

    Example:
        >>> layer = Layer(np.array([[1, 2]], np.uint8), np.arange(4.0), np.ones(2))
        >>> simulate(EIEStatic(max_pes=1), EIEParams(n_pes=1, fifo_depth=2), layer).cycles
        11
    """
    return run(static, params, layer)[0]


def main(argv: list[str] | None = None, *, prog: str = "eie-model reference") -> int:
    """``eie-model reference``: one design point, cycle by cycle; prints its counters.

    Example:
        >>> main(["--layer", "nt-lstm", "--pes", "8", "--json"])  # doctest: +SKIP
    """
    ap = argparse.ArgumentParser(
        prog=prog,
        description="Cycle-by-cycle EIE reference simulator (slow; the test oracle).",
    )
    ap.add_argument("--layer", required=True, help="benchmark name, .npz or FILE.dcz:LEAF")
    ap.add_argument("--pes", type=int, default=64, help="number of PEs N")
    ap.add_argument("--fifo", type=int, default=8, help="FIFO depth D")
    ap.add_argument("--index-bits", type=int, default=4, help="relative-index bits r")
    ap.add_argument("--sram-width", type=int, default=64, help="SpMat SRAM line width in bits")
    ap.add_argument("--acc-regs", type=int, default=EIEParams.acc_regs,
                    help="accumulators per PE (0 = unlimited; default %(default)s)")  # fmt: skip
    for flag, field, hlp in (
        ("ptr-bits", "ptr_bits", "column pointer bits"),
        ("spmat-bytes", "spmat_bytes", "SpMat SRAM bytes per PE"),
        ("act-regs", "act_regs", "source activation registers per PE (0 = unlimited)"),
    ):
        ap.add_argument(f"--{flag}", type=int, default=getattr(EIEStatic, field),
                        help=f"{hlp} (default %(default)s)")  # fmt: skip
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    try:
        layer = Layer.load(args.layer)
        params = EIEParams(
            n_pes=args.pes,
            fifo_depth=args.fifo,
            index_bits=args.index_bits,
            sram_width=args.sram_width,
            acc_regs=args.acc_regs,
        )
        static = EIEStatic(max_pes=args.pes, max_fifo=args.fifo, code_bits=layer.code_bits,
                           ptr_bits=args.ptr_bits, spmat_bytes=args.spmat_bytes,
                           act_regs=args.act_regs)  # fmt: skip
        params.check(static)
    except (ValueError, TypeError, OSError) as e:
        ap.error(str(e))
    try:
        c = simulate(static, params, layer)
    except ValueError as e:  # the layer does not fit (eie_model.capacity)
        ap.error(str(e))
    row = c.table()
    keys = ("cycles", "useful_macs", "fillers", "stall_cycles", "starvation_cycles",
            "pointer_reads", "spm_line_reads", "spm_line_reads_fresh", "broadcasts", "n_pes",
            "mac_efficiency", "load_efficiency", "busy_total", "busy_max")  # fmt: skip
    out = {k: row[k][0].item() for k in keys}
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:>20}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main(prog="python -m eie_model.reference"))
