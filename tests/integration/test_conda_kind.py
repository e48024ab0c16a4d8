"""``--kind conda`` end to end, through the CLI, with real py-rattler and the local channel
(tests/integration/conda_channel.py).

What a user relies on: ``envbuild lock`` writes ``pixi.lock`` + ``pylock.conda.toml`` (the same
bytes every time) and ``--check`` catches an edited ``conda.yaml``; ``env``/``predict``/``run``
pick conda by themselves for a model that needs conda packages and say so, an explicit ``--kind``
wins; the model runs with the channel's Python; a killed build never looks finished and four
concurrent builds do the work once; ``reproduce`` passes, then fails (exit 6) naming the conda
package whose file changed; errors are one line with the documented exit code; an image with
``--kind conda`` serves the model; a real MLflow model predicts what MLflow predicted.
"""

from __future__ import annotations

import contextlib
import json
import os
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

from envbuild.cache import MARKER
from tests.conftest import REPO, run_cli, write_model
from tests.integration import conda_channel as channel_fixture
from tests.integration import docker_images
from tests.integration.conda_channel import LocalChannel

pytestmark = [pytest.mark.integration, pytest.mark.slow]

conda_channel = channel_fixture.conda_channel
docker_engine = docker_images.docker_engine
debian_slim_image = docker_images.debian_slim_image


@pytest.fixture(scope="module", autouse=True)
def isolated_rattler_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """rattler's caches (repodata, packages) stay out of ~/.cache/rattler; the CLI runs inherit
    the variable."""
    path = tmp_path_factory.mktemp("rattler-cache")
    saved = os.environ.get("RATTLER_CACHE_DIR")
    os.environ["RATTLER_CACHE_DIR"] = str(path)
    yield path
    if saved is None:
        os.environ.pop("RATTLER_CACHE_DIR", None)
    else:
        os.environ["RATTLER_CACHE_DIR"] = saved


MLMODEL = """
flavors:
  python_function:
    loader_module: conda_loader
    code: code
    python_version: 3.10.13
    env:
      conda: conda.yaml
mlflow_version: 2.20.0
model_uuid: 0c0ffee0123456789abcdef012345678
utc_time_created: '2024-05-01 10:00:00.000000'
signature:
  inputs: '[{"type": "double", "name": "a", "required": true}, {"type": "double", "name": "b", "required": true}]'
"""

CONDA_YAML = """
channels:
- {channel}
dependencies:
- python=3.10.13
- envbuild-prefixprobe
- envbuild-util
- pyyaml
- pip
name: conda-model
"""

# MLflow's pyfunc loader protocol, without mlflow: its Python packages come from the channel only
LOADER = """
import os
import sys

import envbuild_util
import prefixprobe


class Model:
    def predict(self, model_input, params=None):
        bonus = float(envbuild_util.VERSION)
        return [row["a"] * row["b"] + bonus for row in model_input]


def _load_pyfunc(path):
    assert sys.prefix == os.environ["CONDA_PREFIX"], (sys.prefix, os.environ.get("CONDA_PREFIX"))
    probe = prefixprobe.probe()
    assert probe["binary"]["content"] and probe["text"]["content"], probe
    return Model()
"""

