"""OpenEXR for the farm: writing and reading frames and tile files, assembly, previews, checks.

Owns every OpenEXR and Pillow call of the farm (``io`` handles the bindings' pitfalls once).
Imports only ``farm.vocab`` and ``farm.errors`` from the farm; never the scheduler, Ray or the
database. Tiles are described structurally (anything with ``rect`` and ``render_rect``).
"""

from farm.exr.assemble import (
    TileCorrupt,
    TileLike,
    assemble_files,
    assemble_frame,
    read_tile,
    write_tile,
)
from farm.exr.check import FrameProblem, check_frame_file, check_frames
from farm.exr.io import CHANNEL_DTYPES, ExrImage, atomic_output, read_exr, write_exr
from farm.exr.preview import contact_sheet, linear_to_srgb8, preview_png

__all__ = [
    "CHANNEL_DTYPES",
    "ExrImage",
    "FrameProblem",
    "TileCorrupt",
    "TileLike",
    "assemble_files",
    "assemble_frame",
    "atomic_output",
    "check_frame_file",
    "check_frames",
    "contact_sheet",
    "linear_to_srgb8",
    "preview_png",
    "read_exr",
    "read_tile",
    "write_exr",
    "write_tile",
]
