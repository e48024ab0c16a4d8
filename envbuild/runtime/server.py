"""HTTP scoring server for the runtime: the transport only, model logic stays in runner.py.

Standard library only (``http.server``), because it runs inside the model's environment, which
has no web framework of ours. One process serves with threads; with ``workers > 1`` the parent binds
the socket and forks that many worker processes that accept on it (pre-fork), and restarts a worker
that dies. Each worker loads the model in a background thread, so ``/ping`` can answer 503 until the
model is ready. SIGTERM (or SIGINT) stops accepting, lets requests in flight finish, and exits 0.

The ``app`` object passed to :func:`serve` provides ``load()``, ``invoke(body, kind)``,
``version_info()`` and ``openapi()``; its errors carry ``http_status``/``error_code`` attributes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EXIT_OK = 0
EXIT_MODEL = 5
GRACE_SECONDS = 30.0
IDLE_TIMEOUT_SECONDS = 120
DRAIN_LIMIT_BYTES = 64 * 1024 * 1024
CONTENT_KINDS = {"application/json": "json", "text/csv": "csv"}


def _log(message):
    try:
        sys.stderr.write("%s\n" % message)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _debug():
    return os.environ.get("ENVBUILD_DEBUG") == "1"


class _BodyError(Exception):
    def __init__(self, status, error_code, message):
        Exception.__init__(self, message)
        self.status = status
        self.error_code = error_code


class WorkerState:
    """Model readiness and requests in flight, shared by a worker's threads."""

    def __init__(self, app):
        self.app = app
        self.ready = threading.Event()
        self.load_error = None
        self._cond = threading.Condition()
        self._inflight = 0

    def begin(self):
        with self._cond:
            self._inflight += 1

    def end(self):
        with self._cond:
            self._inflight -= 1
            self._cond.notify_all()

    def wait_idle(self, timeout):
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._inflight > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def status(self):
        if self.ready.is_set():
            return "ok"
        return "failed" if self.load_error else "loading"


def content_kind(header):
    """Map a Content-Type header to "json"/"csv", or return (None, reason) for a 415.

    As MLflow's server: parameters other than ``charset`` are refused, and so is any charset but
    UTF-8.
    """
    if not header:
        return None, "missing Content-Type; use application/json or text/csv"
    parts = [part.strip() for part in header.split(";")]
    mime = parts[0].lower()
    params = {}
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
            "This predictor only supports the following content types: "
            "application/json, text/csv. Got '%s'." % header
        )
    return kind, None


