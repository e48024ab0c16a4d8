"""Benchmark: the runtime's scoring server vs `mlflow models serve --env-manager local`.

    .venv/bin/python bench/serve.py [--requests 400] [--rounds 3] [--quick] [--model DIR]

On one scikit-learn model (LogisticRegression on iris, saved here with a signature and an input
example, unless ``--model`` is given), both servers run side by side on loopback with the same
interpreter and packages (the dev venv: the envbuild side is ``runner.py serve``, what
``envbuild serve`` runs in the model's environment, so only the server differs), with 1 and 2
workers. The same keep-alive HTTP/1.1 clients (asyncio, in this process) send:

* ``GET /ping`` on one connection;
* ``POST /invocations`` with the model's ``serving_input_example.json`` on 1, 8 and 32
  concurrent connections,

``--requests`` requests per case and round, ``--rounds`` rounds run interleaved (every server
once per case per round) so that other work on the machine slows all of them alike. Printed:
p50 and p99 latency over all rounds, the median requests per second, and the ratios
envbuild/MLflow (latency: lower is better; requests/s: higher is better). The success bodies of
both servers are compared byte for byte first. Nothing asserts a time.

Bytecode: PYTHONDONTWRITEBYTECODE is removed for both servers (Python's default elsewhere).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNNER = HERE.parent / "envbuild" / "runtime" / "runner.py"
READY_TIMEOUT = 300.0
CONCURRENCY = (1, 8, 32)
WORKERS = (1, 2)


def make_model(folder: Path) -> Path:
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    path = folder / "sklearn-iris"
    mlflow.sklearn.save_model(
        model,
        str(path),
        signature=infer_signature(X, model.predict(X)),
        input_example=X.head(3),
        pip_requirements=["mlflow", "scikit-learn"],
    )
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    name: str
    workers: int
    args: list[str]
    port: int
    log: Path
    proc: subprocess.Popen | None = None
    latencies: dict[str, list[float]] = field(default_factory=dict)
    rates: dict[str, list[float]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.name}, {self.workers} worker{'s' if self.workers > 1 else ''}"

    def start(self, env: dict[str, str]) -> None:
        with open(self.log, "w") as handle:
            self.proc = subprocess.Popen(
                self.args, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_ready(self) -> float:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        started = time.perf_counter()
        while time.perf_counter() - started < READY_TIMEOUT:
            try:
                with opener.open(f"http://127.0.0.1:{self.port}/ping", timeout=2) as answer:
                    if answer.status == 200:
                        return time.perf_counter() - started
            except OSError:
                pass
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.label} exited {self.proc.returncode}: see {self.log}")
            time.sleep(0.05)
        raise SystemExit(f"{self.label}: no 200 on /ping after {READY_TIMEOUT:.0f} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def request_bytes(method: str, path: str, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if method == "POST":
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def load(port: int, data: bytes, concurrency: int, count: int) -> tuple[list[float], float]:
    """``count`` requests on ``concurrency`` keep-alive connections: (latencies, seconds)."""
    left = [count]
    latencies: list[float] = []

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while left[0] > 0:
                left[0] -= 1
                started = time.perf_counter()
                writer.write(data)
                status, _ = await read_response(reader)
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    raise RuntimeError(f"status {status} from port {port}")
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started


async def one_body(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    body = (await read_response(reader))[1]
    writer.close()
    return body


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="per case and round (400)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    parser.add_argument("--quick", action="store_true", help="1 round of 150 requests")
    parser.add_argument("--model", type=Path, help="an MLflow model folder (default: make one)")
    args = parser.parse_args()
    rounds, count = (1, 150) if args.quick else (max(1, args.rounds), max(10, args.requests))

    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.pop("ENVBUILD_WORKERS", None)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="envbuild-bench-serve-") as tmp:
        work = Path(tmp)
        env.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{work / 'mlflow.db'}")
        model = args.model.resolve() if args.model else make_model(work)
        body = (model / "serving_input_example.json").read_bytes()
        invocation = request_bytes("POST", "/invocations", body)
        ping = request_bytes("GET", "/ping")
        servers: list[Server] = []
        for workers in WORKERS:
            port = free_port()
            ours = [sys.executable, str(RUNNER), "serve", "--model", str(model)]
            ours += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
            servers.append(
                Server("envbuild", workers, ours, port, work / f"envbuild-{workers}.log")
            )
            port = free_port()
            theirs = [str(Path(sys.executable).parent / "mlflow"), "models", "serve"]
            theirs += ["-m", str(model), "--env-manager", "local", "--host", "127.0.0.1"]
            theirs += ["--port", str(port), "--workers", str(workers)]
            servers.append(Server("mlflow", workers, theirs, port, work / f"mlflow-{workers}.log"))
        try:
            print(f"model: {model}")
            print("starting 4 servers ...", flush=True)
            for server in servers:
                server.start(env)
            for server in servers:
                print(f"  {server.label:<22} ready after {server.wait_ready():5.1f} s", flush=True)
            bodies = {s.label: asyncio.run(one_body(s.port, invocation)) for s in servers}
            same = len(set(bodies.values())) == 1
            print(
                f"success bodies identical: {'yes' if same else 'NO'} ({next(iter(bodies.values()))[:60]!r})"
            )
            for server in servers:  # warm-up, untimed
                asyncio.run(load(server.port, invocation, 8, 100))
            cases = [("ping", ping, 1)] + [
                (f"invocations c={c}", invocation, c) for c in CONCURRENCY
            ]
            for round_no in range(rounds):
                print(f"round {round_no + 1}/{rounds} ...", flush=True)
                for case, data, concurrency in cases:
                    for server in servers:
                        if case == "ping" and server.workers > 1:
                            continue
                        latencies, seconds = asyncio.run(
                            load(server.port, data, concurrency, count)
                        )
                        server.latencies.setdefault(case, []).extend(latencies)
                        server.rates.setdefault(case, []).append(len(latencies) / seconds)
        finally:
            for server in servers:
                server.stop()
    load_after = os.getloadavg()

    print(
        f"\n{rounds} round(s) x {count} requests per case; load average {load_before[0]:.1f} "
        f"before, {load_after[0]:.1f} after (2 cores: the clients share them with the servers)"
    )
    print(f"\n{'case':<20} {'server':<22} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}")
    table: dict[tuple[str, str], tuple[float, float, float]] = {}
    for case, _, _ in cases:
        for server in servers:
            if case not in server.latencies:
                continue
            p50 = percentile(server.latencies[case], 0.5) * 1000
            p99 = percentile(server.latencies[case], 0.99) * 1000
            rate = statistics.median(server.rates[case])
            table[(case, server.label)] = (p50, p99, rate)
            print(f"{case:<20} {server.label:<22} {p50:8.2f} {p99:8.2f} {rate:8.0f}")
    print(f"\n{'envbuild / mlflow':<20} {'workers':<22} {'p50':>8} {'p99':>8} {'req/s':>8}")
    for case, _, _ in cases:
        for workers in WORKERS:
            suffix = f"{workers} worker{'s' if workers > 1 else ''}"
            ours = table.get((case, f"envbuild, {suffix}"))
            theirs = table.get((case, f"mlflow, {suffix}"))
            if ours and theirs:
                ratios = [ours[i] / theirs[i] for i in range(3)]
                print(
                    f"{case:<20} {suffix:<22} x{ratios[0]:7.2f} x{ratios[1]:7.2f} x{ratios[2]:7.2f}"
                )
    ping = table.get(("ping", "envbuild, 1 worker"))
    if ping:
        print(
            f"\n/ping p50 {ping[0]:.2f} ms (target < 2 ms): {'met' if ping[0] < 2 else 'NOT met'}"
        )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
