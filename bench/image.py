"""Benchmark: `envbuild image` vs `mlflow models generate-dockerfile`, on one model, in one run.

    .venv/bin/python bench/image.py [--runs 3] [--model DIR] [--keep]
    .venv/bin/python bench/image.py --torch      # the PyTorch model: CPU vs CUDA lock

``--torch`` measures a real PyTorch model logged with the CPU build of torch (the throwaway
logging venv and loopback PyTorch CPU mirror of tests/integration/torch_model.py): ``capture
--write``, then for the CPU lock the environment's size, the image's size and its cold build
time, and for ``--accelerator cuda`` the same model's CUDA lock, resolved only (about 3 GB of
wheels are not downloaded): its download size summed from the lock's file sizes, and the
environment it would make estimated with the CPU environment's unpacked/downloaded ratio.

For each tool, with the same base image (the local ``python:X.Y-slim``; MLflow's Dockerfile names
the exact patch version, ``python:X.Y.Z-slim``, which is tagged onto the same image for the run):

* **cold build**: base image present, no layer cache (``nocache``), the lock already resolved
  (envbuild's lock resolution is timed on its own line);
* **rebuild** after a model-only change (a comment appended to MLmodel), with the layer cache;
* **size** of the image, and its ratio to base + environment + model (the environment measured
  inside envbuild's image: ``du -sb /opt/env``);
* **start**: from ``docker run`` to the first 200 on ``/ping`` (median of ``--runs`` runs), each
  image with its default command on port 8080 (host networking: this engine has no bridge).

Both builds use host networking and this machine's CA bundle (``$SSL_CERT_FILE``): envbuild
takes it with ``--ca-cert`` into its build stage only; MLflow's single-stage Dockerfile gets the
same COPY + ENV lines after its FROM (as any user behind a TLS-intercepting proxy must add), so
there the bundle stays in the image. MLflow's build may fail here (it apt-installs nginx from
Debian's archive and pip-installs mlflow and the model's requirements from PyPI); the failing step
and its error are then reported instead of numbers. pip's configuration is ignored for both
(``PIP_CONFIG_FILE=/dev/null``): its local indexes cannot be reached from a build.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
PORTS = (8080, 8000)  # 8080: both images' server; 8000: MLflow's inference server behind nginx
CA_IN_IMAGE = "/etc/ssl/certs/bench-host-ca.pem"
SUPERSEDED: list[str] = []  # images of the cold builds, left untagged by the rebuilds


def bench_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PIP_FIND_LINKS", None)
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


def ca_bundle() -> Path:
    for value in (os.environ.get("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt"):
        if value and Path(value).is_file():
            return Path(value)
    raise SystemExit("no CA bundle found (SSL_CERT_FILE)")


def make_model(folder: Path) -> Path:
    import mlflow.sklearn
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True, as_frame=True)
    path = folder / "sklearn-iris"
    model = LogisticRegression(max_iter=500).fit(X, y)
    mlflow.sklearn.save_model(model, str(path), input_example=X.head(3))
    return path


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        # as the servers bind: a closed connection's TIME_WAIT does not make the port busy
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "envbuild", *args],
        env=bench_env(),
        capture_output=True,
        text=True,
        check=False,
    )


# ------------------------------------------------------------------------------------------
# Engine helpers


class BuildFailed(Exception):
    pass


def build(engine, context: Path, tag: str, *, nocache: bool) -> tuple[float, str]:
    """Classic-builder build with host networking; (seconds, log). Raises BuildFailed."""
    started = time.perf_counter()
    log: list[str] = []
    for chunk in engine.api.build(
        path=str(context),
        tag=tag,
        rm=True,
        forcerm=True,
        network_mode="host",
        nocache=nocache,
        decode=True,
    ):
        log.append(str(chunk.get("stream", "")))
        if "error" in chunk:
            text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", "".join(log))
            steps = re.findall(r"^Step \d+/\d+ : .*$", text, flags=re.M)
            tail = "\n".join(text.strip().splitlines()[-8:])
            raise BuildFailed(
                f"{steps[-1] if steps else '(no step)'}\n  error: {chunk['error'].strip()}\n"
                f"  tail:\n    " + tail.replace("\n", "\n    ")
            )
    return time.perf_counter() - started, "".join(log)


def time_to_ping(engine, tag: str, runs: int) -> float:
    """Median seconds from `docker run` (default command, host network) to a 200 on /ping."""
    samples = []
    for _ in range(runs):
        for port in PORTS:
            if not port_free(port):
                raise SystemExit(f"port {port} is busy: the images serve on it")
        started = time.perf_counter()
        container = engine.containers.run(tag, detach=True, network_mode="host")
        try:
            deadline = started + 300
            while time.perf_counter() < deadline:
                try:
                    with urllib.request.urlopen("http://127.0.0.1:8080/ping", timeout=2) as r:
                        if r.status == 200:
                            break
                except (urllib.error.URLError, OSError):
                    pass
                container.reload()
                if container.status not in ("created", "running"):
                    raise SystemExit(f"{tag} exited:\n{container.logs().decode()[-2000:]}")
                time.sleep(0.05)
            else:
                raise SystemExit(f"{tag} never answered /ping")
            samples.append(time.perf_counter() - started)
        finally:
            container.remove(force=True)
        while not all(port_free(p) for p in PORTS):
            time.sleep(0.1)
    return statistics.median(samples)


def image_size(engine, tag: str) -> int:
    return int(engine.images.get(tag).attrs["Size"])


def env_size(engine, tag: str) -> int:
    out = engine.containers.run(
        tag, ["-sb", "/opt/env"], entrypoint=["du"], network_mode="none", remove=True
    )
    return int(out.decode().split()[0])


def touch_model(model: Path, n: int) -> None:
    with (model / "MLmodel").open("a") as handle:
        handle.write(f"# bench: model-only change {n}\n")


# ------------------------------------------------------------------------------------------
# The two tools


def bench_envbuild(engine, model: Path, tag: str, ca: Path, runs: int) -> dict:
    started = time.perf_counter()
    proc = cli("image", str(model), "--context", str(Path(tempfile.mkdtemp()) / "ctx"))
    if proc.returncode != 0:
        raise SystemExit(f"envbuild could not lock the model:\n{proc.stderr}")
    lock_seconds = time.perf_counter() - started
    args = ("image", str(model), "-t", tag, "--network", "host", "--ca-cert", str(ca), "--json")
    started = time.perf_counter()
    proc = cli(*args, "--no-cache")
    cold = time.perf_counter() - started
    SUPERSEDED.append(engine.images.get(tag).id)  # untagged by the rebuild below
    if proc.returncode != 0:
        raise SystemExit(f"envbuild image failed:\n{proc.stderr}")
    touch_model(model, 1)
    started = time.perf_counter()
    proc = cli(*args)
    rebuild = time.perf_counter() - started
    result = json.loads(proc.stdout)
    return {
        "lock (first time, then cached)": lock_seconds,
        "cold build": cold,
        "rebuild after model change": rebuild,
        "rebuild steps from cache": f"{result['cached_steps']}/{result['steps']}",
        "size": image_size(engine, tag),
        "env": env_size(engine, tag),
        "start to /ping 200": time_to_ping(engine, tag, runs),
    }


def mlflow_context(model: Path, folder: Path, ca: Path) -> tuple[Path, str]:
    """`mlflow models generate-dockerfile --env-manager local`, plus the CA lines; (dir, FROM)."""
    if folder.exists():
        shutil.rmtree(folder)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "generate-dockerfile",
            "-m",
            str(model),
            "-d",
            str(folder),
            "--env-manager",
            "local",
        ],
        env=bench_env(),
        check=True,
        capture_output=True,
        text=True,
    )
    dockerfile = folder / "Dockerfile"
    text = dockerfile.read_text()
    base = re.search(r"^FROM (\S+)", text, flags=re.M).group(1)
    shutil.copyfile(ca, folder / "host-ca.pem")
    ca_lines = (
        f"COPY host-ca.pem {CA_IN_IMAGE}\n"
        f"ENV SSL_CERT_FILE={CA_IN_IMAGE} PIP_CERT={CA_IN_IMAGE} REQUESTS_CA_BUNDLE={CA_IN_IMAGE}\n"
    )
    dockerfile.write_text(re.sub(r"^(FROM .*\n)", r"\1" + ca_lines, text, count=1, flags=re.M))
    return folder, base


def ensure_base(engine, base: str, standin: str) -> bool:
    """Tag the stand-in as MLflow's exact base when it is absent; True if we tagged it."""
    import docker

    try:
        engine.images.get(base)
        return False
    except docker.errors.ImageNotFound:
        pass
    repo, tag = base.rsplit(":", 1)
    engine.images.get(standin).tag(repo, tag)
    return True


