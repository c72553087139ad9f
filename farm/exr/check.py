"""Checks of finished frame files: what a layer's last step verifies before a shot is reported done.

Each problem is one readable line, so a report can list them as they are.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from farm.errors import InvalidSpec
from farm.exr.io import StrPath, read_exr

__all__ = ["FrameProblem", "check_frame_file", "check_frames"]


@dataclass
class FrameProblem:
    """One thing wrong with one frame's file.

    Attributes:
        frame: the frame number, when known.
        path: the file checked (empty when no file was recorded).
        problem: what is wrong, in words.
    """

    frame: int | None
    path: str
    problem: str

    def __str__(self) -> str:
        where = f"frame {self.frame}: " if self.frame is not None else ""
        return f"{where}{self.path or '(no file)'}: {self.problem}"


def _bad_pixels(name: str, pixels: np.ndarray) -> str | None:
    """Describes NaN/inf pixels of one channel, or None when it is clean."""
    if not np.issubdtype(pixels.dtype, np.floating):
        return None
    # Z is +inf where no particle was hit: that is data, not damage.
    bad = np.isnan(pixels) | np.isneginf(pixels) if name == "Z" else ~np.isfinite(pixels)
    n = int(np.count_nonzero(bad))
    if not n:
        return None
    y, x = divmod(int(np.flatnonzero(bad)[0]), pixels.shape[1])
    kinds = "NaN or -inf" if name == "Z" else "NaN or inf"
    noun = "pixel" if n == 1 else "pixels"
    return f"{n} {kinds} {noun} in channel {name} (first at x={x}, y={y} of the data window)"


def check_frame_file(
    path: StrPath | None,
    *,
    width: int,
    height: int,
    channels: Iterable[str],
    frame: int | None = None,
) -> list[FrameProblem]:
    """Lists what is wrong with one frame file; an empty list means the frame is good.

    Checks, in order: the file exists and reads as OpenEXR; its display window is
    ``width x height`` and its data window the full frame; it has exactly the expected
    channels; no pixel is NaN or infinite. Depth (``Z``) may legitimately be ``+inf`` where
    nothing was hit, so only NaN and ``-inf`` count for ``Z``. Integer channels (``id``) cannot
    hold NaN and are not scanned.

    Args:
        path: the frame file, or None when none was recorded.
        width: expected frame width.
        height: expected frame height.
        channels: expected channel names.
        frame: the frame number, copied into each problem.
    """

    def problem(text: str) -> FrameProblem:
        return FrameProblem(frame=frame, path="" if path is None else str(path), problem=text)

    if path is None:
        return [problem("missing: no file was recorded for this frame")]
    if not os.path.exists(path):
        return [problem("file is missing")]
    try:
        image = read_exr(path)
    except InvalidSpec as exc:
        return [problem(f"unreadable: {exc.message}")]
    problems: list[FrameProblem] = []
    if (image.width, image.height) != (width, height):
        problems.append(
            problem(f"frame is {image.width}x{image.height}, expected {width}x{height}")
        )
    full = (0, 0, width, height)
    if image.data_window.as_tuple() != full:
        problems.append(
            problem(f"data window is {image.data_window.as_tuple()}, expected the full {full}")
        )
    expected = list(channels)
    missing = [c for c in expected if c not in image.channels]
    extra = sorted(set(image.channels) - set(expected))
    if missing:
        problems.append(problem(f"missing channels: {', '.join(missing)}"))
    if extra:
        problems.append(problem(f"unexpected channels: {', '.join(extra)}"))
    for name in sorted(image.channels):
        why = _bad_pixels(name, image.channels[name])
        if why:
            problems.append(problem(why))
    return problems


def check_frames(
    paths_by_frame: Mapping[int, StrPath | None],
    *,
    width: int,
    height: int,
    channels: Iterable[str],
) -> list[FrameProblem]:
    """Checks every frame of a layer, in frame order; an empty list means all are good."""
    expected = list(channels)
    problems: list[FrameProblem] = []
    for frame in sorted(paths_by_frame):
        problems += check_frame_file(
            paths_by_frame[frame], width=width, height=height, channels=expected, frame=frame
        )
    return problems
