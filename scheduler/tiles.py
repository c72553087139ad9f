"""The tile planner: how one frame is cut into tiles, and how the cut adapts to measured times.

Pure and deterministic: no Ray, no database, no clock, no I/O. It imports only ``farm.vocab`` and
``farm.errors`` (plus NumPy for the O(pixels) coverage check and the time estimates).

Vocabulary: a tile's ``rect`` is the pixels it *owns* in the final frame (the crop rectangle); its
``render_rect`` is ``rect`` grown by the overscan margin and clipped to the image, the pixels that
are actually rendered so that filters and splats near a tile edge see their neighbours. Assembly
crops every render rect back to its rect, so the rects alone must cover the frame exactly once.

Order: tiles are numbered 0.. in row-major order of their top-left corner (``y0``, then ``x0``).
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from farm.errors import InvalidSpec
from farm.vocab import PixelRect

__all__ = [
    "CostMap",
    "PlannedTile",
    "TilePlan",
    "TileTimes",
    "balanced_plan",
    "check_coverage",
    "dispatch_ranks",
    "grid_rects",
    "plan_tiles",
    "replan",
    "size_rects",
]

SPLIT_FACTOR = 2.0
"""A tile is split when its measured time exceeds this multiple of the target time."""

MAX_SPLIT_LEVELS = 2
"""At most quarters per replan: the next frames' measurements decide whether to go further."""


@dataclass(frozen=True)
class PlannedTile:
    """One tile of a plan.

    Attributes:
        index: 0-based position in the plan (row-major order of the top-left corner).
        rect: the pixels this tile owns in the final frame (the crop rectangle).
        render_rect: ``rect`` grown by the overscan margin, clipped to the image: what is rendered.
    """

    index: int
    rect: PixelRect
    render_rect: PixelRect


def _rect(x0: int, y0: int, x1: int, y1: int) -> PixelRect:
    return PixelRect(x0=x0, y0=y0, x1=x1, y1=y1)


def _row_major(rect: PixelRect) -> tuple[int, int]:
    return (rect.y0, rect.x0)


