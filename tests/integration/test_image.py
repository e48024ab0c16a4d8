"""`envbuild image`, `predict --kind docker` and `serve --kind docker` with a real engine.

Images are built for real MLflow models (scikit-learn on Python 3.11, scikit-learn saved from
Python 3.10, a custom PythonModel) and for a tiny hand-written model (six + PyYAML, builds in
seconds) that the edge cases use. Every test asserts what a user sees: the predictions a container
serves against MLflow's own, the image's configuration, the build's cache use as the classic
builder reports it ("Using cache") and the image's layers, the bytes of the saved image, exit
codes and messages.

Two facts of this machine the tests live with (see ../shared/MACHINE.md):

* no registry, classic builder, no bridge network: builds and serving containers use host
  networking, and the stand-in ``python:X.Y-slim`` images come from ``python_slim_images``;
* HTTPS goes through a TLS-intercepting proxy, so the host's CA bundle goes into the build stage
  (``--ca-cert``), and pip's configuration adds local ``file://`` indexes and a find-links folder.
  A lock resolved from those would name files on this disk, which no image build can reach, so the
  CLI runs here with pip's configuration files and ``PIP_FIND_LINKS`` neutralized: the locks come
  from PyPI, as on a user's CI.

What the tests build is removed at the end (tagged images, containers); the classic builder's
layer cache (untagged build-stage images) stays, as after any ``docker build``.
"""

from __future__ import annotations

import calendar
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from envbuild.envspec import read_env
from envbuild.model import load_model
from tests.conftest import run_cli
from tests.integration import docker_images
from tests.integration.docker_images import host_ca_bundle, remove_image, run_in_image
from tests.integration.mlflow_oracle import mlflow_predictions

docker_engine = docker_images.docker_engine
python_slim_images = docker_images.python_slim_images

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.network, pytest.mark.slow]

RUNTIME = Path(__file__).resolve().parents[2] / "envbuild" / "runtime"
REPO = Path(__file__).resolve().parents[2]
TEST_REPO = "envbuild-test/image"
RUNNER_IN_IMAGE = "/opt/env/bin/python /opt/envbuild/runtime/runner.py"
EXAMPLE_IN_IMAGE = "/opt/model/serving_input_example.json"


# ------------------------------------------------------------------------------------------
# Helpers


def cli_env(drop: tuple[str, ...] = (), **extra: str) -> dict[str, str]:
    """The environment of the CLI runs: this machine's local pip indexes left out (see above)."""
    env = dict(os.environ)
    for name in ("PIP_FIND_LINKS", *drop):
        env.pop(name, None)
    env["PIP_CONFIG_FILE"] = os.devnull
    env.update(extra)
    return env


def new_tag(name: str) -> str:
    return f"{TEST_REPO}-{name}:{uuid.uuid4().hex[:12]}"


def build(model: Path, tag: str, *extra: str, env: dict[str, str] | None = None) -> dict:
    """``envbuild image MODEL -t TAG --network host --ca-cert <host bundle> --json``."""
    proc = run_cli(
        "image",
        str(model),
        "-t",
        tag,
        "--network",
        "host",
        "--ca-cert",
        str(host_ca_bundle()),
        *extra,
        "--json",
        env=env or cli_env(),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(url: str, body: bytes | None = None, timeout: float = 60) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_for_ping(base: str, deadline: float, alive=lambda: True) -> None:
    while time.monotonic() < deadline:
        assert alive(), "the server stopped"
        with contextlib.suppress(OSError):
            if http(f"{base}/ping", timeout=5)[0] == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"{base}/ping never answered 200")


@contextlib.contextmanager
def serving(engine, tag: str, *, workers: int | None = None) -> Iterator[tuple[str, object]]:
    """The image's entrypoint serving on a free loopback port (host networking: no bridge here)."""
    port = free_port()
    container = engine.containers.run(
        tag,
        ["serve", "--model", "/opt/model", "--host", "127.0.0.1", "--port", str(port)],
        detach=True,
        network_mode="host",
        environment={"ENVBUILD_WORKERS": str(workers)} if workers else {},
    )
    try:
        base = f"http://127.0.0.1:{port}"

        def alive() -> bool:
            container.reload()
            return container.status in ("created", "running")

        try:
            wait_for_ping(base, time.monotonic() + 240, alive)
        except AssertionError:
            raise AssertionError(container.logs().decode(errors="replace")) from None
        yield base, container
    finally:
        container.remove(force=True)