EXAMPLE = {"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2.5], [3, -1]]}}
EXPECTED = [1 * 2.5 + 0.2, 3 * -1 + 0.2]  # envbuild-util 0.2 is the channel's newest


def conda_model(root: Path, channel: str, conda_yaml: str = CONDA_YAML) -> Path:
    folder = write_model(
        root,
        {
            "MLmodel": MLMODEL,
            "conda.yaml": conda_yaml.format(channel=channel),
            "code/conda_loader.py": LOADER,
        },
    )
    (folder / "serving_input_example.json").write_text(json.dumps(EXAMPLE))
    (folder / "envbuild_expected_output.json").write_text(json.dumps({"predictions": EXPECTED}))
    return folder


@pytest.fixture
def model(conda_channel: LocalChannel, tmp_path: Path) -> Path:
    return conda_model(tmp_path / "model", conda_channel.url)


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = dict(os.environ, PIP_CONFIG_FILE=os.devnull)
    return run_cli(*args, env={**base, **(env or {})})


def cli_json(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict]:
    done = cli(*args, "--json", env=env)
    try:
        return done.returncode, json.loads(done.stdout)
    except ValueError:
        raise AssertionError(done.stdout + done.stderr) from None


def predictions(stdout: str) -> list[float]:
    return json.loads(stdout)["predictions"]


# ---------------------------------------------------------------------------------------------
# lock


def test_lock_writes_both_halves_the_same_every_time_and_check_catches_an_edit(
    model: Path, tmp_path: Path
) -> None:
    done = cli("lock", str(model))  # no --kind: conda.yaml needs conda packages
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith(
        "note: using --kind conda: conda.yaml needs conda packages (envbuild-prefixprobe, "
        "envbuild-util, pyyaml)"
    )
    conda_lock, pip_lock = model / "pixi.lock", model / "pylock.conda.toml"
    assert "pixi.lock: wrote: 5 conda packages (python 3.10.13) for linux-64" in done.stdout
    assert not (model / "pylock.toml").exists()  # the venv kind's lock is another file
    first = conda_lock.read_bytes(), pip_lock.read_bytes()
    pip_text = first[1].decode()
    assert 'python = "3.10.13"' in pip_text and 'base = "conda"' in pip_text
    assert 'conda-lock = "sha256:' in pip_text and "conda-input-digest" in pip_text

    code, again = cli_json("lock", str(model))  # the same inputs: the same bytes, not rewritten
    assert code == 0 and again["kind"] == "conda" and again["kind_reason"]
    assert again["conda"]["changed"] is False and again["pip"]["changed"] is False
    assert (conda_lock.read_bytes(), pip_lock.read_bytes()) == first
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert cli("lock", str(model), "--kind", "conda", "-o", str(elsewhere)).returncode == 0
    assert (elsewhere / "pixi.lock").read_bytes() == first[0]
    assert (elsewhere / "pylock.conda.toml").read_bytes() == first[1]

    code, checked = cli_json("lock", str(model), "--check")
    assert code == 0 and checked["checked"] is True
    yaml = model / "conda.yaml"
    yaml.write_text(yaml.read_text().replace("- pip\n", "- pip\n- envbuild-greet\n"))
    done = cli("lock", str(model), "--check")
    assert done.returncode == 3
    assert f"error: {conda_lock}: out of date: conda.yaml:9 adds envbuild-greet" in (done.stderr), (
        done.stderr
    )
    assert "hint: run `envbuild lock" in done.stderr and "--kind conda` to update them" in (
        done.stderr
    )
    assert (conda_lock.read_bytes(), pip_lock.read_bytes()) == first  # --check writes nothing


def test_lock_options_platform_as_of_and_channels(
    model: Path, conda_channel: LocalChannel, tmp_path: Path
) -> None:
    code, data = cli_json("lock", str(model), "--kind", "conda", "--as-of", "2024-01-01")
    assert code == 0, data
    util = next(p for p in data["conda"]["packages"] if p["name"] == "envbuild-util")
    assert util["version"] == "0.1"  # 0.2 was built after that date
    code, data = cli_json("lock", str(model), "--kind", "conda", "--platform", "osx-arm64")
    assert code == 3 and data["exit_code"] == 3  # the channel's python is linux-64 only
    assert "python=3.10.13 cannot be solved for osx-arm64" in data["message"]
    assert data["line"] == 4
    # the model's channel overridden by the same channel reached by name through a mirror
    code, data = cli_json(
        "lock",
        str(model),
        "--kind",
        "conda",
        "--override-channels",
        "--channel",
        conda_channel.name,
        env={"ENVBUILD_CONDA_CHANNEL_ALIAS": str(conda_channel.alias_root)},
    )
    assert code == 0, data
    canonical = f"https://conda.anaconda.org/{conda_channel.name}/"
    assert data["conda"]["channels"] == [canonical]
    assert "file:" not in (model / "pixi.lock").read_text()


def test_lock_errors_are_one_line_with_their_exit_code(
    conda_channel: LocalChannel, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-channel"
    unknown = conda_model(tmp_path / "unknown", missing.as_uri())
    done = cli("lock", str(unknown))
    assert done.returncode == 3
    assert done.stderr.splitlines()[1].startswith(
        f"error: {unknown / 'conda.yaml'}: channels: channel {missing.as_uri()} "
        f"({missing.as_uri()}/): not found"
    ), done.stderr
    unsolvable = conda_model(
        tmp_path / "unsolvable",
        conda_channel.url,
        CONDA_YAML.replace("- envbuild-util\n", "- envbuild-util>=9\n"),
    )
    done = cli("lock", str(unsolvable))
    assert done.returncode == 3
    assert (
        f"error: {unsolvable / 'conda.yaml'}:6: dependencies: envbuild-util>=9 cannot be solved "
        "for linux-64: No candidates were found for envbuild-util >=9." in done.stderr
    ), done.stderr
    assert (
        not (unsolvable / "pixi.lock").exists() and not (unsolvable / "pylock.conda.toml").exists()
    )
    # pip options inside pip: are recorded and reported, never obeyed (as on the venv path)
    with_options = conda_model(
        tmp_path / "options",
        conda_channel.url,
        CONDA_YAML.replace(
            "- pip\n", "- pip\n- pip:\n  - --index-url https://user:s3cret@example.invalid/simple\n"
        ),
    )
    code, data = cli_json("lock", str(with_options))
    assert code == 0, data
    done = cli("lock", str(with_options))
    assert "--index-url https://***@example.invalid/simple is ignored" in done.stderr
    for name in ("pixi.lock", "pylock.conda.toml"):
        assert "s3cret" not in (with_options / name).read_text()


def test_a_package_whose_file_changed_since_the_lock_is_refused(
    conda_channel: LocalChannel, tmp_path: Path
) -> None:
    channel = tmp_path / "channel"
    shutil.copytree(conda_channel.path, channel)
    folder = conda_model(tmp_path / "model", channel.as_uri())
    assert cli("lock", str(folder)).returncode == 0
    package = next((channel / "noarch").glob("envbuild-util-0.2-*.tar.bz2"))
    package.write_bytes(package.read_bytes() + b"\0")  # same name, other bytes
    fresh = {
        "RATTLER_CACHE_DIR": str(tmp_path / "rattler"),
        "ENVBUILD_CACHE_DIR": str(tmp_path / "c"),
    }
    done = cli("env", str(folder), env=fresh)
    assert done.returncode == 4, done.stderr
    assert f"{package.name}: sha256 mismatch: the lock says " in done.stderr
    assert not any((tmp_path / "c" / "conda").glob(f"*/{MARKER}"))


# ---------------------------------------------------------------------------------------------
# env, predict, run: the automatic choice


def test_env_predict_and_run_pick_conda_and_say_so(
    model: Path, conda_channel: LocalChannel
) -> None:
    assert cli("lock", str(model)).returncode == 0
    code, data = cli_json("env", str(model))
    assert code == 0, data
    assert data["kind"] == "conda"
    assert (
        data["kind_reason"]
        == "conda.yaml needs conda packages (envbuild-prefixprobe, envbuild-util, pyyaml)"
    )
    env = data["environment"]
    assert env["conda_lock_source"] == "model" and data["lock_source"] == "model"
    assert env["conda_lock"] == str(model / "pixi.lock")
    assert data["lock"] == str(model / "pylock.conda.toml")
    assert env["python_version"] == "3.10.13"
    prefix = Path(env["path"])
    assert (prefix / MARKER).is_file()

    done = cli("predict", str(model))
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[0].startswith("note: using --kind conda: ")
    assert predictions(done.stdout) == pytest.approx(EXPECTED)

    probe = "import json, os, sys; print(json.dumps([sys.executable, os.environ['CONDA_PREFIX']]))"
    done = cli("run", str(model), "--", "python", "-c", probe)
    assert done.returncode == 0, done.stderr
    executable, conda_prefix = json.loads(done.stdout)
    assert executable == str(prefix / "bin" / "python") and conda_prefix == str(prefix)
    assert os.path.realpath(executable).startswith(str(prefix))  # the channel's, not pyenv's

    # an explicit --kind wins: a virtualenv has no conda packages, so the model cannot load
    done = cli("predict", str(model), "--kind", "venv")
    assert done.returncode == 5, done.stderr
    assert "note:" not in done.stderr
    assert "ModuleNotFoundError: No module named 'envbuild_util'" in done.stderr
    assert "are not installed in a virtualenv; list them under pip: or use --kind conda" in (
        done.stderr
    )


def test_a_python_this_machine_lacks_picks_conda(
    conda_channel: LocalChannel, tmp_path: Path
) -> None:
    yaml = "channels:\n- {channel}\ndependencies:\n- python=3.15\n- pip\n"
    folder = conda_model(tmp_path / "py315", conda_channel.url, yaml)
    done = cli("env", str(folder))
    assert done.returncode == 3, done.stderr  # solved with conda: the channel has no 3.15
    assert done.stderr.splitlines()[0] == (
        "note: using --kind conda: no Python 3.15 interpreter is installed here; the conda "
        "channel brings one (--kind to choose another)"
    )
    assert f"error: {folder / 'conda.yaml'}:4: dependencies: python=3.15 cannot be solved" in (
        done.stderr
    )
    done = cli("env", str(folder), "--kind", "venv")
    assert done.returncode == 4 and "no Python 3.15 (or any 3.15.x) found" in done.stderr


def test_inspect_reports_which_kinds_can_build_and_why_not(model: Path, tmp_path: Path) -> None:
    code, data = cli_json("inspect", str(model))
    assert code == 0
    kinds = {k["kind"]: k for k in data["kinds"]}
    assert kinds["conda"] == {"kind": "conda", "can_build": True, "reason": None, "chosen": True}
    assert kinds["venv"]["can_build"] and not kinds["venv"]["chosen"]
    assert data["kind"]["kind"] == "conda" and data["kind"]["automatic"]
    text = cli("inspect", str(model)).stdout
    assert "conda   can build  (chosen: conda.yaml needs conda packages" in text
    plain = write_model(
        tmp_path / "plain",
        {
            "MLmodel": "flavors:\n  python_function:\n    loader_module: x\n"
            "    python_version: 3.11.7\n",
            "requirements.txt": "six\n",
        },
    )
    code, data = cli_json("inspect", str(plain))
    kinds = {k["kind"]: k for k in data["kinds"]}
    assert kinds["conda"]["reason"] == "the model has no conda.yaml (or it lists no conda packages)"
    assert kinds["venv"]["chosen"] and data["kind"] == {
        "kind": "venv",
        "automatic": True,
        "reason": None,
    }
    assert "conda   cannot: the model has no conda.yaml" in cli("inspect", str(plain)).stdout


# ---------------------------------------------------------------------------------------------
# crash and concurrency safety of the whole build (both halves)


def worker(model: Path, *extra: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.conda_worker", "--model", str(model), *extra],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )


def test_a_killed_build_never_looks_finished(model: Path, tmp_path: Path) -> None:
    caches = {"ENVBUILD_CACHE_DIR": str(tmp_path / "cache")}
    child = worker(model, "--block-at-link", env=caches)
    assert child.stdout is not None
    assert child.stdout.readline() == "linking\n"  # mid-install
    child.send_signal(signal.SIGKILL)
    child.wait()
    entries = list((tmp_path / "cache" / "conda").iterdir())
    half = [e for e in entries if e.is_dir()]
    assert len(half) == 1 and (half[0] / "conda-meta").is_dir()  # half a prefix is there...
    assert not (half[0] / MARKER).exists()  # ...and does not count as built
    code, data = cli_json("env", str(model), env=caches)
    assert code == 0 and data["environment"]["built"] is True  # built again, from scratch
    assert data["environment"]["path"] == str(half[0])
    done = cli("predict", str(model), env=caches)
    assert done.returncode == 0 and predictions(done.stdout) == pytest.approx(EXPECTED)


def test_four_concurrent_builds_do_the_work_once(model: Path, tmp_path: Path) -> None:
    caches = {"ENVBUILD_CACHE_DIR": str(tmp_path / "cache")}
    children = [worker(model, env=caches) for _ in range(4)]
    results = []
    for child in children:
        out, _ = child.communicate(timeout=300)
        assert child.returncode == 0
        results.append(json.loads(out.splitlines()[-1]))
    assert sorted(r["built"] for r in results) == [False, False, False, True]
    assert len({r["path"] for r in results}) == 1
    # the conda half was solved once into the cache too (the model has no lock files)
    assert len(list((tmp_path / "cache" / "conda-locks").glob(f"*/{MARKER}"))) == 1


# ---------------------------------------------------------------------------------------------
# reproduce


def test_reproduce_verifies_the_conda_packages_and_their_files(model: Path) -> None:
    assert cli("lock", str(model)).returncode == 0
    code, data = cli_json("reproduce", str(model), "--kind", "conda")
    assert code == 0, data
    assert data["kind"] == "conda" and data["result"] == "reproduced"
    steps = {s["name"]: s for s in data["steps"]}
    assert steps["lock"]["details"]["files"] == [
        str(model / "pixi.lock"),
        str(model / "pylock.conda.toml"),
    ]
    verify = steps["verify"]["details"]
    assert verify["conda"] == {"checked": 5, "missing": [], "extra": [], "different": []}
    assert verify["extra"] == []  # the conda packages' own distributions are not "extra"
    prefix = Path(steps["build"]["details"]["path"])

    changed = prefix / "lib" / "python3.10" / "site-packages" / "envbuild_util" / "__init__.py"
    changed.write_text('VERSION = "0.2"  # patched by hand\n')
    meta = next((prefix / "conda-meta").glob("pip-*.json"))
    record = json.loads(meta.read_text())
    record["version"] = "99.0"
    meta.write_text(json.dumps(record))
    code, data = cli_json("reproduce", str(model), "--kind", "conda")
    assert code == 6, data
    steps = {s["name"]: s for s in data["steps"]}
    different = steps["verify"]["details"]["conda"]["different"]
    assert any(
        d.startswith(
            "envbuild-util: lib/python3.10/site-packages/envbuild_util/__init__.py changed"
        )
        for d in different
    ), different
    assert any(
        d.startswith("pip: locked version ") and d.endswith(", installed 99.0") for d in (different)
    ), different
    assert steps["verify"]["status"] == "failed"
    text = cli("reproduce", str(model)).stdout  # the automatic choice reproduces conda too
    assert "reproduce" in text and "(conda)" in text and "conda packages different" in text
    assert "NOT reproduced (exit 6)" in text


# ---------------------------------------------------------------------------------------------
# image


def http(url: str, body: bytes | None = None, timeout: float = 30) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.docker
def test_image_with_kind_conda_serves_the_model(
    model: Path, docker_engine, debian_slim_image: str
) -> None:
    assert cli("lock", str(model)).returncode == 0
    tag = f"envbuild-test/conda-kind:{uuid.uuid4().hex[:12]}"
    code, data = cli_json("image", str(model), "-t", tag, "--network", "host")
    container = None
    try:
        assert code == 0, data
        assert data["kind"] == "conda" and data["lock_source"] == "model"
        assert data["base_lock_digest"] and data["python"] == "3.10.13"
        assert data["base_image"] == debian_slim_image  # ENVBUILD_CONDA_BASE_IMAGE
        image = docker_engine.images.get(tag)
        assert image.labels["envbuild.conda.lock.digest"] == data["base_lock_digest"]
        assert image.attrs["Config"]["User"] == "10001:10001"
        assert "CONDA_PREFIX=/opt/env" in image.attrs["Config"]["Env"]
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        container = docker_engine.containers.run(
            tag,
            ["serve", "--model", "/opt/model", "--host", "127.0.0.1", "--port", str(port)],
            detach=True,
            network_mode="host",
        )
        deadline = time.monotonic() + 120
        while True:  # wait for the server to answer (a condition, not a sleep)
            container.reload()
            assert container.status in ("created", "running"), container.logs()
            with contextlib.suppress(OSError):
                if http(f"http://127.0.0.1:{port}/ping", timeout=5)[0] == 200:
                    break
            assert time.monotonic() < deadline, container.logs()
            time.sleep(0.2)
        status, body = http(f"http://127.0.0.1:{port}/invocations", json.dumps(EXAMPLE).encode())
        assert status == 200, body
        assert json.loads(body)["predictions"] == pytest.approx(EXPECTED)
    finally:
        if container is not None:
            container.remove(force=True)
        docker_images.remove_image(tag)


# ---------------------------------------------------------------------------------------------
# a real MLflow model (its pip half comes from PyPI)

SAVE = """
import json, sys
import mlflow.pyfunc, mlflow.sklearn
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
X, y = load_iris(return_X_y=True, as_frame=True)
mlflow.sklearn.save_model(LogisticRegression(max_iter=500).fit(X, y), sys.argv[1],
                          input_example=X.head(5), serialization_format="cloudpickle")
loaded = mlflow.pyfunc.load_model(sys.argv[1])
print(json.dumps(loaded.predict(X.head(5)).tolist()))
"""


@pytest.mark.network
def test_a_real_mlflow_model_predicts_what_mlflow_predicted(
    conda_channel: LocalChannel, tmp_path: Path
) -> None:
    """Saved by MLflow on Python 3.10 (in a venv of its own: scikit-learn's pickles do not cross
    versions); its conda.yaml rewritten to the local channel's python and a conda-only package,
    its pip requirements as MLflow wrote them."""
    import yaml

    from tests.integration.runtime_models import make_venv
    from tests.interpreters import python

    saver = make_venv(
        tmp_path / "saver", python("3.10"), ["mlflow-skinny", "scikit-learn", "pandas"]
    )
    folder = tmp_path / "sklearn-conda"
    done = subprocess.run(
        [str(saver), "-c", SAVE, str(folder)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    mlflow_predicted = json.loads(done.stdout.strip().splitlines()[-1])
    conda = yaml.safe_load((folder / "conda.yaml").read_text())
    pip = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    conda["channels"] = [conda_channel.url]
    # pyyaml from conda too: mlflow needs it, so the pip half must leave it to conda
    conda["dependencies"] = ["python=3.10.13", "pip", "envbuild-util", "pyyaml", {"pip": pip}]
    (folder / "conda.yaml").write_text(yaml.safe_dump(conda, sort_keys=False))

    assert cli("lock", str(folder)).returncode == 0
    assert cli("lock", str(folder), "--check").returncode == 0
    pip_half = (folder / "pylock.conda.toml").read_text()
    assert 'name = "scikit-learn"' in pip_half and 'name = "mlflow' in pip_half
    assert 'name = "pyyaml"' not in pip_half  # installed by conda: left out of the pip half
    done = cli("predict", str(folder))
    assert done.returncode == 0, done.stderr
    assert predictions(done.stdout) == mlflow_predicted
    code = "import json, sys, envbuild_util, yaml; print(json.dumps([sys.prefix, yaml.__file__]))"
    done = cli("run", str(folder), "--", "python", "-c", code)
    assert done.returncode == 0, done.stderr
    prefix, yaml_file = (Path(p) for p in json.loads(done.stdout))
    owned = json.loads(next((prefix / "conda-meta").glob("pyyaml-*.json")).read_text())["files"]
    assert str(yaml_file.relative_to(prefix)) in owned  # mlflow runs on conda's PyYAML
