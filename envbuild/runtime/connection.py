"""One HTTP/1.1 client connection of the scoring server: reading requests, routing, answering.

A connection has a thread of its own; it parses each request head and body itself (request line,
at most 100 header lines of at most 64 KiB, ``Content-Length`` or chunked bodies, ``Expect:
100-continue``), answers every request with one ``sendall`` (the socket has ``TCP_NODELAY``), and
hands ``/invocations`` bodies to the worker's scoring queue. Every answer the transport gives
itself (a garbage request line, headers too large, a body over the limit) is JSON like the
application's errors. The worker (``server.Worker``) owns the model, the scoring threads and
shutdown; this module owns the protocol.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import sys
import time
import traceback
from email.utils import formatdate
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, cast

from .errors import describe_exception

if TYPE_CHECKING:
    from .server import Worker

MAX_LINE = 65536
MAX_HEADERS = 100
DRAIN_LIMIT_BYTES = 64 * 1024 * 1024
DRAIN_SECONDS = 10.0

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


def log(message: str) -> None:
    try:
        sys.stderr.write("%s\n" % message)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


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
            log("error: request from %s failed: %s" % (self.client, describe_exception(exc)))
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
            log('%s [%d] "%s" %d %d' % (self.client, self.worker.pid, line, status, len(body)))

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
                log("error: %s" % message)
                if worker.debug:
                    traceback.print_exception(type(exc), exc, exc.__traceback__)
            self._send(request, status, answer)
            return True
        self._send(request, 200, response)
        return True
