"""Where predictions go: standard output, a file replaced atomically, or a stream (a device, a FIFO).

``--output PATH`` semantics:

- ``-`` (or ``/dev/stdout``): the real standard output, which the runner keeps for results only;
- a regular file, or a path that does not exist yet: written to a temporary file in the same
  folder and renamed over PATH once complete, so a failed run leaves PATH as it was. A symlink
  is followed: the file it points to is replaced and the link stays. An existing file keeps its
  mode; a new one gets 0666 less the umask, as ``open()`` would make it;
- a character device, a FIFO or a socket (``/dev/null``, ``<(...)``): opened and written as a
  stream, never replaced;
- a folder: refused (exit 2).

The temporary file is ``.predictions-PID-*``, held with an advisory lock (``flock``) while its run
lives, so a run killed with SIGKILL leaves one behind only until the next run writing into that
folder, which removes every one that no live run holds.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
import time
from types import TracebackType
from typing import IO

from .errors import BadInput

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, stale temporary files are kept
    fcntl = None  # type: ignore[assignment]

TEMP_PREFIX = ".predictions-"
# A temporary file of a live PID younger than this may belong to a run that has not locked it yet.
STALE_AFTER_SECONDS = 5.0
STDOUT_NAMES = ("-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1")


def claim_stdout() -> int:
    """Keep file descriptor 1 for results only.

    Duplicates the real stdout and points fd 1 (so ``print`` in model code, C libraries and child
    processes) at stderr. Returns the duplicate, where results are written.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    return saved


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _owner(name: str) -> int:
    try:
        return int(name[len(TEMP_PREFIX) :].split("-", 1)[0])
    except ValueError:
        return 0


def clean_stale(folder: str) -> list[str]:
    """Remove ``.predictions-*`` files in ``folder`` that no live run holds; returns their names."""
    if fcntl is None:
        return []
    removed = []
    try:
        names = [name for name in os.listdir(folder) if name.startswith(TEMP_PREFIX)]
    except OSError:
        return []
    for name in names:
        path = os.path.join(folder, name)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
                continue
            young = time.time() - info.st_mtime < STALE_AFTER_SECONDS
            if young and _alive(_owner(name)):
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a live run holds it
            try:
                if os.path.samestat(info, os.stat(path, follow_symlinks=False)):
                    os.unlink(path)
                    removed.append(name)
            except OSError:
                pass
        finally:
            os.close(fd)
    return removed


class Output:
    """A context manager giving the text stream predictions are written to (see module doc)."""

    def __init__(self, target: str | None, stdout_fd: int) -> None:
        self.target = target
        self.stdout_fd = stdout_fd
        self.handle: IO[str] | None = None
        self._final: str | None = None  # the regular file to replace, when atomic
        self._temp: str | None = None  # the temporary file
        self._mode = 0o666 & ~_umask()

    def check(self) -> None:
        """Refuse a target that cannot be written, before the model is loaded."""
        if self.target is None or self.target in STDOUT_NAMES:
            return
        try:
            info = os.stat(self.target)
        except FileNotFoundError:
            real = os.path.realpath(self.target)
            folder = os.path.dirname(real)
            if not os.path.isdir(folder):
                raise BadInput("cannot write output: folder %s does not exist" % folder).where(
                    self.target
                ) from None
            return
        except OSError as exc:
            raise BadInput("cannot write output: %s" % exc.strerror).where(self.target) from None
        if stat.S_ISDIR(info.st_mode):
            raise BadInput("cannot write output: it is a folder").where(self.target)

    def __enter__(self) -> IO[str]:
        target = self.target
        if target is None or target in STDOUT_NAMES:
            self.handle = open(self.stdout_fd, "w", encoding="utf-8", closefd=False)
            return self.handle
        self.check()
        try:
            info: os.stat_result | None = os.stat(target)
        except FileNotFoundError:
            info = None
        try:
            if info is not None and not stat.S_ISREG(info.st_mode):
                self.handle = open(target, "w", encoding="utf-8")  # a device or a FIFO: stream
                return self.handle
            self._final = os.path.realpath(target)
            if info is not None:
                self._mode = stat.S_IMODE(info.st_mode)
            self.handle = self._open_temp(os.path.dirname(self._final))
        except OSError as exc:
            raise BadInput("cannot write output: %s" % (exc.strerror or exc)).where(
                target
            ) from None
        return self.handle

    def _open_temp(self, folder: str) -> IO[str]:
        clean_stale(folder)
        prefix = "%s%d-" % (TEMP_PREFIX, os.getpid())
        fd, self._temp = tempfile.mkstemp(prefix=prefix, dir=folder)
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released by the kernel when this run ends
        return open(fd, "w", encoding="utf-8")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self.handle is not None
        try:
            self.handle.flush()
            if self._final is None:
                return
            self.handle.close()
            if exc_type is None:
                assert self._temp is not None and self._final is not None
                os.chmod(self._temp, self._mode)
                os.replace(self._temp, self._final)
                self._temp = None
        finally:
            if self._temp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(self._temp)