class Handler(BaseHTTPRequestHandler):
    """Routes: GET /ping /health /version /openapi.json, POST /invocations."""

    protocol_version = "HTTP/1.1"
    server_version = "envbuild-runtime"
    timeout = IDLE_TIMEOUT_SECONDS
    state = None
    max_body = 0
    access_log = True

    # ---- plumbing
    def log_message(self, format, *args):
        if self.access_log:
            _log("%s [%d] %s" % (self.address_string(), os.getpid(), format % args))

    def _send(self, status, body, content_type="application/json", close=False, headers=None):
        if isinstance(body, str):
            body = body.encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _json(self, status, obj, **kwargs):
        self._send(status, json.dumps(obj), **kwargs)

    def _error(self, status, error_code, message, **kwargs):
        self._json(status, {"error_code": error_code, "message": message}, **kwargs)

    def _declared_length(self):
        value = self.headers.get("Content-Length")
        if value is None:
            return None
        try:
            length = int(value)
        except ValueError:
            raise _BodyError(400, "BAD_REQUEST", "invalid Content-Length %r" % value) from None
        if length < 0:
            raise _BodyError(400, "BAD_REQUEST", "invalid Content-Length %r" % value)
        return length

    def _too_large(self, length):
        shown = "%d bytes" % length if length is not None else "the body"
        return _BodyError(
            413,
            "REQUEST_LIMIT_EXCEEDED",
            "%s exceeds the limit of %d bytes (ENVBUILD_MAX_BODY_BYTES)" % (shown, self.max_body),
        )

    def handle_expect_100(self):
        # Refuse an oversized upload before the client sends it.
        try:
            length = self._declared_length()
        except _BodyError:
            length = None
        if length is not None and length > self.max_body:
            err = self._too_large(length)
            self._error(err.status, err.error_code, str(err), close=True)
            return False
        return BaseHTTPRequestHandler.handle_expect_100(self)

    def _read_exact(self, length):
        data = self.rfile.read(length)
        if len(data) != length:
            raise _BodyError(400, "BAD_REQUEST", "request body shorter than Content-Length")
        return data

    def _read_chunked(self):
        parts = []
        total = 0
        while True:
            line = self.rfile.readline(65537)
            if not line:
                raise _BodyError(400, "BAD_REQUEST", "incomplete chunked request body")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BodyError(400, "BAD_REQUEST", "malformed chunked request body") from None
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            total += size
            if total > self.max_body:
                raise self._too_large(None)
            parts.append(self._read_exact(size))
            self.rfile.readline(3)

    def _read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = self._declared_length()
        if length is None:
            raise _BodyError(411, "BAD_REQUEST", "Content-Length required")
        if length > self.max_body:
            self._unread = length
            raise self._too_large(length)
        return self._read_exact(length)

    def _drain(self, remaining):
        """Read an unread body away so the client sees our 413 rather than a connection reset."""
        try:
            self.connection.settimeout(2.0)
            remaining = min(remaining, DRAIN_LIMIT_BYTES)
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1 << 16))
                if not chunk:
                    break
                remaining -= len(chunk)
        except OSError:
            pass

    # ---- routes
    def do_GET(self):
        path = self.path.split("?", 1)[0]
        state = self.state
        if path == "/ping":
            self._send(200 if state.ready.is_set() else 503, "\n")
        elif path == "/health":
            body = {"status": state.status(), "pid": os.getpid()}
            if state.load_error:
                body["error"] = state.load_error
            self._json(200 if state.ready.is_set() else 503, body)
        elif path == "/version":
            self._json(200, state.app.version_info())
        elif path == "/openapi.json":
            try:
                self._json(200, state.app.openapi())
            except Exception as exc:
                self._error(
                    500,
                    "INTERNAL_ERROR",
                    "cannot build the OpenAPI document: %s: %s" % (type(exc).__name__, exc),
                )
        elif path == "/invocations":
            self._error(
                405, "METHOD_NOT_ALLOWED", "use POST /invocations", headers={"Allow": "POST"}
            )
        else:
            self._error(404, "ENDPOINT_NOT_FOUND", "no endpoint %s" % path)

    def do_POST(self):
        path = self.path.split("?", 1)[0]
        if path in ("/ping", "/health", "/version", "/openapi.json"):
            self._error(
                405, "METHOD_NOT_ALLOWED", "use GET %s" % path, headers={"Allow": "GET"}, close=True
            )
        elif path != "/invocations":
            self._error(404, "ENDPOINT_NOT_FOUND", "no endpoint %s" % path, close=True)
        else:
            self.state.begin()
            try:
                self._invocations()
            finally:
                self.state.end()

    def _invocations(self):
        state = self.state
        self._unread = 0
        try:
            body = self._read_body()
        except _BodyError as err:
            self._error(err.status, err.error_code, str(err), close=True)
            if self._unread:
                self._drain(self._unread)
            return
        if not state.ready.is_set():
            self._error(
                503,
                "TEMPORARILY_UNAVAILABLE",
                "the model is not loaded yet",
                headers={"Retry-After": "1"},
            )
            return
        kind, reason = content_kind(self.headers.get("Content-Type"))
        if kind is None:
            self._error(415, "UNSUPPORTED_MEDIA_TYPE", reason)
            return
        try:
            response = state.app.invoke(body, kind)
        except Exception as exc:
            status = getattr(exc, "http_status", None)
            if status is None:
                status, code = 500, "INTERNAL_ERROR"
                message = "%s: %s" % (type(exc).__name__, exc)
            else:
                code, message = exc.error_code, str(exc)
            if status >= 500:
                _log("error: %s" % message)
                if _debug():
                    traceback.print_exc()
            self._error(status, code, message)
            return
        self._send(200, response)


