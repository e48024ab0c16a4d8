"""HTTP scoring server for the runtime: workers, scoring threads, shutdown; the HTTP/1.1 protocol
itself is ``connection.py``, model logic the app object's.

Standard library only, because it runs inside the model's environment, which has no web framework
of ours.

Routes (as ``mlflow models serve``, see ``openapi.py``): ``GET /ping`` and ``/health`` (also
``HEAD``), ``GET /version`` (MLflow's bare version string), ``GET /metadata`` (the model's
status, model and runtime versions as JSON), ``GET /openapi.json``, ``POST /invocations``.

Processes: with one worker, the process serves while the model loads in a background thread, and
``/ping`` answers 503 until it is ready. With ``workers > 1`` the parent binds the socket and forks
that many workers (pre-fork), each of which loads the model *before* it accepts a connection (as
MLflow's uvicorn workers do): a request can never reach a worker that is still loading, so a 200
on ``/ping`` means every connection is served. The parent restarts a worker that dies.

SIGTERM (or SIGINT) stops accepting, closes idle keep-alive connections at once, gives requests
whose head or body is still arriving a short grace (``BODY_GRACE_SECONDS``), lets requests being
scored finish (``GRACE_SECONDS`` at most), and exits 0.

The ``app`` passed to :func:`serve` provides ``load()``, ``invoke(body, kind)``,
``parquet_problem()``, ``version``, ``metadata()`` and ``openapi()``; its errors carry
``http_status`` and ``payload(debug)`` (``errors.RunnerError``).
"""

from __future__ import annotations

import contextlib
import os
import queue
import selectors
import signal
import socket
import sys
import threading
import time
import traceback
from typing import Any

from .connection import IDLE, RECEIVING, Connection, log
from .errors import EXIT_MODEL, EXIT_OK, UsageError, describe_exception

GRACE_SECONDS = 30.0
BODY_GRACE_SECONDS = 3.0
IDLE_TIMEOUT_SECONDS = 120.0
RESTART_BACKOFF_SECONDS = 1.0


def _debug() -> bool:
    return os.environ.get("ENVBUILD_DEBUG") == "1"


def scoring_threads() -> int:
    """``ENVBUILD_THREADS`` (scoring threads per worker), checked by the runner's CLI."""
    try:
        return max(1, int(os.environ.get("ENVBUILD_THREADS") or 1))
    except ValueError:
        return 1


class Job:
    """One request body to score, handed from its connection's thread to a scoring thread."""

    __slots__ = ("body", "done", "error", "kind", "result")

    def __init__(self, body: bytes, kind: str) -> None:
        self.body = body
        self.kind = kind
        self.done = threading.Event()
        self.result = b""
        self.error: BaseException | None = None


