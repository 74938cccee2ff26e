"""Writing files so that no half-written file is ever left behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import CodecLabError


def write_atomically(path: str | Path, write) -> None:
    """Call ``write(tmp_path)`` then move the file into place, so no half-written file remains.
    A folder, or a place that cannot be written, is a :class:`CodecLabError`."""
    path = Path(path)
    if path.is_dir():
        raise CodecLabError(f"cannot write {path}: it is a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise CodecLabError(f"cannot write {path}: {err.strerror or type(err).__name__}") from None
    os.close(fd)
    try:
        write(tmp)
        # mkstemp creates 0600; give the file the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
