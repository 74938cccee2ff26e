"""Reading and writing files safely: inputs must be regular files (a FIFO or a device would block
or never end), outputs go only to regular files or new paths, and no half-written file is ever
left behind, whatever stops the write (an error, a full disk, Ctrl-C, SIGTERM or SIGHUP)."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import tempfile
import threading
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from .errors import CodecLabError


def _special_kind(mode: int) -> str | None:
    """What a non-regular, non-folder file is (``None`` for a regular file or a folder)."""
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def check_input(path: str | Path, what: str = "file", folder: bool = False) -> Path:
    """``path`` if it is a regular file (or, with ``folder``, a folder); else a :class:`CodecLabError`.
    Checked with ``os.stat`` before any open, so a FIFO or a device is refused instead of blocking."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise CodecLabError(f"{what} not found: {path}") from None
    except OSError as err:
        raise CodecLabError(f"cannot read {path}: {err.strerror or type(err).__name__}") from None
    if stat.S_ISDIR(mode) and not folder:
        raise CodecLabError(f"cannot read {path}: it is a folder")
    kind = _special_kind(mode)
    if kind is not None:
        raise CodecLabError(f"cannot read {path}: it is {kind}, not a regular file")
    return path


def check_output(path: str | Path, folder: bool = False) -> None:
    """Refuse an output that exists and is not a regular file (or, with ``folder``, a folder):
    a device, FIFO or socket (or a symlink to one) would be replaced or written forever."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode  # follows symlinks: a link to /dev/null is a device
    except OSError:
        return  # a new path (or a dangling link): the rename creates it
    if stat.S_ISDIR(mode) and not folder:
        raise CodecLabError(f"cannot write {path}: it is a folder")
    if stat.S_ISREG(mode) and folder:
        raise CodecLabError(f"cannot write {path}: it is a file, not a folder")
    kind = _special_kind(mode)
    if kind is not None:
        raise CodecLabError(f"cannot write {path}: it is {kind}; outputs are regular files or new paths")


@contextmanager
def _write_errors(path: Path, staged: Path, remove: Callable[[Path], None]):
    """Remove ``staged`` on any exception; an ``OSError`` (disk full, permission) becomes one line."""
    try:
        yield
    except BaseException as err:
        remove(staged)
        if isinstance(err, OSError):
            raise CodecLabError(f"cannot write {path}: {err.strerror or str(err) or type(err).__name__}") from None
        raise


def _plain_permissions(staged: Path, base: int) -> None:
    """mkstemp and mkdtemp create owner-only entries; give the permissions a plain create would."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staged, base & ~umask)


def _staging_place(path: Path, make: Callable[..., str]) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return Path(make(dir=path.parent, prefix=f".{path.name}."))
    except OSError as err:
        raise CodecLabError(f"cannot write {path}: {err.strerror or type(err).__name__}") from None


def _new_temp_file(**kwargs) -> str:
    fd, tmp = tempfile.mkstemp(suffix=".tmp", **kwargs)
    os.close(fd)
    return tmp


def write_atomically(path: str | Path, write: Callable[[str], object]) -> None:
    """Call ``write(tmp_path)`` then move the file into place, so no half-written file remains.
    A folder, a device, FIFO or socket, or a place that cannot be written is a :class:`CodecLabError`."""
    path = Path(path)
    check_output(path)
    tmp = _staging_place(path, _new_temp_file)
    with _write_errors(path, tmp, lambda staged: staged.unlink(missing_ok=True)):
        write(str(tmp))
        _plain_permissions(tmp, 0o666)
        os.replace(tmp, path)


def check_new_folder(path: str | Path) -> None:
    """Refuse an output folder that :func:`write_folder_atomically` would refuse: not a folder, or
    one with files in it (a caller with slow work before the write checks first)."""
    path = Path(path)
    check_output(path, folder=True)
    if path.exists() and any(path.iterdir()):
        raise CodecLabError(f"output folder {path} exists and is not empty")


def write_folder_atomically(path: str | Path, write: Callable[[Path], object]) -> None:
    """Call ``write(staging_folder)`` then rename the folder to ``path``, which must be new or an
    empty folder, so a partly written folder never appears under ``path``."""
    path = Path(path)
    check_new_folder(path)
    staging = _staging_place(path, tempfile.mkdtemp)
    with _write_errors(path, staging, lambda staged: shutil.rmtree(staged, ignore_errors=True)):
        write(staging)
        _plain_permissions(staging, 0o777)
        if path.exists():
            path.rmdir()
        staging.rename(path)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the program is, so every ``finally`` and cleanup runs as for
    Ctrl-C (a KeyboardInterrupt, so code that stops on Ctrl-C stops on these too)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_terminated(signum: int, _frame) -> None:
    raise Terminated(signum)


@contextmanager
def terminations_raise():
    """Within the block, SIGTERM and SIGHUP raise :class:`Terminated`, so temporaries are removed
    as on Ctrl-C; the previous handlers come back after it (signals are the main thread's only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _raise_terminated) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