class Worker:
    """One process's model, connections, scoring threads and shutdown.

    Connections have a thread each (reading and writing), but scoring goes through a FIFO queue
    served by ``ENVBUILD_THREADS`` threads (default 1): requests are scored in arrival order, so
    32 keep-alive clients do not make 32 threads fight for the GIL in a random order, which
    costs throughput and makes the slowest answers several times slower than the median.
    """

    def __init__(self, app: Any, max_body: int) -> None:
        self.app = app
        self.max_body = max_body
        self.ready = threading.Event()
        self.load_error: str | None = None
        self.stopping = threading.Event()
        self.access_log = os.environ.get("ENVBUILD_ACCESS_LOG", "1") != "0"
        self.debug = _debug()
        self.pid = os.getpid()
        self._cond = threading.Condition()
        self._connections: dict[Connection, str] = {}
        self._jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self._scorers = scoring_threads()
        self._started = False
        self._start_lock = threading.Lock()

    # ---- scoring
    def score(self, body: bytes, kind: str) -> bytes:
        """``app.invoke(body, kind)`` on a scoring thread, in arrival order."""
        if not self._started:
            with self._start_lock:
                if not self._started:
                    for number in range(self._scorers):
                        thread = threading.Thread(
                            target=self._score_jobs, name="score-%d" % number, daemon=True
                        )
                        thread.start()
                    self._started = True
        job = Job(body, kind)
        self._jobs.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    def _score_jobs(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                job.result = self.app.invoke(job.body, job.kind)
            except BaseException as exc:
                job.error = exc
            finally:
                job.done.set()

    # ---- connections
    def add(self, conn: Connection) -> bool:
        with self._cond:
            if self.stopping.is_set():
                return False
            self._connections[conn] = IDLE
            return True

    def set_phase(self, conn: Connection, phase: str) -> None:
        with self._cond:
            if conn in self._connections:
                self._connections[conn] = phase
                self._cond.notify_all()

    def remove(self, conn: Connection) -> None:
        with self._cond:
            self._connections.pop(conn, None)
            self._cond.notify_all()

    def drain(self) -> bool:
        """Close idle connections now, receiving ones after a grace, wait for busy ones.

        Returns False if requests were still being scored after ``GRACE_SECONDS``.
        """
        self.stopping.set()
        started = time.monotonic()
        body_deadline = started + BODY_GRACE_SECONDS
        busy_deadline = started + GRACE_SECONDS
        with self._cond:
            while self._connections:
                now = time.monotonic()
                for conn, phase in list(self._connections.items()):
                    if phase == IDLE or (phase == RECEIVING and now >= body_deadline):
                        conn.abort()
                if now >= busy_deadline:
                    return False
                receiving = any(p == RECEIVING for p in self._connections.values())
                until = body_deadline if receiving and now < body_deadline else busy_deadline
                self._cond.wait(max(0.01, until - now))
        return True

    def status(self) -> str:
        if self.ready.is_set():
            return "ok"
        return "failed" if self.load_error else "loading"


class Acceptor:
    """Accepts connections on a (possibly shared) listening socket and starts their threads."""

    def __init__(self, sock: socket.socket, worker: Worker) -> None:
        self.sock = sock
        self.worker = worker
        self._wake_r, self._wake_w = os.pipe()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="accept", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join()
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)

    def _loop(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self.sock, selectors.EVENT_READ)
        selector.register(self._wake_r, selectors.EVENT_READ)
        try:
            while True:
                for key, _ in selector.select():
                    if key.fileobj == self._wake_r:
                        return
                    self._accept()
        finally:
            selector.close()

    def _accept(self) -> None:
        try:
            conn, address = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return  # another worker took it
        except OSError as exc:
            log("error: accept failed: %s" % exc)
            time.sleep(0.05)  # out of file descriptors: do not spin
            return
        conn.setblocking(True)
        conn.settimeout(IDLE_TIMEOUT_SECONDS)
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = Connection(conn, address, self.worker)
        if not self.worker.add(connection):
            conn.close()
            return
        threading.Thread(target=connection.run, name="conn", daemon=True).start()


def bind(host: str, port: int) -> socket.socket:
    """Bind and listen (non-blocking, so that a worker losing the accept race carries on).

    A port in use or a host that does not resolve is a usage error naming host:port (exit 2).
    """
    try:
        infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
        family, _, _, _, address = infos[0]
        sock = socket.create_server(address[:2], family=family, backlog=128)
    except OSError as exc:
        if isinstance(exc, socket.gaierror) or not exc.errno:
            reason = exc.strerror or str(exc)
        else:  # create_server appends the address to strerror; it is in the message already
            reason = os.strerror(exc.errno)
        reason = reason.lower()
        raise UsageError("cannot listen on %s:%s: %s" % (host, port, reason)) from None
    sock.setblocking(False)
    return sock


def _url(host: str, port: int) -> str:
    return "http://%s:%d" % ("[%s]" % host if ":" in host else host, port)


def _load(worker: Worker, changed: threading.Event) -> None:
    try:
        worker.app.load()
    except Exception as exc:
        worker.load_error = str(exc) if getattr(exc, "exit_code", None) else describe_exception(exc)
        log("error: %s" % worker.load_error)
        if worker.debug:
            traceback.print_exc()
    else:
        worker.ready.set()
        log("model loaded (pid %d)" % os.getpid())
    changed.set()


