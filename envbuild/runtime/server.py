"""HTTP scoring server for the runtime: the transport only; model logic stays in the app object.

Standard library only, because it runs inside the model's environment, which has no web framework
of ours. HTTP/1.1 with keep-alive, one thread per connection, and every response written with one
``sendall`` on a ``TCP_NODELAY`` socket: a response in several small sends waits on Nagle's
algorithm against the client's delayed ACK (40 ms per request). Every answer the transport gives
itself (a garbage request line, headers too large, a body over the limit) is JSON, like the
application's errors.

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
import io
import json
import os
import queue
import selectors
import signal
import socket
import sys
import threading
import time
import traceback
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, cast

from .errors import EXIT_MODEL, EXIT_OK, UsageError, describe_exception

GRACE_SECONDS = 30.0
BODY_GRACE_SECONDS = 3.0
IDLE_TIMEOUT_SECONDS = 120.0
MAX_LINE = 65536
MAX_HEADERS = 100
DRAIN_LIMIT_BYTES = 64 * 1024 * 1024
DRAIN_SECONDS = 10.0
RESTART_BACKOFF_SECONDS = 1.0

JSON_TYPE = "application/json"
CONTENT_KINDS = {
    "application/json": "json",
    "text/csv": "csv",
    "application/vnd.apache.parquet": "parquet",
}
SUPPORTED_TYPES = ", ".join(CONTENT_KINDS)
PROBES = ("/ping", "/health")
GET_PATHS = ("/ping", "/health", "/version", "/metadata", "/openapi.json")
SERVER_NAME = "envbuild-runtime"

# Phases of a connection, for shutdown: waiting for a request, receiving one, scoring one.
IDLE, RECEIVING, BUSY = "idle", "receiving", "busy"


def _log(message: str) -> None:
    try:
        sys.stderr.write("%s\n" % message)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _debug() -> bool:
    return os.environ.get("ENVBUILD_DEBUG") == "1"


def scoring_threads() -> int:
    """``ENVBUILD_THREADS`` (scoring threads per worker), checked by the runner's CLI."""
    try:
        return max(1, int(os.environ.get("ENVBUILD_THREADS") or 1))
    except ValueError:
        return 1


_date_cache: list[Any] = [0, ""]


def http_date() -> str:
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0], _date_cache[1] = now, formatdate(now, usegmt=True)
    return str(_date_cache[1])


def error_body(error_code: str, message: str) -> bytes:
    return json.dumps({"error_code": error_code, "message": message}).encode()


class HttpError(Exception):
    """An answer the transport gives itself; the connection is closed after it by default."""

    def __init__(
        self,
        status: int,
        message: str,
        error_code: str = "BAD_REQUEST",
        headers: tuple[tuple[str, str], ...] = (),
        close: bool = True,
    ) -> None:
        Exception.__init__(self, message)
        self.status = status
        self.message = message
        self.error_code = error_code
        self.headers = headers
        self.close = close


def content_kind(header: str | None) -> tuple[str | None, str]:
    """Map a Content-Type header to "json"/"csv"/"parquet", or (None, the reason for a 415).

    As MLflow's server, parameters other than ``charset`` are refused, and so is any charset but
    UTF-8; unlike it, media types are compared case-insensitively, quoted charsets are accepted and
    a missing header is a clear 415 (MLflow answers 500).
    """
    if not header:
        return None, "missing Content-Type; use one of %s" % SUPPORTED_TYPES
    parts = [part.strip() for part in header.split(";")]
    mime = parts[0].lower()
    params: dict[str, str] = {}
    for part in parts[1:]:
        if part:
            key, _, value = part.partition("=")
            params[key.strip().lower()] = value.strip().strip('"')
    if params.get("charset", "utf-8").lower() != "utf-8":
        return None, "The scoring server only supports UTF-8"
    unknown = sorted(set(params) - {"charset"})
    if unknown:
        return None, "Unrecognized content type parameters: %s" % ", ".join(unknown)
    kind = CONTENT_KINDS.get(mime)
    if kind is None:
        return None, (
            "This predictor only supports the following content types: %s. Got '%s'."
            % (SUPPORTED_TYPES, header)
        )
    return kind, ""