class WorkerServer(ThreadingHTTPServer):
    """A threaded HTTP server on a socket bound elsewhere (so pre-forked workers can share it)."""

    daemon_threads = True

    def __init__(self, sock, handler):
        self.address_family = sock.family
        host, port = sock.getsockname()[:2]
        ThreadingHTTPServer.__init__(self, (host, port), handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.server_name = host
        self.server_port = port

    def get_request(self):
        # The shared socket is non-blocking (so a worker that loses the accept race returns to its
        # loop); connections themselves are served blocking.
        conn, addr = self.socket.accept()
        conn.setblocking(True)
        return conn, addr

    def handle_error(self, request, client_address):
        if _debug():
            ThreadingHTTPServer.handle_error(self, request, client_address)
        else:
            _log("error: request from %s failed: %s" % (client_address[0], sys.exc_info()[1]))


def bind(host, port):
    """Bind and listen; the socket is non-blocking for the reason given in get_request."""
    infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    family, _, _, _, address = infos[0]
    sock = socket.create_server(address[:2], family=family, backlog=128)
    sock.setblocking(False)
    return sock


def _url(host, port):
    return "http://%s:%d" % ("[%s]" % host if ":" in host else host, port)


def _load(state, stop):
    try:
        state.app.load()
    except Exception as exc:
        state.load_error = (
            str(exc) if getattr(exc, "exit_code", None) else "%s: %s" % (type(exc).__name__, exc)
        )
        _log("error: %s" % state.load_error)
        if _debug():
            traceback.print_exc()
        stop.set()
        return
    state.ready.set()
    _log("model loaded (pid %d)" % os.getpid())


def run_worker(sock, app, max_body, parent_pid=None):
    """Serve until SIGTERM/SIGINT (or the parent's death); return the exit code.

    Returns 5 when the model failed to load, else 0 once requests in flight have finished (or
    GRACE_SECONDS passed).
    """
    stop = threading.Event()

    def on_signal(signum, frame):
        if stop.is_set() and signum == signal.SIGINT:
            _hard_exit(130)  # a second Ctrl-C does not wait for requests in flight
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})

    state = WorkerState(app)
    handler = type(
        "BoundHandler",
        (Handler,),
        {
            "state": state,
            "max_body": max_body,
            "access_log": os.environ.get("ENVBUILD_ACCESS_LOG", "1") != "0",
        },
    )
    httpd = WorkerServer(sock, handler)
    serving = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="http", daemon=True
    )
    loader = threading.Thread(target=_load, args=(state, stop), name="model-loader", daemon=True)
    serving.start()
    loader.start()
    while not stop.wait(0.5):
        if parent_pid is not None and os.getppid() != parent_pid:
            _log("worker %d: parent process is gone; stopping" % os.getpid())
            break
    # Stopping: a repeated SIGTERM must not kill the process half-way (interpreter shutdown
    # restores default handlers, ignored signals stay ignored).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    httpd.shutdown()
    if not state.wait_idle(GRACE_SECONDS):
        _log(
            "worker %d: requests still running after %.0fs; stopping anyway"
            % (os.getpid(), GRACE_SECONDS)
        )
    httpd.server_close()
    code = EXIT_MODEL if state.load_error else EXIT_OK
    return code, loader.is_alive()


def _exit_code(status):
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return 1


def _hard_exit(code):
    """End a process without running interpreter shutdown (forked children, or a load in flight)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def supervise(sock, app, max_body, workers):
    """Pre-fork: run ``workers`` processes on ``sock``, restart those that die, stop them on
    SIGTERM/SIGINT. Returns 0, or 5 if a worker could not load the model."""
    parent = os.getpid()
    children = {}
    state = {"stopping": False, "code": EXIT_OK}
    signals = {signal.SIGTERM, signal.SIGINT}

    def stop_all(signum=None, frame=None):
        if os.getpid() != parent:
            return
        state["stopping"] = True
        for pid in list(children):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)

    def spawn():
        # Signals are blocked across fork so that neither process handles one half-set-up.
        signal.pthread_sigmask(signal.SIG_BLOCK, signals)
        try:
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    code = run_worker(sock, app, max_body, parent_pid=parent)[0]
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
        if state["stopping"]:
            continue
        if code == EXIT_MODEL:
            _log("worker %d could not load the model; stopping" % pid)
            state["code"] = EXIT_MODEL
            stop_all()
            continue
        _log("worker %d exited with %s; starting another" % (pid, code))
        if time.monotonic() - started < 1.0:
            time.sleep(1.0)
        if not state["stopping"]:
            spawn()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock.close()
    return state["code"]


def serve(app, host, port, workers=1, max_body=100 * 1024 * 1024):
    """Bind, announce ``listening on http://HOST:PORT`` on stderr, and serve until stopped."""
    try:
        sock = bind(host, port)
    except OSError as exc:
        _log("error: cannot listen on %s:%s: %s" % (host, port, exc))
        return 1
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