def run_worker(
    sock: socket.socket,
    app: Any,
    max_body: int,
    parent_pid: int | None = None,
    accept_while_loading: bool = True,
) -> tuple[int, bool]:
    """Serve until SIGTERM/SIGINT (or the parent's death); (exit code, model still loading).

    The exit code is 5 when the model failed to load, else 0 once requests in flight have
    finished (or GRACE_SECONDS passed).
    """
    changed = threading.Event()
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            _hard_exit(130)  # a second Ctrl-C does not wait for requests in flight
        stop.set()
        changed.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})

    worker = Worker(app, max_body)
    acceptor = Acceptor(sock, worker)
    loader = threading.Thread(target=_load, args=(worker, changed), name="load", daemon=True)
    if accept_while_loading:
        acceptor.start()
    loader.start()
    while not stop.is_set():
        changed.wait(1.0 if parent_pid is not None else None)
        changed.clear()
        if worker.load_error:
            break
        if worker.ready.is_set():
            acceptor.start()
        if parent_pid is not None and os.getppid() != parent_pid:
            log("worker %d: parent process is gone; stopping" % os.getpid())
            break
    # Stopping: a repeated SIGTERM must not kill the process half-way (interpreter shutdown
    # restores default handlers, ignored signals stay ignored).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    acceptor.stop()
    if not worker.drain():
        log(
            "worker %d: requests still running after %.0fs; stopping anyway"
            % (os.getpid(), GRACE_SECONDS)
        )
    code = EXIT_MODEL if worker.load_error else EXIT_OK
    return code, loader.is_alive()


def _exit_code(status: int) -> int:
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return 1


def _hard_exit(code: int) -> None:
    """End a process without running interpreter shutdown (forked children, or a load in flight)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def supervise(sock: socket.socket, app: Any, max_body: int, workers: int) -> int:
    """Pre-fork: run ``workers`` processes on ``sock``, restart those that die, stop them on
    SIGTERM/SIGINT. Returns 0, or 5 if a worker could not load the model."""
    parent = os.getpid()
    children: dict[int, float] = {}
    stopping: set[str] = set()
    result = [EXIT_OK]
    signals = {signal.SIGTERM, signal.SIGINT}

    def stop_all(signum: Any = None, frame: Any = None) -> None:
        if os.getpid() != parent:
            return
        stopping.add("yes")
        for pid in list(children):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)

    def spawn() -> None:
        # Signals are blocked across fork so that neither process handles one half-set-up.
        signal.pthread_sigmask(signal.SIG_BLOCK, signals)
        try:
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    code = run_worker(
                        sock, app, max_body, parent_pid=parent, accept_while_loading=False
                    )[0]
                except BaseException:
                    traceback.print_exc()
                finally:
                    _hard_exit(code)
            children[pid] = time.monotonic()
            log("worker %d started" % pid)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)

    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)
    for _ in range(workers):
        spawn()
    while children:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        started = children.pop(pid, None)
        if started is None:
            continue
        code = _exit_code(status)
        if stopping:
            continue
        if code == EXIT_MODEL:
            log("worker %d could not load the model; stopping" % pid)
            result[0] = EXIT_MODEL
            stop_all()
            continue
        log("worker %d exited with %s; starting another" % (pid, code))
        if time.monotonic() - started < RESTART_BACKOFF_SECONDS:
            time.sleep(RESTART_BACKOFF_SECONDS)  # a worker dying at once must not spin
        if not stopping:
            spawn()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock.close()
    return result[0]


def serve(app: Any, host: str, port: int, workers: int = 1, max_body: int = 100 << 20) -> int:
    """Bind, announce ``listening on http://HOST:PORT`` on stderr, and serve until stopped."""
    sock = bind(host, port)
    log("listening on %s" % _url(host, sock.getsockname()[1]))
    if workers > 1 and not hasattr(os, "fork"):
        log("warning: this platform cannot fork; serving with one worker")
        workers = 1
    if workers > 1:
        return supervise(sock, app, max_body, workers)
    code, loading = run_worker(sock, app, max_body)
    if loading:
        _hard_exit(code)
    return code
