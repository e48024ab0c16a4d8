"""The only module that starts subprocesses (uv, pip, the runner, interpreters).

Why one home: every external command needs the same care — full output kept in a log file whose
path the error message prints, only the tail shown on failure, credentials redacted from anything
written, no shell, and the same environment tweaks (never let uv download an interpreter unless
asked). Callers pass the error class to raise so the exit code matches the stage that failed.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from envbuild.errors import BuildError, EnvbuildError
from envbuild.redact import redact

TAIL_LINES = 15
__all__ = [
    "Completed",
    "base_env",
    "call",
    "redact",
    "replace_process",
    "run",
    "run_together",
    "uv_bin",
]


@dataclass(frozen=True)
class Completed:
    """A finished command: its output (stdout as text) and where the full log is."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    log_path: Path | None
    seconds: float

    def tail(self, lines: int = TAIL_LINES) -> str:
        text = (self.stderr.strip() or self.stdout.strip()).splitlines()
        return "\n".join(text[-lines:])


def logs_dir() -> Path:
    from envbuild.cache import cache_root

    path = cache_root() / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def uv_bin() -> str:
    """The uv executable envbuild depends on (the ``uv`` PyPI package), else one on PATH."""
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        import shutil

        found = shutil.which("uv")
        if found is None:
            raise BuildError(
                "uv is not installed", hint="pip install uv (envbuild depends on it)"
            ) from None
        return found


def base_env(
    extra: Mapping[str, str] | None = None, *, allow_downloads: bool = False
) -> dict[str, str]:
    """The environment for child processes: ours, minus what would change their behaviour."""
    env = dict(os.environ)
    for key in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "CONDA_PREFIX"):
        env.pop(key, None)
    if not allow_downloads:
        env["UV_PYTHON_DOWNLOADS"] = "never"
    if extra:
        env.update(extra)
    return env


def run(
    args: Sequence[str | os.PathLike[str]],
    *,
    what: str,
    error: type[EnvbuildError] = BuildError,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float | None = None,
    input_text: str | None = None,
    on_line: Callable[[str], None] | None = None,
    hint: str | None = None,
    log: bool = True,
) -> Completed:
    """Run ``args`` (no shell); keep a log; raise ``error`` with the output's tail on failure.

    ``what`` names the step for messages and the log file ("resolving", "installing numpy").
    ``on_line`` receives stderr lines as they arrive (for progress); stdout is always captured.
    """
    argv = tuple(os.fspath(a) for a in args)
    started = time.monotonic()
    env_map = dict(env) if env is not None else base_env()
    try:
        if on_line is None:
            proc = subprocess.run(
                argv,
                cwd=cwd,
                env=env_map,
                input=input_text,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            stdout, stderr, code = proc.stdout, proc.stderr, proc.returncode
        else:
            stdout, stderr, code = _run_streaming(argv, cwd, env_map, input_text, on_line, timeout)
    except FileNotFoundError:
        raise error(f"{what}: command not found: {argv[0]}", hint=hint) from None
    except subprocess.TimeoutExpired:
        raise error(f"{what}: timed out after {timeout:.0f} s", hint=hint) from None
    seconds = time.monotonic() - started
    log_path = _write_log(what, argv, code, stdout, stderr, seconds) if log else None
    done = Completed(argv, code, stdout, stderr, log_path, seconds)
    if check and code != 0:
        tail = redact(done.tail())
        raise error(
            f"{what} failed (exit {code})" + (f":\n{tail}" if tail else ""),
            hint=hint,
            log_path=log_path,
        )
    return done


def run_together(
    commands: Sequence[Sequence[str | os.PathLike[str]]],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 15,
) -> list[Completed | None]:
    """Run short, independent commands at the same time (no logs, no checks): what interpreter
    discovery asks each candidate, where one at a time costs a start-up each (~25 ms here, for
    ten interpreters). One result per command, in order; None for one that could not start or
    did not finish within ``timeout`` (it is killed)."""
    env_map = dict(env) if env is not None else base_env()
    started = time.monotonic()
    children: list[tuple[tuple[str, ...], subprocess.Popen[str] | None]] = []
    for command in commands:
        argv = tuple(os.fspath(a) for a in command)
        try:
            child: subprocess.Popen[str] | None = subprocess.Popen(
                argv,
                env=env_map,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        except OSError:
            child = None
        children.append((argv, child))
    results: list[Completed | None] = []
    for argv, child in children:
        if child is None:
            results.append(None)
            continue
        left = max(0.1, timeout - (time.monotonic() - started))
        try:
            stdout, stderr = child.communicate(timeout=left)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            results.append(None)
            continue
        seconds = time.monotonic() - started
        results.append(Completed(argv, child.returncode, stdout, stderr, None, seconds))
    return results


def _run_streaming(
    argv: tuple[str, ...],
    cwd: str | os.PathLike[str] | None,
    env: Mapping[str, str],
    input_text: str | None,
    on_line: Callable[[str], None],
    timeout: float | None,
) -> tuple[str, str, int]:
    import threading

    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    out_chunks: list[str] = []
    err_lines: list[str] = []

    def read_stdout() -> None:
        assert proc.stdout is not None
        out_chunks.append(proc.stdout.read())

    reader = threading.Thread(target=read_stdout, daemon=True)
    reader.start()
    if input_text is not None and proc.stdin is not None:
        proc.stdin.write(input_text)
        proc.stdin.close()
    assert proc.stderr is not None
    for line in proc.stderr:
        err_lines.append(line)
        on_line(line.rstrip("\n"))
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    reader.join()
    return "".join(out_chunks), "".join(err_lines), code


def _write_log(
    what: str, argv: Sequence[str], code: int, stdout: str, stderr: str, seconds: float
) -> Path | None:
    try:
        slug = re.sub(r"[^a-zA-Z0-9]+", "-", what).strip("-")[:40] or "command"
        path = logs_dir() / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{slug}.log"
        body = (
            f"$ {redact(shlex.join(argv))}\n# exit {code} after {seconds:.2f} s\n"
            f"## stdout\n{redact(stdout)}\n## stderr\n{redact(stderr)}\n"
        )
        path.write_text(body, encoding="utf-8")
        return path
    except OSError:  # a log is a convenience; never fail the command because of it
        return None


def python_exe() -> str:
    """The interpreter running envbuild (for helper subprocesses that need envbuild's deps)."""
    return sys.executable


def call(
    args: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> int:
    """Run a command with our stdin/stdout/stderr (the runner's output is the user's output)."""
    import signal

    argv = [os.fspath(a) for a in args]
    child = subprocess.Popen(argv, env=dict(env) if env is not None else None, cwd=cwd)

    def forward(signum: int, _frame: object) -> None:
        child.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        while True:
            try:
                return child.wait()
            except KeyboardInterrupt:
                continue  # the terminal sent SIGINT to the child too; let it finish its way
    finally:
        signal.signal(signal.SIGTERM, previous)


def replace_process(args: Sequence[str | os.PathLike[str]], *, env: Mapping[str, str]) -> None:
    """Become the command (``serve``, ``run``): signals, exit code and terminal go straight to it."""
    argv = [os.fspath(a) for a in args]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, dict(env))