@dataclass(frozen=True)
class TilePlan:
    """How one frame is cut into tiles; recorded per frame in the database and the EXR header.

    Iterating yields the tiles in index order; ``len(plan)`` is the tile count.

    Attributes:
        width: frame width in pixels.
        height: frame height in pixels.
        overscan: margin in pixels rendered around every tile (clipped at the image border).
        tiles: the tiles, ``tiles[i].index == i``.
    """

    width: int
    height: int
    overscan: int
    tiles: tuple[PlannedTile, ...]

    @classmethod
    def from_rects(
        cls, rects: Iterable[PixelRect], *, width: int, height: int, overscan: int
    ) -> TilePlan:
        """Builds a plan from owned rects: sorts them row-major, numbers them, adds overscan."""
        ordered = sorted(rects, key=_row_major)
        tiles = tuple(
            PlannedTile(index=i, rect=r, render_rect=r.expand(overscan, width=width, height=height))
            for i, r in enumerate(ordered)
        )
        return cls(width=width, height=height, overscan=overscan, tiles=tiles)

    def __len__(self) -> int:
        return len(self.tiles)

    def __iter__(self) -> Iterator[PlannedTile]:
        return iter(self.tiles)

    def to_json(self) -> dict[str, Any]:
        """A compact JSON form: render rects are not stored, they follow from rect and overscan.

        Compact because the plan is also written as a string attribute into every frame's EXR
        header, where a few hundred tiles must stay small.
        """
        return {
            "width": self.width,
            "height": self.height,
            "overscan": self.overscan,
            "tiles": [list(t.rect.as_tuple()) for t in self.tiles],
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> TilePlan:
        """Rebuilds a plan written by :meth:`to_json`, checking that it still covers the frame.

        Raises:
            InvalidSpec: when a key is missing, a rect is malformed, or the tiles do not cover
                the frame exactly once (field ``tile_plan``).
        """
        try:
            width, height, overscan = int(d["width"]), int(d["height"]), int(d["overscan"])
            rects = [_rect(*(int(v) for v in t)) for t in d["tiles"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidSpec(
                f"not a tile plan: {exc}; expected keys width, height, overscan and tiles "
                "(a list of [x0, y0, x1, y1])",
                field="tile_plan",
            ) from exc
        try:
            check_coverage(rects, width, height)
        except ValueError as exc:
            raise InvalidSpec(
                f"tile plan does not cover the frame: {exc}", field="tile_plan"
            ) from exc
        return cls.from_rects(rects, width=width, height=height, overscan=overscan)

    def describe(self) -> str:
        """Short human form, e.g. ``"16 tiles (4x4 grid), overscan 8 px"``."""
        xs = sorted({t.rect.x0 for t in self.tiles})
        ys = sorted({t.rect.y0 for t in self.tiles})
        n = len(self.tiles)
        shape = f"{len(xs)}x{len(ys)} grid" if len(xs) * len(ys) == n else "adaptive"
        noun = "tile" if n == 1 else "tiles"
        return f"{n} {noun} ({shape}), overscan {self.overscan} px"


def _check_size(width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise InvalidSpec(
            f"image size {width}x{height} is empty: width and height must be at least 1",
            field="resolution",
        )


def _edges(length: int, parts: int) -> list[int]:
    # Integer edges i * length // parts: parts differ by at most one pixel and cover exactly.
    return [i * length // parts for i in range(parts + 1)]


def grid_rects(width: int, height: int, cols: int, rows: int) -> list[PixelRect]:
    """Cuts a ``width x height`` frame into a ``cols x rows`` grid, in row-major order.

    When the grid does not divide the image, columns (and rows) differ by at most one pixel,
    so no sliver tile is left at the border.

    Raises:
        InvalidSpec: (field ``tiles``) when ``cols`` or ``rows`` is below 1 or larger than the
            image: a tile must own at least one pixel.
    """
    _check_size(width, height)
    if not 1 <= cols <= width:
        raise InvalidSpec(
            f"{cols} tile columns do not fit a {width} px wide image: use 1 to {width}",
            field="tiles",
        )
    if not 1 <= rows <= height:
        raise InvalidSpec(
            f"{rows} tile rows do not fit a {height} px high image: use 1 to {height}",
            field="tiles",
        )
    xs, ys = _edges(width, cols), _edges(height, rows)
    return [_rect(xs[c], ys[r], xs[c + 1], ys[r + 1]) for r in range(rows) for c in range(cols)]


def size_rects(width: int, height: int, tile_width: int, tile_height: int) -> list[PixelRect]:
    """Cuts a frame into tiles of about ``tile_width x tile_height`` pixels, row-major.

    The size is a target: the count per axis is ``ceil(image / tile)`` and the pixels are then
    spread evenly (as in :func:`grid_rects`), so tiles are at most the target and never a sliver.

    Raises:
        InvalidSpec: (field ``tiles``) when a tile size is below 1.
    """
    _check_size(width, height)
    if tile_width < 1 or tile_height < 1:
        raise InvalidSpec(
            f"tile size {tile_width}x{tile_height} is empty: both sides must be at least 1 px",
            field="tiles",
        )
    cols = math.ceil(width / min(tile_width, width))
    rows = math.ceil(height / min(tile_height, height))
    return grid_rects(width, height, cols, rows)


def plan_tiles(
    width: int,
    height: int,
    *,
    cols: int | None = None,
    rows: int | None = None,
    tile_width: int | None = None,
    tile_height: int | None = None,
    overscan: int = 0,
) -> TilePlan:
    """Plans the tiles of one frame, by grid (``cols``/``rows``) or by tile size.

    A missing ``cols`` or ``rows`` counts as 1; a missing ``tile_height`` equals ``tile_width``.
    With neither a grid nor a size the frame is one tile.

    Raises:
        InvalidSpec: when both a grid and a tile size are given, the grid does not fit the
            image (field ``tiles``), or ``overscan`` is negative (field ``overscan``).
    """
    if overscan < 0:
        raise InvalidSpec(f"overscan {overscan} px is negative: use 0 or more", field="overscan")
    by_grid = cols is not None or rows is not None
    by_size = tile_width is not None or tile_height is not None
    if by_grid and by_size:
        raise InvalidSpec(
            "give either a tile grid (cols, rows) or a tile size (tile_width, tile_height), "
            "not both",
            field="tiles",
        )
    if by_size:
        tw = tile_width if tile_width is not None else tile_height
        th = tile_height if tile_height is not None else tile_width
        assert tw is not None and th is not None
        rects = size_rects(width, height, tw, th)
    else:
        rects = grid_rects(width, height, 1 if cols is None else cols, 1 if rows is None else rows)
    return TilePlan.from_rects(rects, width=width, height=height, overscan=overscan)


def check_coverage(rects: Iterable[PixelRect], width: int, height: int) -> None:
    """Checks that ``rects`` cover the ``width x height`` frame exactly once.

    Assembly relies on this: a gap is a black hole in the frame, an overlap a pixel rendered
    twice (and, for non-deterministic renderers, a seam).

    Raises:
        ValueError: naming the first (row-major) uncovered or doubly covered pixel, or the
            first rect that leaves the image.
    """
    count = np.zeros((height, width), dtype=np.int32)
    for r in rects:
        if r.x1 > width or r.y1 > height:
            raise ValueError(f"tile {r.as_tuple()} leaves the {width}x{height} image")
        count[r.y0 : r.y1, r.x0 : r.x1] += 1
    bad = np.flatnonzero(count != 1)
    if bad.size:
        y, x = divmod(int(bad[0]), width)
        n = int(count[y, x])
        what = "is not covered by any tile" if n == 0 else f"is covered by {n} tiles"
        raise ValueError(f"pixel (x={x}, y={y}) {what}")


def _cut_at(rect: PixelRect, axis: int, at: int) -> tuple[PixelRect, PixelRect]:
    """``rect`` cut in two across ``axis`` (0 = x) at pixel coordinate ``at``."""
    x0, y0, x1, y1 = rect.as_tuple()
    if axis == 0:
        return _rect(x0, y0, at, y1), _rect(at, y0, x1, y1)
    return _rect(x0, y0, x1, at), _rect(x0, at, x1, y1)


def _split(
    rect: PixelRect, seconds: float, target_s: float, min_tile: int, level: int
) -> list[PixelRect]:
    """Halves ``rect`` along its longer side while the estimated time stays over the limit."""
    if level >= MAX_SPLIT_LEVELS or seconds <= SPLIT_FACTOR * target_s:
        return [rect]
    can_x = rect.width >= 2 * min_tile
    can_y = rect.height >= 2 * min_tile
    if not (can_x or can_y):
        return [rect]
    if can_x and (rect.width >= rect.height or not can_y):
        halves = _cut_at(rect, 0, (rect.x0 + rect.x1) // 2)
    else:
        halves = _cut_at(rect, 1, (rect.y0 + rect.y1) // 2)
    out: list[PixelRect] = []
    for h in halves:
        out += _split(h, seconds * h.area / rect.area, target_s, min_tile, level + 1)
    return out


Key = tuple[int, int, int, int]


def _merge_cold(cells: list[tuple[PixelRect, float]], target_s: float) -> list[PixelRect]:
    """Greedily merges adjacent pairs whose union is a rectangle and whose summed time fits.

    The cheapest pair merges first (ties break on position); a merged tile can merge again,
    so a cold region grows over several merges. A heap with lazy deletion keeps this
    O(n log n): a 2,000-tile plan replans in well under a second.
    """
    live: dict[Key, float] = {r.as_tuple(): s for r, s in cells}
    # Tiles by each edge, so that neighbours sharing a whole edge are found in O(1).
    by_left: dict[tuple[int, int, int], Key] = {}
    by_right: dict[tuple[int, int, int], Key] = {}
    by_top: dict[tuple[int, int, int], Key] = {}
    by_bottom: dict[tuple[int, int, int], Key] = {}
    heap: list[tuple[float, Key, Key]] = []

    def index(k: Key) -> None:
        x0, y0, x1, y1 = k
        by_left[(x0, y0, y1)] = by_right[(x1, y0, y1)] = k
        by_top[(y0, x0, x1)] = by_bottom[(y1, x0, x1)] = k

    def unindex(k: Key) -> None:
        x0, y0, x1, y1 = k
        del by_left[(x0, y0, y1)], by_right[(x1, y0, y1)]
        del by_top[(y0, x0, x1)], by_bottom[(y1, x0, x1)]

    def push_pairs(k: Key) -> None:
        x0, y0, x1, y1 = k
        for first, second in (
            (k, by_left.get((x1, y0, y1))),
            (by_right.get((x0, y0, y1)), k),
            (k, by_top.get((y1, x0, x1))),
            (by_bottom.get((y0, x0, x1)), k),
        ):
            if first is not None and second is not None:
                total = live[first] + live[second]
                if total <= target_s:
                    heapq.heappush(heap, (total, first, second))

    for k in live:
        index(k)
    for k in sorted(live):
        x0, y0, x1, y1 = k
        for other in (by_left.get((x1, y0, y1)), by_top.get((y1, x0, x1))):
            if other is not None and live[k] + live[other] <= target_s:
                heapq.heappush(heap, (live[k] + live[other], k, other))
    while heap:
        total, a, b = heapq.heappop(heap)
        if a not in live or b not in live:
            continue  # one of them already merged elsewhere: a stale pair
        for k in (a, b):
            unindex(k)
            del live[k]
        merged = (a[0], a[1], b[2], b[3])
        live[merged] = total
        index(merged)
        push_pairs(merged)
    return [_rect(*k) for k in live]


def replan(
    plan: TilePlan, tile_seconds: Mapping[int, float], *, target_s: float, min_tile: int = 16
) -> TilePlan:
    """Adapts a plan to measured tile times, for the frames that follow.

    Tiles slower than ``2 * target_s`` are halved along their longer side, and the halves again
    (quarters) when the tile took over ``4 * target_s``; no side drops below ``min_tile``. Then
    adjacent tiles whose union is a rectangle are merged, cheapest first, while their summed
    time stays within ``target_s``. Time is assumed spread evenly over a tile's area. Tiles
    without a measurement are kept as they are. The result covers the frame exactly once, keeps
    the overscan and is numbered row-major; the same input always gives the same plan.

    Args:
        plan: the plan the times were measured with.
        tile_seconds: measured (or estimated, see :class:`TileTimes`) seconds per tile index.
        target_s: the wanted time per tile.
        min_tile: the smallest side, in pixels, that a split may produce.

    Raises:
        InvalidSpec: when ``target_s`` or ``min_tile`` is not positive, or a time names a tile
            that the plan does not have or is negative (field ``tile_seconds``).
    """
    if not target_s > 0:
        raise InvalidSpec(f"target_s {target_s} must be above 0 seconds", field="target_s")
    if min_tile < 1:
        raise InvalidSpec(f"min_tile {min_tile} must be at least 1 px", field="min_tile")
    for i, s in tile_seconds.items():
        if not 0 <= i < len(plan.tiles):
            raise InvalidSpec(
                f"tile {i} is not in the plan: indices run 0 to {len(plan.tiles) - 1}",
                field="tile_seconds",
            )
        if not s >= 0:
            raise InvalidSpec(f"tile {i} took {s} s: times must be 0 or more", field="tile_seconds")

    kept: list[PixelRect] = []
    measured: list[tuple[PixelRect, float]] = []
    for tile in plan.tiles:
        seconds = tile_seconds.get(tile.index)
        if seconds is None:
            kept.append(tile.rect)
            continue
        pieces = _split(tile.rect, seconds, target_s, min_tile, 0)
        if len(pieces) > 1:
            kept += pieces  # just split: hot by definition, never merged back in the same pass
        else:
            measured.append((tile.rect, seconds))
    rects = kept + _merge_cold(measured, target_s)
    check_coverage(rects, plan.width, plan.height)
    return TilePlan.from_rects(rects, width=plan.width, height=plan.height, overscan=plan.overscan)


def dispatch_ranks(plan: TilePlan, tile_seconds: Mapping[int, float]) -> list[int]:
    """The order to send a frame's tiles in: each tile's rank, slowest first.

    Sending the slow tiles first is the longest-processing-time rule: the cheap tiles fill in
    at the end, so the workers finish a frame together instead of one waiting on a slow tile
    that started last. Before anything is measured, tiles go centre-out (nearest the image
    centre first, like Arnold's default spiral bucket order), since the subject, and so the
    cost, is usually framed near the centre. Tiles without an estimate go before measured
    ones (nothing says they are cheap). Ties go centre-out, then by index, so ranks are
    deterministic.

    Returns:
        ``ranks[i]`` is the position (0 = first) at which tile ``i`` of ``plan`` is sent.
    """
    cx, cy = plan.width / 2, plan.height / 2

    def key(i: int) -> tuple[bool, float, float, int]:
        r = plan.tiles[i].rect
        off_centre = ((r.x0 + r.x1) / 2 - cx) ** 2 + ((r.y0 + r.y1) / 2 - cy) ** 2
        return (i in tile_seconds, -tile_seconds.get(i, 0.0), off_centre, i)

    ranks = [0] * len(plan.tiles)
    for rank, index in enumerate(sorted(range(len(plan.tiles)), key=key)):
        ranks[index] = rank
    return ranks


class TileTimes:
    """Per-layer memory of measured tile times, so :func:`replan` can learn from several frames.

    Each record is turned into a cost density (seconds per pixel) over its rect; a pixel's
    density is the mean over the records that cover it, and a tile's estimate is the sum over
    its pixels. Rects from different plans (before and after a replan) therefore mix freely.
    Only the latest ``history`` records per distinct rect are kept, so old frames fade out.

    Example:
        >>> times = TileTimes()
        >>> times.record(PixelRect(x0=0, y0=0, x1=10, y1=10), 2.0)
        >>> times.seconds_for(plan_tiles(10, 10, cols=2))
        {0: 1.0, 1: 1.0}
    """

    def __init__(self, *, history: int = 8) -> None:
        self._history = history
        self._records: dict[tuple[int, int, int, int], deque[float]] = {}

    def record(self, rect: PixelRect, seconds: float) -> None:
        """Remembers that rendering the tile owning ``rect`` took ``seconds``."""
        if not seconds >= 0:
            raise InvalidSpec(f"tile took {seconds} s: times must be 0 or more", field="seconds")
        self._records.setdefault(rect.as_tuple(), deque(maxlen=self._history)).append(seconds)

    def __len__(self) -> int:
        return sum(len(v) for v in self._records.values())

    def density(self, width: int, height: int) -> CostMap | None:
        """The recorded cost as a :class:`CostMap` of the ``width x height`` frame, or None."""
        if not self._records:
            return None
        # Coordinate compression: cells between all record edges are uniform, so the work is
        # independent of the image size (CostMap clips partial cells exactly).
        keys = list(self._records)
        xs = np.unique([0, width] + [v for k in keys for v in (k[0], k[2])])
        ys = np.unique([0, height] + [v for k in keys for v in (k[1], k[3])])
        dens = np.zeros((len(ys) - 1, len(xs) - 1))
        count = np.zeros_like(dens)
        for (x0, y0, x1, y1), secs in self._records.items():
            i0, i1 = np.searchsorted(xs, [x0, x1])
            j0, j1 = np.searchsorted(ys, [y0, y1])
            dens[j0:j1, i0:i1] += sum(secs) / ((x1 - x0) * (y1 - y0))
            count[j0:j1, i0:i1] += len(secs)
        covered = count > 0
        return CostMap(xs, ys, np.where(covered, dens / np.maximum(count, 1), 0.0), covered)

    def seconds_for(self, plan: TilePlan) -> dict[int, float]:
        """Estimates each tile's time in ``plan``, area-weighted from the recorded rects.

        A tile partly covered by records is scaled up from its covered part; a tile no record
        touches is left out of the result (``replan`` then keeps it as it is).
        """
        cost = self.density(plan.width, plan.height)
        return {} if cost is None else cost.per_tile(plan)


def _cell_areas(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Pixels in each cell of the grid with column edges ``xs`` and row edges ``ys``."""
    return np.outer(np.diff(ys), np.diff(xs)).astype(np.float64)


@dataclass(frozen=True)
class CostMap:
    """Seconds per pixel over a frame, uniform within each cell of a compressed grid.

    Attributes:
        xs: the cells' column edges, ascending, from 0 to the frame width.
        ys: the cells' row edges, ascending, from 0 to the frame height.
        density: seconds per pixel of each cell, shape ``(len(ys) - 1, len(xs) - 1)``.
        covered: which cells a measurement covers (uncovered cells have density 0).
    """

    xs: np.ndarray
    ys: np.ndarray
    density: np.ndarray
    covered: np.ndarray

    @classmethod
    def from_grid(cls, width: int, height: int, cells: np.ndarray) -> CostMap:
        """A map from cost per cell of an even ``(rows, cols)`` grid over the frame.

        The grid's edges are those of :func:`grid_rects`; cells may hold any unit (seconds,
        or a renderer's relative cost preview), as only ratios cut a balanced plan.
        """
        grid = np.asarray(cells, np.float64)
        if grid.ndim != 2 or min(grid.shape) < 1 or not np.isfinite(grid).all() or (grid < 0).any():
            raise InvalidSpec(
                "a cost grid must be a non-empty 2-D array of finite costs >= 0",
                field="cost",
            )
        rows, cols = grid.shape
        xs = np.array(_edges(width, min(cols, width)))
        ys = np.array(_edges(height, min(rows, height)))
        if (len(ys) - 1, len(xs) - 1) != grid.shape:
            raise InvalidSpec(
                f"a {cols}x{rows} cost grid is finer than the {width}x{height} frame",
                field="cost",
            )
        return cls(xs, ys, grid / _cell_areas(xs, ys), np.ones(grid.shape, bool))

    def _overlap(self, rect: PixelRect) -> tuple[np.ndarray, np.ndarray]:
        w = np.clip(np.minimum(self.xs[1:], rect.x1) - np.maximum(self.xs[:-1], rect.x0), 0, None)
        h = np.clip(np.minimum(self.ys[1:], rect.y1) - np.maximum(self.ys[:-1], rect.y0), 0, None)
        return w.astype(np.float64), h.astype(np.float64)

    def sum(self, rect: PixelRect) -> tuple[float, float]:
        """The seconds in ``rect`` and the measured area (pixels) they come from."""
        w, h = self._overlap(rect)
        area = np.outer(h, w)
        return float((self.density * area).sum()), float((area * self.covered).sum())

    def per_tile(self, plan: TilePlan) -> dict[int, float]:
        """Each tile's cost, scaled up from its covered part; tiles with none are left out."""
        out: dict[int, float] = {}
        for t in plan.tiles:
            cost, area = self.sum(t.rect)
            if area > 0:
                out[t.index] = cost * t.rect.area / area
        return out

    def filled(self) -> CostMap:
        """The map with unmeasured cells given the mean measured density (nothing says cheap)."""
        if self.covered.all():
            return self
        area = _cell_areas(self.xs, self.ys)
        measured = float((area * self.covered).sum())
        mean = float((self.density * area).sum()) / measured if measured else 1.0
        density = np.where(self.covered, self.density, mean)
        return CostMap(self.xs, self.ys, density, np.ones_like(self.covered))

    def cut(self, rect: PixelRect, axis: int, share: float) -> float:
        """Where to cut ``rect`` across ``axis`` (0 = x) so ``share`` of its cost lies before it.

        The cumulative cost along the axis is piecewise linear (uniform cells), so the position
        is exact, not sampled; it comes back as a float pixel coordinate.
        """
        w, h = self._overlap(rect)
        if axis == 0:
            edges, lo, hi = self.xs, rect.x0, rect.x1
            per_px = (self.density * h[:, None]).sum(axis=0)  # seconds per pixel column
            size = w
        else:
            edges, lo, hi = self.ys, rect.y0, rect.y1
            per_px = (self.density * w[None, :]).sum(axis=1)
            size = h
        cells = per_px * size
        total = float(cells.sum())
        if total <= 0:
            return lo + share * (hi - lo)
        goal = share * total
        before = np.concatenate([[0.0], np.cumsum(cells)])
        i = int(np.searchsorted(before, goal, side="right")) - 1
        i = min(max(i, 0), len(cells) - 1)
        start = max(float(edges[i]), lo)
        if per_px[i] <= 0:
            return start
        return start + (goal - before[i]) / float(per_px[i])


def balanced_plan(
    width: int,
    height: int,
    parts: int,
    *,
    cost: CostMap | None = None,
    overscan: int = 0,
    min_tile: int = 16,
) -> TilePlan:
    """Cuts a frame into ``parts`` tiles of about equal estimated cost.

    Recursive bisection: the frame is cut across its longer side where the cost divides in
    the ratio of the parts on each side, and each side again, until every piece is one tile.
    This is what a frame on a pool of ``S`` slots wants: a few tiles per slot, each worth the
    same time, so the slots finish together and the per-task overhead is paid a few times,
    not hundreds. Without a ``cost`` (nothing measured yet) cost is taken as uniform, which
    gives tiles of equal area. No side drops below ``min_tile`` pixels (so a small frame may
    get fewer tiles than ``parts``).

    Raises:
        InvalidSpec: when ``parts`` or ``min_tile`` is below 1 (field ``tiles``).
    """
    _check_size(width, height)
    if parts < 1:
        raise InvalidSpec(f"{parts} tiles per frame: use 1 or more", field="tiles")
    if min_tile < 1:
        raise InvalidSpec(f"min_tile {min_tile} must be at least 1 px", field="min_tile")
    costs = cost.filled() if cost is not None else None
    rects: list[PixelRect] = []

    def bisect(rect: PixelRect, n: int) -> None:
        axis = 0 if rect.width >= rect.height else 1
        length = rect.width if axis == 0 else rect.height
        if n == 1 or length < 2 * min_tile:
            rects.append(rect)
            return
        first = n // 2
        lo = rect.x0 if axis == 0 else rect.y0
        at = costs.cut(rect, axis, first / n) if costs is not None else lo + length * first / n
        k = min(max(round(at), lo + min_tile), lo + length - min_tile)
        a, b = _cut_at(rect, axis, k)
        bisect(a, first)
        bisect(b, n - first)

    bisect(_rect(0, 0, width, height), parts)
    return TilePlan.from_rects(rects, width=width, height=height, overscan=overscan)
