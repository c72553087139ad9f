"""numba kernels of the tile-binned splatting renderer: :func:`cull`, :func:`project`,
:func:`fill_bins`, :func:`sort_bins`, :func:`raster`, called in that order by
``render._render_numba`` (``docs/renderer.md``, "Design"); ``_model.py`` holds the image model's
arithmetic, which these kernels compile in.

Every kernel is ``@njit(cache=True, fastmath=False)``: ``cache=True`` lets the many Ray worker
processes reuse one compiled copy; ``fastmath=False`` keeps IEEE semantics with no contraction to
fused multiply-add, so a pixel's value depends only on its global coordinates and the ordered list
of particles covering it, never on the tile it was rendered in. The numpy fallback in
``_numpy_kernels.py`` writes the same expressions in the same order.

Importing this module imports numba; ``render.py`` falls back to numpy when that fails.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, register_jitable

from farm.particles import _model

BIN = 64
"""Side of the square pixel bins particles are sorted into, anchored at the frame origin."""
ROW = BIN + 8
"""Floats from one row of a bin's raster buffer to the next (see :func:`raster`)."""
NREC = 16
"""Record fields (float32 unless said): sx, sy, r_e, 1/r_e², depth, R, G, B, amplitude,
velocity x, velocity y, id + 1 (uint32), then the footprint's pixels in the region, x0, y0,
x1, y1 (int32, inclusive, global): 64 bytes, one cache line per record (``render._records`` aligns
them)."""
MODEL_DIGEST = "d75fe0bd667af314a3950aaceabc8b5c69ee8ae6242c59b84da9c5fe21bdf719"
"""SHA-256 of ``_model.py``. numba's on-disk cache notices changes to this file only, not to the
model functions it compiles in; a test fails until this is updated after the model changes, and
updating it makes every worker recompile instead of running a stale model."""

for _fn in (
    _model.footprint, _model.box_radius, _model.box, _model.weight, _model.offset2,
    _model.grid_sums, _model.deposit, _model.amplitude_wide, _model.amplitude_narrow,
):  # fmt: skip
    register_jitable(_fn)
BLOCK = 4096
"""Narrow footprints :func:`project` gathers into small contiguous arrays before summing them
over the pixel grid (``_model.grid_sums``), so those sums run as SIMD."""
T_MIN = _model.T_MIN

PREFETCH_AHEAD = 4
"""Records the raster asks the memory system for ahead of the one it blends (see ``_prefetch``)."""