def bench_mlflow(engine, model: Path, tag: str, ca: Path, standin: str, runs: int, work: Path):
    folder, base = mlflow_context(model, work / "mlflow-context", ca)
    tagged = ensure_base(engine, base, standin)
    out: dict = {"base": base + (f" (= {standin})" if tagged else "")}
    try:
        try:
            out["cold build"], _ = build(engine, folder, tag, nocache=True)
            SUPERSEDED.append(engine.images.get(tag).id)
        except BuildFailed as exc:
            out["failed"] = str(exc)
            return out
        touch_model(model, 2)
        # the context is regenerated, as a user would (not timed: envbuild's includes its own)
        folder, _ = mlflow_context(model, work / "mlflow-context", ca)
        try:
            seconds, log = build(engine, folder, tag, nocache=False)
        except BuildFailed as exc:
            out["rebuild failed"] = str(exc)
            return out
        out["rebuild after model change"] = seconds
        steps = len(re.findall(r"^Step \d+/\d+", log, flags=re.M))
        froms = len(re.findall(r"^Step \d+/\d+ : FROM", log, flags=re.M))
        out["rebuild steps from cache"] = f"{log.count('Using cache')}/{steps - froms}"
        out["size"] = image_size(engine, tag)
        out["start to /ping 200"] = time_to_ping(engine, tag, runs)
        return out
    finally:
        if tagged:
            engine.images.remove(base, noprune=True)


