"""Writing files safely: atomic replacement that keeps modes, and temporary folders that never
outlive their process.

* :func:`atomic_write` replaces a file by a temporary file + rename, so a reader never sees half
  of it and a crash leaves the old file. ``mkstemp`` creates files with mode 0600; the new file
  gets the old file's mode, or ``0666 & ~umask`` (0644 usually) when it is new — a lock written
  into a model folder must stay readable by whoever could read the model.
* :func:`temporary_directory` is ``tempfile.TemporaryDirectory`` with the owner's PID in the
  name (``envbuild-<pid>-<purpose>-XXXX``): a folder whose owner was killed (SIGKILL runs no
  cleanup) is removed by the next envbuild process that makes one (:func:`sweep_temporary`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

TEMP_PREFIX = "envbuild-"
_OWNED = re.compile(r"^envbuild-(\d+)-")


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: Path, data: bytes | str, *, mode: int | None = None) -> None:
    """Write ``path`` by temporary file + rename; keep its mode (or ``mode``, or the umask's)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode is None:
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except OSError:
            mode = 0o666 & ~current_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def sweep_temporary(folder: str | os.PathLike[str] | None = None) -> int:
    """Remove envbuild's temporary folders whose owner process is gone; returns how many."""
    base = Path(folder or tempfile.gettempdir())
    removed = 0
    try:
        entries = list(os.scandir(base))
    except OSError:
        return 0
    for entry in entries:
        match = _OWNED.match(entry.name)
        if match is None or _alive(int(match.group(1))):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)
            removed += 1
    return removed


@contextlib.contextmanager
def temporary_directory(
    purpose: str, *, folder: str | os.PathLike[str] | None = None
) -> Iterator[Path]:
    """A private temporary folder (mode 0700) removed on exit; stale ones of dead owners are swept
    first."""
    sweep_temporary(folder)
    path = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-{purpose}-", dir=folder))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def write_output(path: Path, data: bytes) -> None:
    """Write a command's output (``predict -o``) where the user pointed, without damaging it.

    A regular file (or a new one) is replaced atomically, keeping its mode; a symlink is written
    through to the file it points to (the link stays a link); a device, FIFO or socket
    (``/dev/null``, ``/dev/stdout``, a pipe) is written as a stream, never replaced; a directory
    is refused.
    """
    from envbuild.errors import UsageError

    target = Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and stat.S_ISDIR(mode):
        raise UsageError("is a directory, expected a file", path=path, field="-o")
    if mode is not None and not stat.S_ISREG(mode):
        with open(target, "wb") as stream:  # a device, FIFO or socket: a stream
            stream.write(data)
        return
    atomic_write(target, data)
