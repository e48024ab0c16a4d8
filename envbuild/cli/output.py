"""Everything envbuild prints: results as text or ``--json``, errors, warnings and progress.

Rules: results go to standard output, everything else (warnings, progress, errors) to standard
error; progress is drawn only when standard error is a terminal, so pipes and CI logs stay clean.
With ``--json`` the result is exactly one JSON document on standard output, errors included.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from envbuild.errors import EnvbuildError, ExitCode
from envbuild.redact import redact

if TYPE_CHECKING:
    from envbuild.sources import Provenance


def shown_path(path: object) -> str:
    """A path relative to the current folder when that is shorter and does not climb out."""
    text = str(path)
    try:
        rel = os.path.relpath(text)
    except ValueError:
        return text
    return rel if not rel.startswith("..") and len(rel) < len(text) else text


def source_lines(source: Provenance) -> list[str]:
    """Where a model given as a URI came from (nothing for a folder: its path says it)."""
    if source.is_local:
        return []
    resolved = source.resolved_uri if source.resolved_uri not in (None, source.uri) else None
    moving = "  (resolved now)" if source.moving else ""
    lines = [f"source       {source.uri}" + (f" -> {resolved}" if resolved else "") + moving]
    if source.registered_name:
        lines.append(f"registered   {source.registered_name} version {source.version or '-'}")
    if source.tracking_uri:
        lines.append(f"tracking     {source.tracking_uri}")
    if source.registry_uri and source.registry_uri != source.tracking_uri:
        lines.append(f"registry     {source.registry_uri}")
    return lines


class Output:
    """Renders results and errors for one command invocation."""

    def __init__(
        self,
        *,
        json_mode: bool = False,
        debug: bool = False,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
    ) -> None:
        self.json_mode = json_mode
        self.debug = debug
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self._progress_open = False

    @property
    def interactive(self) -> bool:
        return self.stderr.isatty() and os.environ.get("CI", "").lower() not in ("1", "true")

    # results -------------------------------------------------------------------------------
    def result(self, data: dict[str, Any], text: Callable[[], str] | str | None = None) -> None:
        """Print a command's result: ``data`` as JSON, or its text rendering."""
        self.clear_progress()
        if self.json_mode:
            self.stdout.write(redact(json.dumps(data, indent=2, sort_keys=False, default=str)))
            self.stdout.write("\n")
        elif text is not None:
            body = redact(text() if callable(text) else text)
            self.stdout.write(body if body.endswith("\n") else body + "\n")
        self.stdout.flush()

    def warn(self, message: str) -> None:
        """A warning on standard error (also present in the JSON result where relevant)."""
        if self.json_mode:
            return
        self.clear_progress()
        self.stderr.write(f"warning: {redact(message)}\n")

    def note(self, message: str) -> None:
        """A decision worth one line on standard error (also in the JSON result)."""
        if self.json_mode:
            return
        self.clear_progress()
        self.stderr.write(f"note: {message}\n")

    def info(self, message: str) -> None:
        """A status line on standard error, shown on terminals only."""
        if self.json_mode or not self.interactive:
            return
        self.clear_progress()
        self.stderr.write(f"{redact(message)}\n")

    def ask(self, question: str) -> str:
        """A question on the terminal (only asked when ``interactive``)."""
        self.clear_progress()
        self.stderr.write(question)
        self.stderr.flush()
        return input()

    def progress(self, message: str) -> None:
        """A transient one-line status, redrawn in place on a terminal; silent otherwise."""
        if self.json_mode or not self.interactive:
            return
        width = 100
        self.stderr.write("\r\x1b[2K" + redact(message)[:width])
        self.stderr.flush()
        self._progress_open = True

    def clear_progress(self) -> None:
        if self._progress_open:
            self.stderr.write("\r\x1b[2K")
            self.stderr.flush()
            self._progress_open = False

    # a runner's own output, relayed (a container's, which does not share our descriptors) --
    def streams(self) -> _Relay:
        """Where an environment relays its runner's output: our stdout and stderr, unchanged."""
        return _Relay(self)

    # errors --------------------------------------------------------------------------------
    def error(self, exc: EnvbuildError) -> int:
        self.clear_progress()
        if self.json_mode:
            data = exc.to_dict()
            if exc.path is not None:
                data["path"] = shown_path(exc.path)
            data["message"] = self._message(exc)
            self.stdout.write(redact(json.dumps(data, indent=2)))
            self.stdout.write("\n")
        else:
            self.stderr.write(f"error: {self._message(exc)}\n")
            if exc.hint:
                self.stderr.write(f"hint: {redact(exc.hint)}\n")
            if exc.log_path:
                self.stderr.write(f"log: {shown_path(exc.log_path)}\n")
        return int(exc.exit_code)

    @staticmethod
    def _message(exc: EnvbuildError) -> str:
        return exc.format(shown_path)

    def guard(self, func: Callable[[], int]) -> int:
        """Run a command; turn envbuild errors into one line + exit code, bugs into exit 1."""
        try:
            return func()
        except EnvbuildError as exc:
            if self.debug:
                traceback.print_exc(file=self.stderr)
            return self.error(exc)
        except KeyboardInterrupt:
            self.clear_progress()
            self.stderr.write("error: interrupted\n")
            return 130
        except BrokenPipeError:
            return int(ExitCode.OK)
        except Exception as exc:  # a bug: say so, traceback only with --debug
            self.clear_progress()
            if self.debug:
                traceback.print_exc(file=self.stderr)
            else:
                self.stderr.write(
                    f"error: internal error: {type(exc).__name__}: {exc}\n"
                    "hint: this is a bug in envbuild; run again with --debug for the traceback\n"
                )
            return int(ExitCode.BUG)


class _Relay:
    """Bytes of a runner's stdout/stderr, written through as a child process would write them."""

    def __init__(self, out: Output) -> None:
        self.out = out

    def stdout(self, data: bytes) -> None:
        self.out.clear_progress()
        self.out.stdout.flush()
        buffer = getattr(self.out.stdout, "buffer", None)
        if buffer is not None:
            buffer.write(data)
            buffer.flush()
        else:
            self.out.stdout.write(data.decode("utf-8", errors="replace"))
            self.out.stdout.flush()

    def stderr(self, data: bytes) -> None:
        self.out.clear_progress()
        self.out.stderr.flush()
        buffer = getattr(self.out.stderr, "buffer", None)
        if buffer is not None:
            buffer.write(data)
            buffer.flush()
        else:
            self.out.stderr.write(data.decode("utf-8", errors="replace"))
            self.out.stderr.flush()