def remove_build_stages(engine, since: float) -> None:
    """envbuild's build-stage images made by this run (~1 GB each): not left behind."""
    import calendar

    import docker

    for image in engine.images.list(filters={"label": "envbuild.stage=build", "dangling": True}):
        created = calendar.timegm(time.strptime(image.attrs["Created"][:19], "%Y-%m-%dT%H:%M:%S"))
        if created >= since - 5:
            with contextlib.suppress(docker.errors.APIError):
                engine.images.remove(image.id)


def show(name: str, value) -> str:
    if isinstance(value, float):
        return f"{value:8.1f} s"
    if isinstance(value, int):
        return f"{value / 1e6:8.0f} MB"
    return f"{value}"


# ------------------------------------------------------------------------------------------
# The PyTorch model: CPU vs CUDA lock


def _zip_unpacked(read_tail, read_range, size: int) -> int:
    """Sum of a zip's uncompressed sizes from its central directory, read by ranges (so that
    a 900 MB wheel costs a few hundred kB)."""
    import struct

    tail = read_tail(min(size, 1 << 16))
    at = tail.rfind(b"PK\x05\x06")
    if at < 0:
        raise ValueError("no end of central directory")
    cd_size, cd_offset = struct.unpack("<II", tail[at + 12 : at + 20])
    locator = tail.rfind(b"PK\x06\x07", 0, at)
    if cd_offset == 0xFFFFFFFF and locator >= 0:  # zip64
        (eocd64,) = struct.unpack("<Q", tail[locator + 8 : locator + 16])
        record = read_range(eocd64, 56)
        cd_size, cd_offset = struct.unpack("<QQ", record[40:56])
    directory = read_range(cd_offset, cd_size)
    total, i = 0, 0
    while directory.startswith(b"PK\x01\x02", i):
        (unpacked,) = struct.unpack("<I", directory[i + 24 : i + 28])
        name_len, extra_len, comment_len = struct.unpack("<HHH", directory[i + 28 : i + 34])
        if unpacked == 0xFFFFFFFF:  # the real size is in the zip64 extra field
            extra = directory[i + 46 + name_len : i + 46 + name_len + extra_len]
            (unpacked,) = struct.unpack("<Q", extra[4:12])
        total += unpacked
        i += 46 + name_len + extra_len + comment_len
    return total


def unpacked_size(url: str, size: int, local: Path | None = None) -> int:
    """What a wheel unpacks to, without downloading it (HTTP range requests), or from the
    local file."""
    if local is not None:
        import zipfile

        with zipfile.ZipFile(local) as archive:
            return sum(info.file_size for info in archive.infolist())

    def get(headers: dict[str, str]) -> bytes:
        request = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.read()

    return _zip_unpacked(
        lambda n: get({"Range": f"bytes=-{n}"}),
        lambda start, length: get({"Range": f"bytes={start}-{start + length - 1}"}),
        size,
    )