class Request:
    """One parsed request head."""

    __slots__ = ("headers", "keep_alive", "method", "path", "target", "version")

    def __init__(self, method: str, target: str, version: str, headers: dict[str, str]) -> None:
        self.method = method
        self.target = target
        self.path = target.split("?", 1)[0]
        self.version = version
        self.headers = headers
        tokens = {token.strip().lower() for token in headers.get("connection", "").split(",")}
        if version == "HTTP/1.1":
            self.keep_alive = "close" not in tokens
        else:
            self.keep_alive = "keep-alive" in tokens

    @property
    def has_body(self) -> bool:
        return "transfer-encoding" in self.headers or self.headers.get(
            "content-length", "0"
        ).strip() not in ("", "0")


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


class Connection:
    """One client connection: reads requests, answers each with one send."""

    def __init__(self, sock: socket.socket, address: Any, worker: Worker) -> None:
        self.sock = sock
        self.client = address[0] if isinstance(address, tuple) and address else "-"
        self.worker = worker
        self.rfile = cast(io.BufferedReader, sock.makefile("rb", buffering=65536))
        self._aborted = False

    def abort(self) -> None:
        """Wake a thread blocked reading this connection (shutdown)."""
        if not self._aborted:
            self._aborted = True
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)

    def run(self) -> None:
        worker = self.worker
        try:
            while not worker.stopping.is_set():
                worker.set_phase(self, IDLE)
                try:
                    request = self._read_head()
                except HttpError as err:
                    self._error(None, err)
                    return
                if request is None:
                    return
                if not self._handle(request) or not request.keep_alive:
                    return
        except (OSError, ValueError):
            pass  # reset, timed out, or aborted at shutdown
        except Exception as exc:  # a bug: log it, drop the connection, keep serving
            _log("error: request from %s failed: %s" % (self.client, describe_exception(exc)))
            if worker.debug:
                traceback.print_exc()
        finally:
            worker.remove(self)
            with contextlib.suppress(OSError):
                self.rfile.close()
            with contextlib.suppress(OSError):
                self.sock.close()

    # ---- reading
    def _read_head(self) -> Request | None:
        rfile = self.rfile
        line = rfile.readline(MAX_LINE + 1)
        while line in (b"\r\n", b"\n"):  # RFC 9112: ignore empty lines before a request
            line = rfile.readline(MAX_LINE + 1)
        if not line:
            return None
        self.worker.set_phase(self, RECEIVING)
        if len(line) > MAX_LINE:
            raise HttpError(414, "request line too long", "REQUEST_LIMIT_EXCEEDED")
        words = line.decode("latin-1").rstrip("\r\n").split()
        if len(words) != 3 or not words[0].isalpha() or not words[0].isupper():
            raise HttpError(400, "Bad request syntax (%r)" % line[:200].decode("latin-1"))
        method, target, version = words
        if version not in ("HTTP/1.1", "HTTP/1.0"):
            if version.startswith("HTTP/") and version[5:6].isdigit() and version[5:6] != "1":
                raise HttpError(505, "HTTP version %s is not supported" % version[5:])
            raise HttpError(400, "Bad request version (%r)" % version)
        if target.startswith(("http://", "https://")):
            target = "/" + target.split("/", 3)[3] if target.count("/") >= 3 else "/"
        headers: dict[str, str] = {}
        count = 0
        while True:
            line = rfile.readline(MAX_LINE + 1)
            if len(line) > MAX_LINE:
                raise HttpError(431, "a header line is too long", "REQUEST_LIMIT_EXCEEDED")
            if line in (b"\r\n", b"\n"):
                break
            if not line:
                return None
            count += 1
            if count > MAX_HEADERS:
                raise HttpError(
                    431, "more than %d header lines" % MAX_HEADERS, "REQUEST_LIMIT_EXCEEDED"
                )
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip() or line[:1] in (b" ", b"\t"):
                raise HttpError(400, "malformed header line %r" % line[:100].decode("latin-1"))
            key = name.decode("latin-1").lower()
            text = value.strip().decode("latin-1")
            if key in headers:
                if key == "content-length" and headers[key] != text:
                    raise HttpError(400, "conflicting Content-Length headers")
                if key != "content-length":
                    headers[key] = headers[key] + ", " + text
            else:
                headers[key] = text
        return Request(method, target, version, headers)

    def _declared_length(self, request: Request) -> int:
        value = request.headers.get("content-length")
        if value is None:
            return 0  # no body (RFC 9112), as uvicorn reads it
        if not value.isdigit():
            raise HttpError(400, "invalid Content-Length %r" % value)
        return int(value)

    def _too_large(self, length: int | None) -> HttpError:
        shown = "%d bytes" % length if length is not None else "the body"
        return HttpError(
            413,
            "%s exceeds the limit of %d bytes (ENVBUILD_MAX_BODY_BYTES)"
            % (shown, self.worker.max_body),
            "REQUEST_LIMIT_EXCEEDED",
        )

    def _read_exact(self, length: int) -> bytes:
        data = self.rfile.read(length)
        if len(data) != length:
            raise HttpError(400, "request body shorter than Content-Length")
        return data

    def _read_body(self, request: Request) -> bytes:
        """The request body; a body over the limit is read away (up to a bound), then 413."""
        encoding = request.headers.get("transfer-encoding")
        if encoding is not None:
            if encoding.strip().lower() != "chunked":
                raise HttpError(501, "Transfer-Encoding %r is not supported" % encoding)
            self._continue(request, None)
            return self._read_chunked()
        length = self._declared_length(request)
        if length > self.worker.max_body:
            if self._expects_continue(request):
                raise self._too_large(length)  # refused before the client sends it
            self._discard(length)
            raise self._too_large(length)
        self._continue(request, length)
        return self._read_exact(length) if length else b""

    def _expects_continue(self, request: Request) -> bool:
        return request.version == "HTTP/1.1" and (
            request.headers.get("expect", "").lower() == "100-continue"
        )

    def _continue(self, request: Request, length: int | None) -> None:
        if self._expects_continue(request):
            self.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        rfile = self.rfile
        while True:
            line = rfile.readline(MAX_LINE + 1)
            if not line:
                raise HttpError(400, "incomplete chunked request body")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise HttpError(400, "malformed chunked request body") from None
            if size == 0:
                while rfile.readline(MAX_LINE + 1) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            total += size
            if total > self.worker.max_body:
                self._discard(DRAIN_LIMIT_BYTES)
                raise self._too_large(None)
            parts.append(self._read_exact(size))
            rfile.readline(3)

    def _discard(self, length: int) -> None:
        """Read a body away (at most DRAIN_LIMIT_BYTES, DRAIN_SECONDS) so that the client, which
        sends it all before reading, gets our 413 rather than a connection reset."""
        remaining = min(length, DRAIN_LIMIT_BYTES)
        deadline = time.monotonic() + DRAIN_SECONDS
        try:
            self.sock.settimeout(1.0)
            while remaining > 0 and time.monotonic() < deadline:
                chunk = self.rfile.read1(min(remaining, 1 << 16))
                if not chunk:
                    break
                remaining -= len(chunk)
        except OSError:
            pass

    # ---- answering
    def _send(
        self,
        request: Request | None,
        status: int,
        body: bytes,
        content_type: str = JSON_TYPE,
        headers: tuple[tuple[str, str], ...] = (),
        close: bool = False,
    ) -> None:
        """The whole response in one send."""
        close = close or request is None or not request.keep_alive or self.worker.stopping.is_set()
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        head = [
            "HTTP/1.1 %d %s" % (status, phrase),
            "Server: " + SERVER_NAME,
            "Date: " + http_date(),
            "Content-Type: " + content_type,
            "Content-Length: %d" % len(body),
        ]
        head.extend("%s: %s" % pair for pair in headers)
        if close:
            head.append("Connection: close")
        elif request is not None and request.version == "HTTP/1.0":
            head.append("Connection: keep-alive")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        if request is None or request.method != "HEAD":
            data += body
        self.sock.sendall(data)
        if self.worker.access_log:
            line = (
                "%s %s %s" % (request.method, request.target, request.version)
                if request is not None
                else "-"
            )
            _log('%s [%d] "%s" %d %d' % (self.client, self.worker.pid, line, status, len(body)))

    def _error(self, request: Request | None, err: HttpError) -> None:
        with contextlib.suppress(OSError):
            self._send(
                request,
                err.status,
                error_body(err.error_code, err.message),
                headers=err.headers,
                close=err.close,
            )

    def _handle(self, request: Request) -> bool:
        """Answer one request; False when the connection must be closed after it."""
        path, method = request.path, request.method
        if path == "/invocations":
            if method == "POST":
                return self._invocations(request)
            error = HttpError(
                405, "use POST /invocations", "METHOD_NOT_ALLOWED", (("Allow", "POST"),)
            )
        elif path in GET_PATHS:
            if method == "GET" or (method == "HEAD" and path in PROBES):
                close = request.has_body  # a body we do not read ends the connection
                self._get(request, path, close)
                return not close
            allow = "GET, HEAD" if path in PROBES else "GET"
            error = HttpError(405, "use GET %s" % path, "METHOD_NOT_ALLOWED", (("Allow", allow),))
        else:
            error = HttpError(404, "no endpoint %s" % path, "ENDPOINT_NOT_FOUND")
        error.close = request.has_body
        self._error(request, error)
        return not error.close

    def _get(self, request: Request, path: str, close: bool) -> None:
        worker = self.worker
        app = worker.app
        ready = worker.ready.is_set()
        if path in PROBES:  # MLflow's /health is its /ping
            self._send(request, 200 if ready else 503, b"\n", close=close)
        elif path == "/version":
            self._send(request, 200, app.version, close=close)
        elif path == "/metadata":
            state: dict[str, Any] = {"status": worker.status(), "pid": worker.pid}
            if worker.load_error:
                state["error"] = worker.load_error
            self._send(request, 200, app.metadata(state), close=close)
        else:
            try:
                document = app.openapi()
            except Exception as exc:
                message = "cannot build the OpenAPI document: %s" % describe_exception(exc)
                self._send(request, 500, error_body("INTERNAL_ERROR", message), close=close)
                return
            self._send(request, 200, document, close=close)

    def _invocations(self, request: Request) -> bool:
        worker = self.worker
        try:
            body = self._read_body(request)
        except HttpError as err:
            self._error(request, err)
            return False
        worker.set_phase(self, BUSY)
        if not worker.ready.is_set():
            self._send(
                request,
                503,
                error_body("TEMPORARILY_UNAVAILABLE", "the model is not loaded yet"),
                headers=(("Retry-After", "1"),),
            )
            return True
        kind, reason = content_kind(request.headers.get("content-type"))
        if kind == "parquet":
            problem = worker.app.parquet_problem()
            if problem:
                kind, reason = None, "application/vnd.apache.parquet bodies need pandas with "
                reason += "pyarrow or fastparquet: %s; send JSON or CSV" % problem
        if kind is None:
            self._send(request, 415, error_body("UNSUPPORTED_MEDIA_TYPE", reason))
            return True
        try:
            response = worker.score(body, kind)
        except Exception as exc:
            status = getattr(exc, "http_status", None)
            payload = getattr(exc, "payload", None)
            if status is None or payload is None:
                status, message = 500, describe_exception(exc)
                answer = error_body("INTERNAL_ERROR", message)
            else:
                message = str(exc)
                answer = json.dumps(payload(worker.debug)).encode()
            if status >= 500:
                _log("error: %s" % message)
                if worker.debug:
                    traceback.print_exception(type(exc), exc, exc.__traceback__)
            self._send(request, status, answer)
            return True
        self._send(request, 200, response)
        return True


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
            _log("error: accept failed: %s" % exc)
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
        _log("error: %s" % worker.load_error)
        if worker.debug:
            traceback.print_exc()
    else:
        worker.ready.set()
        _log("model loaded (pid %d)" % os.getpid())
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
            _log("worker %d: parent process is gone; stopping" % os.getpid())
            break
    # Stopping: a repeated SIGTERM must not kill the process half-way (interpreter shutdown
    # restores default handlers, ignored signals stay ignored).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    acceptor.stop()
    if not worker.drain():
        _log(
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
            _log("worker %d started" % pid)
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
            _log("worker %d could not load the model; stopping" % pid)
            result[0] = EXIT_MODEL
            stop_all()
            continue
        _log("worker %d exited with %s; starting another" % (pid, code))
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
    _log("listening on %s" % _url(host, sock.getsockname()[1]))
    if workers > 1 and not hasattr(os, "fork"):
        _log("warning: this platform cannot fork; serving with one worker")
        workers = 1
    if workers > 1:
        return supervise(sock, app, max_body, workers)
    code, loading = run_worker(sock, app, max_body)
    if loading:
        _hard_exit(code)
    return code
