"""Writing a client file whole or not at all."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_text_atomically(
    path: Path, text: str, *, private: bool = True, durable: bool = False
) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``: a
    crash or Ctrl-C leaves the old file or the new one, never half of one.

    Args:
        private: keep the new file readable by its owner only (``mkstemp``'s 0600: tokens,
            state); else the mode a plain new file gets under the umask.
        durable: fsync the bytes before the rename (credentials: never an empty file after a
            power cut).
    """
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            if durable:
                file.flush()
                os.fsync(file.fileno())
        if not private:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