def lock_files(lock_path: Path) -> list[dict]:
    """The file an install of the lock takes on this machine's platform (linux/amd64, cp311:
    the lock's target), one per package: a compatible wheel, else the sdist."""
    import tomllib
    from packaging.tags import sys_tags
    from packaging.utils import parse_wheel_filename

    from envbuild.lock.pylock import file_name

    supported = {str(t) for t in sys_tags()}
    chosen = []
    for package in tomllib.loads(lock_path.read_text()).get("packages", []):
        pick = next(
            (
                w
                for w in package.get("wheels", [])
                if {str(t) for t in parse_wheel_filename(file_name(w))[3]} & supported
            ),
            package.get("sdist"),
        )
        if pick is not None:
            chosen.append(pick)
    return chosen


def lock_sizes(lock_path: Path, local: dict[str, Path]) -> tuple[int, int, int]:
    """(packages, bytes to download, bytes unpacked) of the lock, downloading nothing."""
    from envbuild.lock.pylock import file_name

    files = lock_files(lock_path)
    download = unpacked = 0
    for item in files:
        name = file_name(item)
        path = local.get(name)
        size = int(item.get("size") or (path.stat().st_size if path else 0))
        download += size
        if name.endswith(".whl"):
            unpacked += unpacked_size(str(item.get("url")), size, path)
        else:
            unpacked += size  # an sdist: about what it builds
    return len(files), download, unpacked