@intrinsic
def _prefetch(typingctx: Any, rows: Any, row: Any) -> Any:
    """Hint the CPU to fetch ``rows[row]`` (a 2-D C array's row) into cache: ``llvm.prefetch``.

    The raster visits records in a bin's depth order, which jumps around the record array, and
    each record is followed by dependent pixel work, so the out-of-order core cannot run ahead
    to the next record's cache miss by itself. A prefetch does not change any value.
    """

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        arrty = sig.args[0]
        ary = context.make_array(arrty)(context, builder, args[0])
        zero = context.get_constant(types.intp, 0)
        ptr = cgutils.get_item_pointer(context, builder, arrty, ary, [args[1], zero])
        i8p = builder.bitcast(ptr, ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p.type, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
        # read (0), keep in all cache levels (3), data cache (1)
        builder.call(fn, [i8p, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.void(rows, types.intp), codegen


@njit(cache=True)
def _no_prefetch(rows: np.ndarray, row: int) -> None:
    """Stands in for :func:`_prefetch` where this LLVM refuses it: same pixels, slower raster."""


@njit(cache=True)
def _prefetch_probe(rows: np.ndarray) -> None:
    _prefetch(rows, 0)


def usable_prefetch(probe: Callable[[np.ndarray], None] = _prefetch_probe) -> Any:
    """:func:`_prefetch` if it compiles here, else :func:`_no_prefetch`.

    The intrinsic's name (``llvm.prefetch.p0i8``) is LLVM's, not numba's, and a future llvmlite
    may refuse it. Without this probe that would make the whole raster fail to compile and the
    renderer fall back to numpy, about 4x slower; with it only the prefetch is lost.
    """
    try:
        probe(np.zeros((1, 1), np.float32))
    except Exception as exc:  # numba raises several error types for a refused intrinsic
        logging.getLogger(__name__).warning("raster prefetch unavailable here (%s)", exc)
        return _no_prefetch
    return _prefetch


_prefetch_row = usable_prefetch()
"""The prefetch the raster calls, chosen once per process before the raster compiles."""


@intrinsic
def _blend8(
    typingctx: Any, acc: Any, first: Any, p: Any, lo: Any, hi: Any, x0: Any, sx: Any,
    dy2: Any, inv: Any, amp: Any, cr: Any, cg: Any, cb: Any, j: Any,
) -> Any:  # fmt: skip
    """Blend one record into the 8 pixels ``p .. p + 7`` of a bin's buffer (lanes ``lo..hi``
    only) with LLVM vector instructions, 8 pixels to an instruction.

    numba does not vectorise this loop itself (its SLP vectoriser is off, and its loop
    vectoriser gave up on every scalar form tried), and the pixel loop is most of a frame's
    time: this took the raster of a 2M-particle 1080p frame from 290 ms to 190 ms here.
    Every lane does the scalar model's float32 operations in the same order (``_model.weight``
    times the amplitude, then "over": ``C += T a c``, ``T *= 1 - a``), so pixels are bit for bit
    those of a scalar loop (and of the numpy fallback, within rounding of its projection); a
    lane outside the disc, outside ``lo..hi`` or already opaque blends ``a = 0``, which changes
    nothing (``x + 0 == x``, ``T * (1 - 0) == T``). ``acc`` is ``(5, n)`` float32 planes R, G,
    B, A, transmittance; ``first`` int32, the front-most record per pixel (-1: none); ``x0``
    the centre of lane 0, ``float32(x + 0.5)``. Returns how many pixels turned opaque.
    """

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        acc_ty, first_ty = sig.args[0], sig.args[1]
        acc_a = context.make_array(acc_ty)(context, builder, args[0])
        first_a = context.make_array(first_ty)(context, builder, args[1])
        pos, lo_, hi_, x0_, sx_, dy2_, inv_, amp_, cr_, cg_, cb_, j_ = args[2:]
        f32, i32 = ir.FloatType(), ir.IntType(32)
        vf, vi = ir.VectorType(f32, 8), ir.VectorType(i32, 8)

        def splat(value: Any, vty: Any) -> Any:
            v = builder.insert_element(ir.Constant(vty, None), value, ir.Constant(i32, 0))
            return builder.shuffle_vector(v, ir.Constant(vty, None), ir.Constant(vi, [0] * 8))

        def plane(c: int) -> Any:
            idx = [context.get_constant(types.intp, c), pos]
            ptr = cgutils.get_item_pointer(context, builder, acc_ty, acc_a, idx)
            return builder.bitcast(ptr, vf.as_pointer())

        lanes_f = ir.Constant(vf, [float(k) for k in range(8)])
        lanes_i = ir.Constant(vi, list(range(8)))
        one = ir.Constant(vf, [1.0] * 8)
        zero = ir.Constant(vf, [0.0] * 8)
        xs = builder.fadd(splat(x0_, vf), lanes_f)  # exact: pixel centres below 2**23
        dx = builder.fsub(xs, splat(sx_, vf))
        d2 = builder.fadd(builder.fmul(dx, dx), splat(dy2_, vf))
        t = builder.fsub(one, builder.fmul(d2, splat(inv_, vf)))
        lo_v = splat(builder.trunc(lo_, i32), vi)
        hi_v = splat(builder.trunc(hi_, i32), vi)
        valid = builder.and_(
            builder.icmp_signed(">=", lanes_i, lo_v), builder.icmp_signed("<=", lanes_i, hi_v)
        )
        t_ptr = plane(4)
        t_now = builder.load(t_ptr, align=4)
        t_min = ir.Constant(vf, [float(T_MIN)] * 8)
        hit = builder.and_(valid, builder.fcmp_ordered(">", t, zero))
        hit = builder.and_(hit, builder.fcmp_ordered(">=", t_now, t_min))
        a = builder.select(hit, builder.fmul(splat(amp_, vf), builder.fmul(t, t)), zero)
        ta = builder.fmul(t_now, a)
        for c, col in enumerate((cr_, cg_, cb_)):
            ptr = plane(c)
            builder.store(
                builder.fadd(builder.load(ptr, align=4), builder.fmul(ta, splat(col, vf))),
                ptr, align=4,
            )  # fmt: skip
        a_ptr = plane(3)
        builder.store(builder.fadd(builder.load(a_ptr, align=4), ta), a_ptr, align=4)
        t_new = builder.fmul(t_now, builder.fsub(one, a))
        builder.store(t_new, t_ptr, align=4)
        f_ptr = builder.bitcast(
            cgutils.get_item_pointer(context, builder, first_ty, first_a, [pos]), vi.as_pointer()
        )
        f_old = builder.load(f_ptr, align=4)
        fresh = builder.and_(hit, builder.icmp_signed("<", f_old, ir.Constant(vi, [0] * 8)))
        j32 = splat(builder.trunc(j_, i32), vi)
        builder.store(builder.select(fresh, j32, f_old), f_ptr, align=4)
        opaque = builder.and_(hit, builder.fcmp_ordered("<", t_new, t_min))
        bits = builder.bitcast(opaque, ir.IntType(8))
        ctpop = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.IntType(8), [ir.IntType(8)]), "llvm.ctpop.i8"
        )
        return builder.zext(builder.call(ctpop, [bits]), ir.IntType(64))

    sig = types.int64(
        acc, first, types.intp, types.intp, types.intp, types.float32, types.float32,
        types.float32, types.float32, types.float32, types.float32, types.float32,
        types.float32, types.intp,
    )  # fmt: skip
    return sig, codegen


@njit(cache=True, fastmath=False)
def _bin_range(
    sx: float, sy: float, re: float, gx0: int, gy0: int, gx1: int, gy1: int
) -> tuple[int, int, int, int]:
    """The pixels of ``[gx0, gx1) x [gy0, gy1)`` inside a footprint's box (inclusive bounds)."""
    bx0, by0, bx1, by1 = _model.box(sx, sy, re)
    lo_x = gx0 if bx0 < gx0 else math.ceil(bx0)
    lo_y = gy0 if by0 < gy0 else math.ceil(by0)
    hi_x = gx1 - 1 if bx1 > gx1 - 1 else math.floor(bx1)
    hi_y = gy1 - 1 if by1 > gy1 - 1 else math.floor(by1)
    return lo_x, lo_y, hi_x, hi_y


@njit(cache=True, fastmath=False)
def _bin_grid(rx0: int, ry0: int, rx1: int, ry1: int) -> tuple[int, int, int, int]:
    """The bins covering region ``[rx0, rx1) x [ry0, ry1)``: first bin (x, y) and counts."""
    gbx0 = rx0 // BIN
    gby0 = ry0 // BIN
    return gbx0, gby0, (rx1 - 1) // BIN - gbx0 + 1, (ry1 - 1) // BIN - gby0 + 1


@njit(cache=True, fastmath=False)
def _bins_of(lx: int, ly: int, hx: int, hy: int, gbx0: int, gby0: int) -> tuple[int, int, int, int]:
    """The bins (inclusive, relative to the region's first bin ``gbx0, gby0``) holding the
    footprint pixels ``lx..hx`` x ``ly..hy``: one mapping for :func:`project`, which counts a
    record in them, and :func:`fill_bins`, which files it there; the two must agree."""
    return lx // BIN - gbx0, ly // BIN - gby0, hx // BIN - gbx0, hy // BIN - gby0


@njit(cache=True, fastmath=False)
def _centre(
    position: np.ndarray, radius: np.ndarray, i: int, params: np.ndarray
) -> tuple[float, float, float, float, float, float, float]:
    """Particle ``i`` in camera space (float64): offset from the camera, depth, screen centre
    and projected radius, ``(dx, dy, dz, zc, sx, sy, rp)``."""
    dx = np.float64(position[i, 0]) - params[0]
    dy = np.float64(position[i, 1]) - params[1]
    dz = np.float64(position[i, 2]) - params[2]
    zc = dx * params[9] + dy * params[10] + dz * params[11]
    xc = dx * params[3] + dy * params[4] + dz * params[5]
    yc = dx * params[6] + dy * params[7] + dz * params[8]
    f = params[12]
    # A particle on the camera's plane (depth 0) is culled (depth < near); it must not raise.
    iz = 1.0 / zc if zc != 0.0 else 0.0
    return dx, dy, dz, zc, params[13] + f * xc * iz, params[14] - f * yc * iz, f * radius[i] * iz


@njit(cache=True, fastmath=False)
def _drawn(
    opacity: float, zc: float, params: np.ndarray, sx: np.float32, sy: np.float32,
    re: np.float32, rx0: int, ry0: int, rx1: int, ry1: int,
) -> bool:  # fmt: skip
    """The one culling rule: opacity > 0, depth in ``[near, far]`` and the footprint's box
    touching the region ``[rx0, rx1) x [ry0, ry1)``."""
    if not (opacity > 0 and zc >= params[15] and zc <= params[16]):
        return False
    bx0, by0, bx1, by1 = _model.box(sx, sy, re)
    return bool(bx0 <= rx1 - 1 and bx1 >= rx0 and by0 <= ry1 - 1 and by1 >= ry0)


@njit(cache=True, fastmath=False)
def cull(
    position: np.ndarray,
    radius: np.ndarray,
    colour: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    inside: np.ndarray,
    params: np.ndarray,
    rx0: int,
    ry0: int,
    rx1: int,
    ry1: int,
    run_starts: np.ndarray,
    run_ends: np.ndarray,
) -> tuple[int, int]:
    """The particles of ranges ``[starts[c], ends[c])`` drawn in the region (:func:`_drawn`),
    as runs of consecutive indices written to ``run_starts`` / ``run_ends`` (room for
    ``ceil(L / 2)`` runs per range of ``L``: a culled particle separates two runs). Returns
    ``(runs, particles)``, so a tile makes records for its own particles only. A range flagged
    ``inside`` (``render._chunk_ranges``: every footprint surely touches the region, every
    depth is in range) is culled by opacity alone, without projecting its particles."""
    runs = 0
    m = 0
    for c in range(starts.size):
        open_run = False
        by_opacity = inside[c]
        for i in range(starts[c], ends[c]):
            if by_opacity:
                drawn = colour[i, 3] > 0
            else:
                _, _, _, zc, s_x, s_y, rp = _centre(position, radius, i, params)
                _, re2 = _model.footprint(rp)
                re32 = np.float32(math.sqrt(re2))
                drawn = _drawn(colour[i, 3], zc, params, np.float32(s_x), np.float32(s_y), re32,
                               rx0, ry0, rx1, ry1)  # fmt: skip
            if drawn:
                if not open_run:
                    run_starts[runs] = i
                    runs += 1
                    open_run = True
                run_ends[runs - 1] = i + 1
                m += 1
            else:
                open_run = False
    return runs, m


@njit(cache=True, fastmath=False)
def _flush_narrow(
    rec: np.ndarray,
    n: int,
    n_sx: np.ndarray,
    n_sy: np.ndarray,
    n_re: np.ndarray,
    n_inv: np.ndarray,
    n_dep: np.ndarray,
    n_slot: np.ndarray,
    n_sum: np.ndarray,
) -> None:
    """Peak alphas of ``n`` gathered narrow footprints: deposit over exact pixel sum."""
    _model.grid_sums(n_sx, n_sy, n_re, n_inv, n_sum, n)
    for q in range(n):
        rec[n_slot[q], 8] = _model.amplitude_narrow(n_dep[q], n_sum[q])


@njit(cache=True, fastmath=False)
def project(
    position: np.ndarray,
    velocity: np.ndarray,
    radius: np.ndarray,
    colour: np.ndarray,
    ids: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    params: np.ndarray,
    rx0: int,
    ry0: int,
    rx1: int,
    ry1: int,
    rec: np.ndarray,
    counts: np.ndarray,
) -> None:
    """Pack a record for each particle of ranges ``[starts[c], ends[c])`` (the runs from
    :func:`cull`), in that order.

    Fills ``rec`` (``(m, NREC)`` float32, see ``NREC``) and ``counts`` (zeroed, one more than
    the region's bins: the records per bin, shifted by one, ready for a prefix sum).
    Allocation is the caller's: numpy's, whose large buffers get huge pages; first touches of
    fresh 4 KiB pages cost as much as this pass. Records are packed while reading the input in
    memory order because the later passes visit them by bin and depth, and one cache line per
    particle is what that costs. Narrow footprints are gathered ``BLOCK`` at a time for their
    exact pixel sums (``_model.grid_sums``), which then fix their amplitudes.
    """
    bits = rec.view(np.uint32)
    ints = rec.view(np.int32)
    gbx0, gby0, nbx, _ = _bin_grid(rx0, ry0, rx1, ry1)
    n_sx = np.empty(BLOCK, np.float32)
    n_sy = np.empty(BLOCK, np.float32)
    n_re = np.empty(BLOCK, np.float32)
    n_inv = np.empty(BLOCK, np.float32)
    n_sum = np.empty(BLOCK, np.float32)
    n_dep = np.empty(BLOCK, np.float64)
    n_slot = np.empty(BLOCK, np.int64)
    f, hw, hh, near = params[12], params[13], params[14], params[15]
    narrow = 0
    k = 0
    for c in range(starts.size):
        for i in range(starts[c], ends[c]):
            dx, dy, dz, zc, s_x, s_y, rp = _centre(position, radius, i, params)
            r2, re2 = _model.footprint(rp)
            sx32 = np.float32(s_x)
            sy32 = np.float32(s_y)
            re32 = np.float32(math.sqrt(re2))
            inv32 = np.float32(1.0 / re2)
            ex = dx + np.float64(velocity[i, 0])
            ey = dy + np.float64(velocity[i, 1])
            ez = dz + np.float64(velocity[i, 2])
            ze = ex * params[9] + ey * params[10] + ez * params[11]
            if not ze >= near:
                ze = near
            xe = ex * params[3] + ey * params[4] + ez * params[5]
            ye = ex * params[6] + ey * params[7] + ez * params[8]
            ize = 1.0 / ze
            rec[k, 0] = sx32
            rec[k, 1] = sy32
            rec[k, 2] = re32
            rec[k, 3] = inv32
            rec[k, 4] = np.float32(zc)
            rec[k, 5] = colour[i, 0]
            rec[k, 6] = colour[i, 1]
            rec[k, 7] = colour[i, 2]
            if re32 < _model.EXACT_BELOW_PX:
                n_sx[narrow] = sx32
                n_sy[narrow] = sy32
                n_re[narrow] = re32
                n_inv[narrow] = inv32
                n_dep[narrow] = _model.deposit(colour[i, 3], r2)
                n_slot[narrow] = k
                narrow += 1
                if narrow == BLOCK:
                    _flush_narrow(rec, narrow, n_sx, n_sy, n_re, n_inv, n_dep, n_slot, n_sum)
                    narrow = 0
            else:
                rec[k, 8] = _model.amplitude_wide(colour[i, 3], r2, re2)
            rec[k, 9] = np.float32(hw + f * xe * ize - s_x)
            rec[k, 10] = np.float32(hh - f * ye * ize - s_y)
            bits[k, 11] = ids[i] + np.uint32(1)
            lx, ly, hx, hy = _bin_range(sx32, sy32, re32, rx0, ry0, rx1, ry1)
            bx_lo, by_lo, bx_hi, by_hi = _bins_of(lx, ly, hx, hy, gbx0, gby0)
            ints[k, 12] = lx
            ints[k, 13] = ly
            ints[k, 14] = hx
            ints[k, 15] = hy
            for by in range(by_lo, by_hi + 1):
                for bx in range(bx_lo, bx_hi + 1):
                    counts[by * nbx + bx + 1] += 1
            k += 1
    _flush_narrow(rec, narrow, n_sx, n_sy, n_re, n_inv, n_dep, n_slot, n_sum)


@njit(cache=True, fastmath=False)
def fill_bins(
    rec: np.ndarray,
    offsets: np.ndarray,
    gbx0: int,
    gby0: int,
    nbx: int,
    entries: np.ndarray,
    keys: np.ndarray,
) -> None:
    """Bin once: append each record's number to every bin its box touches, reading the records
    in memory (Morton) order. Bin ``b`` (row-major, ``nbx`` a row) owns
    ``entries[offsets[b]:offsets[b + 1]]`` (``offsets``: the prefix sum of :func:`project`'s
    counts), in record order until :func:`sort_bins` orders them; ``keys`` (uint32, the same
    length) gets each entry's depth bits beside it.

    Bins hold record numbers, not copies: 4 bytes written per (record, bin) instead of 64, and a
    bin's records come from a few runs of the Morton-ordered records, so the raster's reads
    through them stay in cache. The depth keys are copied here, while the record is in cache,
    so the sort reads them in sequence instead of one record's cache line per entry.
    """
    fill = offsets[:-1].copy()
    ints = rec.view(np.int32)
    bits = rec.view(np.uint32)
    for s in range(rec.shape[0]):
        bx_lo, by_lo, bx_hi, by_hi = _bins_of(
            ints[s, 12], ints[s, 13], ints[s, 14], ints[s, 15], gbx0, gby0
        )
        key = bits[s, 4]
        for by in range(by_lo, by_hi + 1):
            for bx in range(bx_lo, bx_hi + 1):
                b = by * nbx + bx
                entries[fill[b]] = s
                keys[fill[b]] = key
                fill[b] += 1


@njit(cache=True, fastmath=False)
def sort_bins(rec: np.ndarray, entries: np.ndarray, keys: np.ndarray, offsets: np.ndarray) -> None:
    """Order every bin's records by (depth, particle id): the one global blending order, kept
    per bin, since a pixel only ever sees its own bin.

    Per bin, an LSD radix sort on the float32 depth bits (positive floats sort like their bit
    patterns; ``keys``, from :func:`fill_bins`), 8 bits a pass, skipping a pass whose digit is
    the same for the whole bin (the high bits, for a bin's particles lie at similar depths),
    then an insertion sort by id inside each run of equal depth (ties are rare). A bin's keys
    and slots fit in L1/L2. ``keys`` is left in an unspecified order.
    """
    bits = rec.view(np.uint32)
    most = 0
    for b in range(offsets.size - 1):
        most = max(most, offsets[b + 1] - offsets[b])
    kb = np.empty(most, np.uint32)
    sb = np.empty(most, np.int32)
    hist = np.zeros((4, 256), np.int64)
    for b in range(offsets.size - 1):
        o0 = offsets[b]
        n = offsets[b + 1] - o0
        if n < 2:
            continue
        sa = entries[o0 : o0 + n]
        ka = keys[o0 : o0 + n]
        for q in range(4):
            for d in range(256):
                hist[q, d] = 0
        for i in range(n):
            k = ka[i]
            hist[0, k & 255] += 1
            hist[1, (k >> 8) & 255] += 1
            hist[2, (k >> 16) & 255] += 1
            hist[3, k >> 24] += 1
        src_k, dst_k, src_s, dst_s = ka, kb[:n], sa, sb[:n]
        moved = 0
        for q in range(4):
            shift = 8 * q
            if hist[q, (src_k[0] >> shift) & 255] == n:
                continue  # one digit for the whole bin: this pass would not move anything
            acc = 0
            for d in range(256):
                c = hist[q, d]
                hist[q, d] = acc
                acc += c
            for i in range(n):
                k = src_k[i]
                d = (k >> shift) & 255
                j = hist[q, d]
                dst_k[j] = k
                dst_s[j] = src_s[i]
                hist[q, d] = j + 1
            src_k, dst_k = dst_k, src_k
            src_s, dst_s = dst_s, src_s
            moved += 1
        if moved % 2:
            sa[:] = src_s
        i = 0
        while i < n:
            e = i + 1
            while e < n and src_k[e] == src_k[i]:
                e += 1
            for a in range(i + 1, e):
                s = sa[a]
                tie = bits[s, 11]
                c = a - 1
                while c >= i and bits[sa[c], 11] > tie:
                    sa[c + 1] = sa[c]
                    c -= 1
                sa[c + 1] = s
            i = e


@njit(cache=True, fastmath=False)
def raster(
    rec: np.ndarray,
    entries: np.ndarray,
    offsets: np.ndarray,
    gbx0: int,
    gby0: int,
    nbx: int,
    nby: int,
    ox0: int,
    oy0: int,
    ox1: int,
    oy1: int,
    out_rgba: np.ndarray,
    out_z: np.ndarray,
    out_id: np.ndarray,
    out_v: np.ndarray,
) -> None:
    """Blend the binned records front to back into the outputs covering ``[ox0,ox1) x [oy0,oy1)``.

    ``out_rgba`` is ``(4, h, w)``, ``out_z`` and ``out_id`` ``(h, w)``, ``out_v`` ``(2, h, w)``,
    pre-filled with the empty values. Each pixel sees the records of exactly one bin, in global
    (depth, id) order (:func:`sort_bins`), so its arithmetic is the same whatever rectangle it
    is rendered in. A bin blends into a small local buffer (planes R, G, B, A, transmittance,
    in L1), 8 pixels of a row at a time (:func:`_blend8`), and writes the outputs once; the
    front-most record of each pixel is noted and its Z, id and velocity are copied at the end.
    """
    # A bin's buffer rows are ROW floats apart, so 8 lanes from any pixel of a row stay in the
    # buffer: groups start at a footprint's first pixel, and one covers most footprints.
    acc = np.empty((5, BIN * ROW), np.float32)
    first = np.empty(BIN * ROW, np.int32)
    rec_id = rec.view(np.uint32)
    ints = rec.view(np.int32)
    for by in range(max(oy0 // BIN, gby0), min((oy1 - 1) // BIN, gby0 + nby - 1) + 1):
        wy0 = max(by * BIN, oy0)
        wy1 = min(by * BIN + BIN, oy1)
        for bx in range(max(ox0 // BIN, gbx0), min((ox1 - 1) // BIN, gbx0 + nbx - 1) + 1):
            b = (by - gby0) * nbx + (bx - gbx0)
            if offsets[b] == offsets[b + 1]:
                continue
            wx0 = max(bx * BIN, ox0)
            wx1 = min(bx * BIN + BIN, ox1)
            px0 = bx * BIN  # the buffer holds the whole bin
            py0 = by * BIN
            for p in range(BIN * ROW):
                acc[0, p] = 0.0
                acc[1, p] = 0.0
                acc[2, p] = 0.0
                acc[3, p] = 0.0
                acc[4, p] = 1.0
                first[p] = -1
            left = (wy1 - wy0) * (wx1 - wx0)
            for e in range(offsets[b], offsets[b + 1]):
                if e + PREFETCH_AHEAD < entries.size:
                    _prefetch_row(rec, entries[e + PREFETCH_AHEAD])
                j = entries[e]
                sx = rec[j, 0]
                sy = rec[j, 1]
                # The footprint's pixels in the region (from :func:`project`), in the window.
                lx = max(ints[j, 12], wx0)
                ly = max(ints[j, 13], wy0)
                hx = min(ints[j, 14], wx1 - 1)
                hy = min(ints[j, 15], wy1 - 1)
                inv = rec[j, 3]
                cr = rec[j, 5]
                cg = rec[j, 6]
                cb = rec[j, 7]
                amp = rec[j, 8]
                for y in range(ly, hy + 1):
                    dy = np.float32(y + 0.5) - sy
                    row = (y - py0) * ROW - px0
                    for gx in range(lx, hx + 1, 8):
                        left -= _blend8(acc, first, row + gx, 0, hx - gx, np.float32(gx + 0.5),
                                        sx, dy * dy, inv, amp, cr, cg, cb, j)  # fmt: skip
                if left == 0:
                    break
            for y in range(wy0, wy1):
                row = (y - py0) * ROW - px0
                ty = y - oy0
                for x in range(wx0, wx1):
                    p = row + x
                    tx = x - ox0
                    out_rgba[0, ty, tx] = acc[0, p]
                    out_rgba[1, ty, tx] = acc[1, p]
                    out_rgba[2, ty, tx] = acc[2, p]
                    out_rgba[3, ty, tx] = acc[3, p]
                    j = first[p]
                    if j >= 0:
                        out_z[ty, tx] = rec[j, 4]
                        out_id[ty, tx] = rec_id[j, 11]
                        out_v[0, ty, tx] = rec[j, 9]
                        out_v[1, ty, tx] = rec[j, 10]