def saved_image_contains(engine, ref: str, needles: list[bytes]) -> dict[bytes, bool]:
    """Scan ``docker save REF`` (every layer's files, the config and its history) for byte
    strings; layers are plain tars inside the saved tar, so file contents appear verbatim."""
    found = dict.fromkeys(needles, False)
    keep = max(len(n) for n in needles) - 1
    previous = b""
    for chunk in engine.images.get(ref).save(chunk_size=1 << 20):
        window = previous + chunk
        for needle in needles:
            found[needle] = found[needle] or needle in window
        previous = window[-keep:]
    return found


def python_in(tag: str, code: str) -> str:
    """Run the image's environment Python (not its entrypoint) as the image's user."""
    out = docker_images.client().containers.run(
        tag, ["-c", code], entrypoint=["/opt/env/bin/python"], network_mode="none", remove=True
    )
    return out.decode()


def predict_example_in(tag: str) -> dict:
    """The image's runner predicting its model's serving example (a newline is added: the
    engine's log drops a last line that has none, and the runner writes JSON without one)."""
    out = docker_images.client().containers.run(
        tag,
        ["-c", f"{RUNNER_IN_IMAGE} predict --model /opt/model --input {EXAMPLE_IN_IMAGE}; echo"],
        entrypoint=["/bin/sh"],
        network_mode="none",
        remove=True,
    )
    return json.loads(out.decode().strip().splitlines()[-1])


def reuse_tag(model: Path) -> str:
    """The tag `--kind docker` gives this model's image (computed as envbuild does)."""
    from envbuild.image import plan_image

    saved = {k: os.environ.get(k) for k in ("PIP_CONFIG_FILE", "PIP_FIND_LINKS")}
    os.environ["PIP_CONFIG_FILE"] = os.devnull
    os.environ.pop("PIP_FIND_LINKS", None)
    try:
        return plan_image(load_model(model), read_env(load_model(model))).tag
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# ------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def created(docker_engine) -> Iterator[list[str]]:
    """Tags the tests create; removed when the module ends, with any container left and the
    build-stage images (the layer cache, ~1 GB per lock) built meanwhile, unless
    ENVBUILD_TEST_KEEP_BUILD_CACHE=1 keeps those for faster reruns."""
    started = time.time()
    tags: list[str] = []
    yield tags
    for container in docker_engine.containers.list(all=True, filters={"label": "envbuild.role"}):
        container.remove(force=True)
    for tag in tags:
        remove_image(tag)
    if os.environ.get("ENVBUILD_TEST_KEEP_BUILD_CACHE") == "1":
        return
    import docker

    stages = docker_engine.images.list(filters={"label": "envbuild.stage=build", "dangling": True})
    for image in stages:
        created_at = calendar.timegm(
            time.strptime(image.attrs["Created"][:19], "%Y-%m-%dT%H:%M:%S")
        )
        if created_at >= started - 5:
            with contextlib.suppress(docker.errors.APIError):
                docker_engine.images.remove(image.id)


TINY_MLMODEL = """\
flavors:
  python_function:
    loader_module: tiny_loader
    code: code
    python_version: 3.11.7
    env:
      virtualenv: python_env.yaml
model_uuid: 4b1d0c0ffee0123456789abcdef01234
run_id: tiny-run
mlflow_version: 2.20.0
utc_time_created: '2024-05-01 10:00:00.000000'
signature:
  inputs: '[{"type": "double", "name": "a", "required": true}, {"type": "double", "name": "b", "required": true}]'
  outputs: '[{"type": "double", "required": true}]'
"""