def bench_torch(engine, ca: Path, keep: bool) -> int:
    from tests.integration.torch_model import logged_torch_model

    tag = "envbuild-bench-accel/torch-cpu:latest"
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="envbuild-bench-torch-") as tmp:
        with logged_torch_model(Path(tmp) / "torch") as logged:
            model, mirror = logged["model"], logged["mirror"]
            os.environ["ENVBUILD_TORCH_INDEX_URL"] = mirror  # bench_env() passes it on
            local = {logged["wheel"].name: logged["wheel"]}
            proc = cli("capture", str(model), "--python", str(logged["python"]), "--write")
            if proc.returncode != 0:
                raise SystemExit(f"capture failed:\n{proc.stderr}")
            cpu_lock = model / "pylock.toml"
            proc = cli("env", str(model), "--json", "--no-compile")
            if proc.returncode != 0:
                raise SystemExit(f"envbuild env failed:\n{proc.stderr}")
            env_path = Path(json.loads(proc.stdout)["environment"]["path"])
            cpu_env = du(env_path)
            cpu_count, cpu_download, cpu_unpacked = lock_sizes(cpu_lock, local)
            args = ("image", str(model), "-t", tag, "--network", "host", "--ca-cert", str(ca))
            t0 = time.perf_counter()
            proc = cli(*args, "--no-cache", "--json")
            cold = time.perf_counter() - t0
            if proc.returncode != 0:
                raise SystemExit(f"envbuild image failed:\n{proc.stderr}")
            cpu_image = image_size(engine, tag)
            cuda_lock = Path(tmp) / "pylock.cuda.toml"
            t0 = time.perf_counter()
            proc = cli("lock", str(model), "--accelerator", "cuda", "-o", str(cuda_lock))
            cuda_resolve = time.perf_counter() - t0
            if proc.returncode != 0:
                raise SystemExit(f"the CUDA lock failed:\n{proc.stderr}")
            cuda_count, cuda_download, cuda_unpacked = lock_sizes(cuda_lock, local)
        if not keep:
            import docker

            with contextlib.suppress(docker.errors.APIError):
                engine.images.remove(tag, force=True)
            remove_build_stages(engine, started)
    print("PyTorch model (torch 2.13.0, Python 3.11, linux/amd64), captured from a CPU venv")
    print(f"{'':34}{'cpu (+cpu)':>14}{'cuda':>14}{'ratio':>9}")
    rows = [
        ("packages in the lock", cpu_count, cuda_count),
        ("wheels to download", cpu_download, cuda_download),
        ("wheels unpacked (from the lock)", cpu_unpacked, cuda_unpacked),
        ("environment", cpu_env, None),
        ("image", cpu_image, None),
    ]
    for name, a, b in rows:
        number = name.startswith("packages")
        left = f"{a:14d}" if number else f"{show(name, a):>14}"
        right = "-" if b is None else (f"{b}" if number else show(name, b).strip())
        ratio = f"{b / a:8.1f}x" if b is not None and a else ""
        print(f"{name:34}{left}{right:>14}{ratio:>9}")
    # the CUDA environment and image, from what its wheels unpack to (the CPU row shows how
    # close that is to a real environment); nothing of it is downloaded
    env_estimate = int(cuda_unpacked * cpu_env / cpu_unpacked) if cpu_unpacked else 0
    image_estimate = cpu_image - cpu_env + env_estimate
    print(f"{'environment (estimate)':34}{'':>14}{show('', env_estimate):>14}")
    print(f"{'image (estimate)':34}{'':>14}{show('', image_estimate):>14}")
    print(f"{'cold image build (--no-cache)':34}{show('', cold):>14}{'-':>14}")
    print(
        f"cuda: resolved only ({cuda_resolve:.1f} s), nothing downloaded: sizes from the lock, "
        "unpacked sizes from each wheel's zip directory (HTTP range requests); the estimates "
        f"scale them by the cpu environment / its wheels unpacked ({cpu_env / cpu_unpacked:.2f})"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of the start-up timing")
    parser.add_argument("--model", type=Path, help="an MLflow model folder (default: sklearn iris)")
    parser.add_argument("--keep", action="store_true", help="keep the images")
    parser.add_argument(
        "--torch", action="store_true", help="the PyTorch model: CPU vs CUDA lock (see above)"
    )
    args = parser.parse_args()
    if args.torch:
        import docker

        return bench_torch(docker.from_env(timeout=3600), ca_bundle(), args.keep)

    import docker

    from envbuild.model import load_model

    engine = docker.from_env(timeout=3600)
    started = time.time()
    ca = ca_bundle()
    with tempfile.TemporaryDirectory(prefix="envbuild-bench-") as tmp:
        work = Path(tmp)
        model = (
            shutil.copytree(args.model, work / args.model.name) if args.model else make_model(work)
        )
        spec = load_model(model)
        minor = ".".join((spec.pyfunc.python_version or "3.11").split(".")[:2])
        standin = f"python:{minor}-slim"
        base_size = image_size(engine, standin)
        model_size = du(model)
        tags = {
            "envbuild": "envbuild-bench/envbuild:latest",
            "mlflow": "envbuild-bench/mlflow:latest",
        }
        try:
            ours = bench_envbuild(engine, model, tags["envbuild"], ca, args.runs)
            theirs = bench_mlflow(engine, model, tags["mlflow"], ca, standin, args.runs, work)
        finally:
            if not args.keep:
                for ref in [*tags.values(), *SUPERSEDED]:
                    with contextlib.suppress(docker.errors.APIError):
                        engine.images.remove(ref, force=True)
                remove_build_stages(engine, started)
    floor = base_size + ours["env"] + model_size
    print(
        f"model: {spec.path.name} (Python {minor}), base {standin} {show('', base_size)}, "
        f"environment {show('', ours['env'])}, model {model_size / 1e3:.0f} kB"
    )
    print(f"{'':34}{'envbuild':>14}{'mlflow':>14}{'ratio':>9}")
    for key in (
        "cold build",
        "rebuild after model change",
        "rebuild steps from cache",
        "size",
        "start to /ping 200",
    ):
        a, b = ours.get(key), theirs.get(key)
        ratio = (
            f"{b / a:8.1f}x" if isinstance(a, (int, float)) and isinstance(b, (int, float)) else ""
        )
        print(f"{key:34}{show(key, a):>14}{show(key, b) if b is not None else '-':>14}{ratio:>9}")
    print(
        f"{'size / (base + env + model)':34}{ours['size'] / floor:13.2f}x"
        + (f"{theirs['size'] / floor:13.2f}x" if "size" in theirs else "")
    )
    print(f"envbuild lock resolution (first time): {ours['lock (first time, then cached)']:.1f} s")
    print(f"mlflow base: {theirs['base']}")
    for key in ("failed", "rebuild failed"):
        if key in theirs:
            print(f"mlflow {'re' if key.startswith('rebuild') else ''}build failed at:")
            print(f"  {theirs[key]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