TINY_LOADER = """\
import six


class Adder:
    def predict(self, model_input, params=None):
        return [row["a"] + row["b"] for row in model_input]


def _load_pyfunc(path):
    assert six.PY3
    return Adder()
"""


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A pyfunc folder without mlflow (MLflow's loader protocol): six and PyYAML only."""
    path = tmp_path_factory.mktemp("tiny") / "tiny"
    (path / "code").mkdir(parents=True)
    (path / "MLmodel").write_text(TINY_MLMODEL)
    (path / "python_env.yaml").write_text(
        "python: 3.11.7\nbuild_dependencies:\n- pip\ndependencies:\n- -r requirements.txt\n"
    )
    (path / "requirements.txt").write_text("six==1.16.0\npyyaml==6.0.2\n")
    (path / "code" / "tiny_loader.py").write_text(TINY_LOADER)
    (path / "serving_input_example.json").write_text(
        json.dumps({"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2.5], [3, -1]]}})
    )
    return path


def copy_model(model: Path, dest: Path) -> Path:
    shutil.copytree(model, dest)
    return dest


@pytest.fixture(scope="module")
def images(python_slim_images, created, request) -> dict:
    """Build each real model's image once: name -> (model, tag, `image --json` result)."""
    built: dict = {}

    def get(name: str) -> tuple[Path, str, dict]:
        if name not in built:
            if name == "py310":
                model, _ = request.getfixturevalue("sklearn_310_model")
            else:
                model = request.getfixturevalue(
                    {"sklearn": "sklearn_iris_model", "custom": "custom_pyfunc_model"}[name]
                )
            tag = new_tag(name)
            created.append(tag)
            built[name] = (model, tag, build(model, tag))
        return built[name]

    return get  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------
# Real models: the container serves exactly what MLflow predicts


def expected(name: str, model: Path, request) -> tuple[dict, list]:
    if name == "custom":
        body = {"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2.5], [3, -1.0]]}}
        return body, mlflow_predictions(model, body)
    body = json.loads((model / "serving_input_example.json").read_text())
    if name == "py310":
        return body, request.getfixturevalue("sklearn_310_model")[1]
    return body, mlflow_predictions(model, body)


@pytest.mark.parametrize("name", ["sklearn", "custom", "py310"])
def test_container_serves_mlflow_predictions(name, images, docker_engine, request):
    model, tag, result = images(name)
    minor = "3.10" if name == "py310" else "3.11"
    assert result["base_image"] == docker_images.base_image_tag(minor)
    assert result["python"].startswith(minor + ".")
    body, want = expected(name, model, request)
    with serving(docker_engine, tag) as (base, container):
        status, answer = http(f"{base}/invocations", json.dumps(body).encode())
        assert status == 200, answer
        assert json.loads(answer)["predictions"] == want
        status, version = http(f"{base}/metadata")
        assert status == 200
        assert json.loads(version)["python_version"].startswith(minor + ".")
        status, doc = http(f"{base}/openapi.json")
        assert status == 200
        from openapi_spec_validator import validate

        document = json.loads(doc)
        assert document["openapi"].startswith("3.")
        validate(document)
        assert container.exec_run(["id", "-u"]).output.decode().strip() == "10001"


def test_image_configuration_labels_and_stages(images, docker_engine):
    from envbuild import __version__
    from envbuild.model import load_model

    model, tag, result = images("sklearn")
    image = docker_engine.images.get(tag)
    config = image.attrs["Config"]
    assert config["User"] == "10001:10001"
    assert set(config["ExposedPorts"]) == {"8080/tcp"}
    assert config["Entrypoint"] == ["/opt/env/bin/python", "/opt/envbuild/runtime/runner.py"]
    assert config["Cmd"] == [
        "serve",
        "--model",
        "/opt/model",
        "--host",
        "0.0.0.0",
        "--port",
        "8080",
    ]
    assert "/ping" in " ".join(config["Healthcheck"]["Test"])
    assert "ENVBUILD_WORKERS=1" in config["Env"]
    assert not any(e.startswith(("SSL_CERT_FILE=", "PIP_CERT=", "UV_")) for e in config["Env"])
    labels = config["Labels"]
    assert "envbuild.stage" not in labels  # nothing of the build stage's config either
    spec = load_model(model)
    assert labels["envbuild.model.uuid"] == spec.model_uuid
    assert labels["envbuild.lock.digest"] == result["lock_digest"]
    assert labels["envbuild.model.digest"] == result["model_digest"]
    assert labels["envbuild.version"] == __version__
    assert labels["org.opencontainers.image.title"] == "sklearn-iris"
    assert labels["org.opencontainers.image.base.name"] == docker_images.base_image_tag("3.11")
    assert labels["org.opencontainers.image.version"] == tag.rsplit(":", 1)[1]
    # the build stage's tools and inputs stayed there
    out = python_in(
        tag,
        "import os, shutil; print(shutil.which('uv'), os.path.exists('/etc/envbuild-build'),"
        " os.path.exists('/opt/envbuild-build'), os.path.exists('/opt/env/bin/pip'))",
    )
    assert out.split() == ["None", "False", "False", "False"]


def test_default_command_becomes_healthy_with_workers_from_the_environment(images, docker_engine):
    """The image as `docker run` starts it: CMD serves on 8080, HEALTHCHECK turns healthy,
    ENVBUILD_WORKERS sets the worker count, the user can read but not write env and model."""
    _, tag, _ = images("sklearn")
    container = docker_engine.containers.run(
        tag, detach=True, network_mode="none", environment={"ENVBUILD_WORKERS": "2"}
    )
    try:
        deadline = time.monotonic() + 180
        status = None
        while time.monotonic() < deadline:
            container.reload()
            status = container.attrs["State"].get("Health", {}).get("Status")
            if status == "healthy" or container.status != "running":
                break
            time.sleep(1)
        assert status == "healthy", container.logs().decode(errors="replace")
        runners = [
            p for p in container.top(ps_args="-eo pid,args")["Processes"] if "runner.py" in p[-1]
        ]
        assert len(runners) == 3, runners  # the supervisor and two workers
        probe = (
            "import os; print(os.getuid(), os.access('/opt/env/lib', os.W_OK), "
            "os.access('/opt/model/MLmodel', os.W_OK), os.access('/opt/model/MLmodel', os.R_OK))"
        )
        out = container.exec_run(["/opt/env/bin/python", "-c", probe]).output.decode().split()
        assert out == ["10001", "False", "False", "True"]
        container.stop(timeout=30)
        container.reload()
        assert container.attrs["State"]["ExitCode"] == 0  # SIGTERM handled, not killed (137)
    finally:
        container.remove(force=True)


def test_model_only_change_rebuilds_only_the_model_layer(sklearn_iris_model, tmp_path, created):
    model = copy_model(sklearn_iris_model, tmp_path / "sklearn-iris")
    first_tag, second_tag = new_tag("rebuild"), new_tag("rebuild")
    created += [first_tag, second_tag]
    first = build(model, first_tag)
    with (model / "MLmodel").open("a") as handle:
        handle.write("# touched by the test: a model-only change\n")
    second = build(model, second_tag)
    assert second["lock_digest"] == first["lock_digest"]
    assert second["model_digest"] != first["model_digest"]
    # What the classic builder ran: the model's COPY and the label that names its digest.
    assert [step.split()[0] for step in second["uncached"]] == ["COPY", "LABEL"], second
    assert second["uncached"][0] == "COPY model/ /opt/model/"
    log = Path(second["log"]).read_text()
    sync_step = log[log.index("RUN uv pip sync") :]
    assert sync_step.split("\n", 2)[1].strip() == "---> Using cache"
    # ... and the images share every layer but the model's.
    engine = docker_images.client()
    layers_a = engine.images.get(first_tag).attrs["RootFS"]["Layers"]
    layers_b = engine.images.get(second_tag).attrs["RootFS"]["Layers"]
    assert len(layers_a) == len(layers_b)
    assert layers_a[:-1] == layers_b[:-1]
    assert layers_a[-1] != layers_b[-1]


# ------------------------------------------------------------------------------------------
# --kind docker


def test_predict_kind_docker_prints_what_envbuild_predict_prints(
    sklearn_iris_model, python_slim_images, created, isolated_envbuild_cache, tmp_path
):
    model = sklearn_iris_model
    created.append(reuse_tag(model))
    in_docker = run_cli("predict", str(model), "--kind", "docker", env=cli_env())
    assert in_docker.returncode == 0, in_docker.stderr
    in_venv = run_cli("predict", str(model), env=cli_env())
    assert in_venv.returncode == 0, in_venv.stderr
    assert in_docker.stdout == in_venv.stdout
    request = json.loads((model / "serving_input_example.json").read_text())
    assert json.loads(in_docker.stdout)["predictions"] == mlflow_predictions(model, request)

    # reused, not rebuilt: no new build log; CSV input and -o work as with a venv
    logs = isolated_envbuild_cache / "logs"
    before = sorted(logs.glob("*docker-build*"))
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).data.head(20)
    csv = tmp_path / "in.csv"
    frame.to_csv(csv, index=False)
    out = tmp_path / "out.json"
    proc = run_cli(
        "predict", str(model), "--kind", "docker", "-i", str(csv), "-o", str(out), env=cli_env()
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert sorted(logs.glob("*docker-build*")) == before
    split = json.loads(frame.to_json(orient="split", index=False))
    assert json.loads(out.read_text())["predictions"] == mlflow_predictions(
        model, {"dataframe_split": split}
    )
    bad = tmp_path / "bad.json"
    bad.write_text('{"dataframe_split": {"columns": ["x"], ')
    proc = run_cli("predict", str(model), "--kind", "docker", "-i", str(bad), env=cli_env())
    assert proc.returncode == 2
    assert proc.stdout == "" and "Traceback" not in proc.stderr


def test_serve_kind_docker_answers_and_stops_on_sigterm(
    sklearn_iris_model, python_slim_images, created, docker_engine
):
    model = sklearn_iris_model
    created.append(reuse_tag(model))
    server = subprocess.Popen(
        [sys.executable, "-m", "envbuild", "serve", str(model), "--kind", "docker", "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )
    try:
        port = None
        deadline = time.monotonic() + 600  # may build the image first
        while port is None and time.monotonic() < deadline:
            line = server.stderr.readline()
            match = re.search(r"listening on http://[^:]+:(\d+)", line)
            if match:
                port = int(match.group(1))
            assert server.poll() is None, "serve exited early"
        assert port
        base = f"http://127.0.0.1:{port}"
        wait_for_ping(base, time.monotonic() + 180, lambda: server.poll() is None)
        body = (model / "serving_input_example.json").read_bytes()
        status, answer = http(f"{base}/invocations", body)
        assert status == 200
        assert json.loads(answer)["predictions"] == mlflow_predictions(model, json.loads(body))
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=60)
    assert code == 0
    left = docker_engine.containers.list(all=True, filters={"label": "envbuild.role=serve"})
    assert left == []


def test_predict_kind_docker_reads_stdin_and_maps_exit_codes(
    tiny_model, python_slim_images, created
):
    created.append(reuse_tag(tiny_model))
    body = json.dumps({"dataframe_records": [{"a": 1, "b": 2}, {"a": 0.5, "b": 0.25}]})
    argv = [sys.executable, "-m", "envbuild", "predict", str(tiny_model), "--kind", "docker"]
    proc = subprocess.run(
        [*argv, "-i", "-"],
        input=body,
        capture_output=True,
        text=True,
        env=cli_env(),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"predictions": [3, 0.75]}
    proc = run_cli(
        "predict", str(tiny_model), "--kind", "docker", "-i", "/nonexistent.json", env=cli_env()
    )
    assert proc.returncode == 2 and "input file not found" in proc.stderr


def test_reproduce_kind_docker_verifies_and_predicts_in_the_image(python_slim_images, created):
    """The example ships its lock and expected output: the image is built from that very lock,
    its installed distributions are checked against it and its predictions compared."""
    model = REPO / "examples" / "sklearn-iris"
    created.append(reuse_tag(model))
    proc = run_cli("reproduce", str(model), "--kind", "docker", "--json", env=cli_env())
    report = json.loads(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [(s["name"], s["status"]) for s in report["steps"]] == [
        (name, "passed") for name in ("lock", "build", "verify", "predict", "compare")
    ]


# ------------------------------------------------------------------------------------------
# Build-only inputs never reach the final image


def test_ca_and_index_credentials_stay_in_the_build_stage(
    tiny_model, python_slim_images, created, tmp_path, monkeypatch
):
    marker = f"envbuild-test-ca-marker-{uuid.uuid4().hex}"
    secret = f"tok-{uuid.uuid4().hex}"
    ca = tmp_path / "corporate-ca.pem"
    ca.write_bytes(host_ca_bundle().read_bytes() + f"\n# {marker}\n".encode())
    index = f"https://envbuild-test:{secret}@index.invalid/simple"
    env = cli_env(UV_EXTRA_INDEX_URL=index)
    tag = new_tag("secrets")
    created.append(tag)
    # the model's own lock first, without the made-up index (a resolution would query it, and
    # a cached lock is keyed by the index settings, so it would be resolved again)
    model = copy_model(tiny_model, tmp_path / "tiny")
    first = run_cli("lock", str(model), env=cli_env())
    assert first.returncode == 0, first.stderr
    proc = run_cli("image", str(model), "-t", tag, "--ca-cert", str(ca), "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["ca_source"] == "--ca-cert"
    assert result["build_args"] == ["UV_EXTRA_INDEX_URL"]
    assert secret not in proc.stdout + proc.stderr
    assert secret not in Path(result["log"]).read_text()

    engine = docker_images.client()
    found = saved_image_contains(engine, tag, [marker.encode(), secret.encode()])
    assert found == {marker.encode(): False, secret.encode(): False}
    assert secret not in json.dumps(engine.images.get(tag).attrs)
    assert secret not in json.dumps(engine.images.get(tag).history())

    # The same scan finds both in the build stage (so it would find them in the image).
    from envbuild.image import ImageOptions, plan_image, write_context
    from envbuild.image import engine as engine_api

    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.setenv("UV_EXTRA_INDEX_URL", index)
    spec = load_model(model)
    plan = plan_image(spec, read_env(spec), ImageOptions(ca_cert=ca))
    stage = new_tag("build-stage")
    created.append(stage)
    context = write_context(plan, tmp_path / "stage-context")
    engine_api.build(engine, context, stage, build_args=plan.build_args, target="build")
    found = saved_image_contains(engine, stage, [marker.encode(), secret.encode()])
    assert found == {marker.encode(): True, secret.encode(): True}


# ------------------------------------------------------------------------------------------
# Failures


def corrupt_hash(lock_text: str, package: str) -> str:
    """The lock with every sha256 of ``package``'s files replaced by zeros."""
    blocks = lock_text.split("[[packages]]")
    for i, block in enumerate(blocks):
        if re.search(rf'^name = "{package}"$', block, flags=re.M):
            blocks[i] = re.sub(r'sha256 = "[0-9a-f]{64}"', 'sha256 = "' + "0" * 64 + '"', block)
    changed = "[[packages]]".join(blocks)
    assert changed != lock_text
    return changed


def test_failing_install_names_the_step_the_package_and_the_log(
    tiny_model, python_slim_images, created, tmp_path
):
    model = copy_model(tiny_model, tmp_path / "tiny-bad")
    first = run_cli("image", str(model), "--context", str(tmp_path / "ctx"), env=cli_env())
    assert first.returncode == 0, first.stderr
    lock = (tmp_path / "ctx" / "pylock.toml").read_text()
    (model / "pylock.toml").write_text(corrupt_hash(lock, "six"))  # the model's own lock is used
    tag = new_tag("bad")
    created.append(tag)
    proc = run_cli(
        "image", str(model), "-t", tag, "--ca-cert", str(host_ca_bundle()), env=cli_env()
    )
    assert proc.returncode == 4, proc.stderr
    lines = proc.stderr.strip().splitlines()
    error = next(line for line in lines if line.startswith("error: "))
    assert "the image build failed at step" in error and "RUN uv pip sync" in error
    assert "six==1.16.0" in error and "Hash mismatch" in error
    assert any(line.startswith("hint: ") and "hash" in line for line in lines)
    log = Path(next(line for line in lines if line.startswith("log: "))[5:].strip())
    assert "Hash mismatch" in log.read_text()
    assert "Traceback" not in proc.stderr
    assert docker_images.client().images.list(name=tag) == []


def test_without_the_proxy_ca_the_build_fails_with_a_hint(
    tiny_model, python_slim_images, created, tmp_path
):
    base = python_slim_images["3.11"]
    probe = (
        "import urllib.request; urllib.request.urlopen('https://pypi.org/simple/six/', timeout=30)"
    )
    try:
        run_in_image(base, ["python", "-c", probe])
    except Exception:  # the proxy's certificate is refused without its CA: the case at hand
        pass
    else:
        pytest.skip("HTTPS is not intercepted here: a build needs no extra CA")
    tag = new_tag("noca")
    created.append(tag)
    env = cli_env(drop=("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE"))
    proc = run_cli("image", str(tiny_model), "-t", tag, env=env)
    assert proc.returncode == 4, proc.stderr
    assert "certificate" in proc.stderr.lower()
    assert re.search(r"^hint: .*--ca-cert", proc.stderr, flags=re.M)


def test_base_image_with_another_python_is_refused(tiny_model, python_slim_images):
    proc = run_cli(
        "image",
        str(tiny_model),
        "-t",
        new_tag("x"),
        "--base-image",
        python_slim_images["3.10"],
        env=cli_env(),
    )
    assert proc.returncode == 2
    assert f"{python_slim_images['3.10']} has Python 3.10" in proc.stderr
    assert "lock is for Python 3.11" in proc.stderr
    assert "hint: use a base image with Python 3.11" in proc.stderr


def test_labels_round_trip_through_the_builder(python_slim_images, created, tmp_path):
    from envbuild.image.dockerfile import label_instruction

    labels = {
        "com.example.quote": 'say "hi"',
        "com.example.path": "c:\\models\\x",
        "com.example.vars": "$HOME and ${X}",
        "com.example.text": "café ✓ it's k=v",
    }
    base = python_slim_images["3.11"]
    (tmp_path / "Dockerfile").write_text(f"FROM {base}\n{label_instruction(labels)}\n")
    tag = new_tag("labels")
    created.append(tag)
    docker_images.build_image(tmp_path, tag)
    got = docker_images.client().images.get(tag).labels
    assert {key: got.get(key) for key in labels} == labels


def test_symlink_leaving_the_model_folder_is_refused(tiny_model, tmp_path):
    model = copy_model(tiny_model, tmp_path / "tiny-link")
    (model / "secret.txt").symlink_to("/etc/hostname")
    proc = run_cli("image", str(model), "--context", str(tmp_path / "ctx"), env=cli_env())
    assert proc.returncode == 2
    assert "points outside the model folder" in proc.stderr
    assert not (tmp_path / "ctx").exists() or not any((tmp_path / "ctx").iterdir())


# ------------------------------------------------------------------------------------------
# --context, and uv installed by pip


def test_context_is_complete_and_another_builder_builds_it(
    tiny_model, python_slim_images, created, tmp_path
):
    model = copy_model(tiny_model, tmp_path / "tiny")
    (model / "data").mkdir()
    (model / "data" / "weights.bin").write_bytes(b"\x00\x01")
    os.chmod(model / "data" / "weights.bin", 0o600)  # private on disk, readable in the image
    (model / "weights-link.bin").symlink_to("data/weights.bin")  # inside: copied as a file
    context = tmp_path / "context"
    proc = run_cli("image", str(model), "--context", str(context), "--json", env=cli_env())
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["context"] == str(context) and result["image"] is None
    files = sorted(str(p.relative_to(context)) for p in context.rglob("*") if p.is_file())
    assert files == [
        "Dockerfile",
        "build/ca.pem",
        "build/uv",
        "model/MLmodel",
        "model/code/tiny_loader.py",
        "model/data/weights.bin",
        "model/python_env.yaml",
        "model/requirements.txt",
        "model/serving_input_example.json",
        "model/weights-link.bin",
        "pylock.toml",
        # the whole runtime: its Python modules, without caches or tool settings
        *sorted(
            f"runtime/{p.relative_to(RUNTIME).as_posix()}"
            for p in RUNTIME.rglob("*.py")
            if "__pycache__" not in p.parts
        ),
    ]
    assert "runtime/runner.py" in files and "runtime/server.py" in files
    assert not (context / "model" / "weights-link.bin").is_symlink()
    assert (context / "model" / "data" / "weights.bin").stat().st_mode & 0o777 == 0o644
    dockerfile = (context / "Dockerfile").read_text()
    assert re.findall(r"^FROM .*$", dockerfile, flags=re.M) == [
        f"FROM {python_slim_images['3.11']} AS build",
        f"FROM {python_slim_images['3.11']}",
    ]
    final = dockerfile[dockerfile.index(f"FROM {python_slim_images['3.11']}\n") :]
    assert " build/" not in final and "SSL_CERT_FILE" not in final
    order = [final.index(s) for s in ("COPY --from=build", "COPY runtime/", "COPY model/")]
    assert order == sorted(order)
    # "another builder": the raw API on the written folder, no envbuild involved
    tag = new_tag("context")
    created.append(tag)
    docker_images.build_image(context, tag)
    assert predict_example_in(tag) == {"predictions": [3.5, 2]}


def test_uv_installed_by_pip_when_not_copied(
    tiny_model, python_slim_images, created, tmp_path, monkeypatch
):
    """The path taken on a Mac or a cross-architecture build: the base's pip installs the same
    uv version from the index inside the build stage."""
    from envbuild.image import ImageOptions, build_image, plan_image, uv_version

    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    tag = new_tag("uv-pip")
    created.append(tag)
    spec = load_model(tiny_model)
    plan = plan_image(spec, read_env(spec), ImageOptions(tag=tag, uv_source="pip"))
    assert plan.uv_binary is None
    result = build_image(plan)
    log = Path(result.log_path).read_text()
    assert f'pip install --quiet "uv=={uv_version()}"' in log
    assert "COPY build/uv" not in log
    assert predict_example_in(tag) == {"predictions": [3.5, 2]}
    assert python_in(tag, "import shutil; print(shutil.which('uv'))").strip() == "None"


def test_json_error_when_the_engine_is_unreachable(tiny_model, tmp_path):
    env = cli_env(DOCKER_HOST=f"unix://{tmp_path}/no-such-docker.sock")
    proc = run_cli("image", str(tiny_model), "-t", new_tag("x"), "--json", env=env)
    assert proc.returncode == 4
    error = json.loads(proc.stdout)
    assert "cannot reach the Docker engine" in error["message"]
    assert "--context" in error["hint"]


def test_cache_lists_the_build_stage_an_image_build_leaves_and_prunes_it(
    tiny_model, python_slim_images, created, docker_engine, tmp_path
):
    """The classic builder keeps a multi-stage build's build stage as an untagged image (the
    layer cache, hundreds of MB for a real model): `envbuild cache list` shows it as a ``stage``
    entry with its size, and `cache prune` removes it like any old entry."""

    def stages() -> set[str]:
        found = docker_engine.images.list(
            filters={"label": "envbuild.stage=build", "dangling": True}
        )
        return {image.id for image in found}

    before = stages()
    tag = new_tag("stage")
    created.append(tag)
    build(tiny_model, tag, "--no-cache")
    left = stages() - before
    assert len(left) == 1, left
    (stage,) = left
    env = cli_env(ENVBUILD_CACHE_DIR=str(tmp_path / "cache"))  # nothing of the session's cache
    listed = run_cli("cache", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = {row["key"]: row for row in json.loads(listed.stdout)["entries"]}
    assert rows[stage]["kind"] == "stage" and rows[stage]["size"] > 0
    pruned = run_cli("cache", "prune", "--older-than", "0s", "--json", env=env)
    assert pruned.returncode == 0, pruned.stderr
    assert stage in {row["key"] for row in json.loads(pruned.stdout)["removed"]}
    assert stage not in stages()
    assert docker_engine.images.get(tag).id  # the image itself is the user's: kept
