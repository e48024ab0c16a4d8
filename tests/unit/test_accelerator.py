"""Accelerator builds without network: the choice (labels, auto, --accelerator), the explicit
PyTorch index uv is given (family names only), the mirror, retargeted pins, the lock cache key on
every index setting, and the one-line errors that name the index a labelled build needs."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from envbuild import accelerator as accel
from envbuild.envspec import read_env
from envbuild.errors import UsageError
from envbuild.indexes import configure
from envbuild.lock.explain import explain_failure
from envbuild.lock.select import cache_key
from envbuild.model import load_model
from envbuild.target import Target
from tests.conftest import run_cli, write_model

uvmod = importlib.import_module("envbuild.lock.uv")

MLMODEL = """
flavors:
  python_function:
    env:
      virtualenv: python_env.yaml
    loader_module: mlflow.pytorch
    python_version: 3.11.7
mlflow_version: 3.1.0
"""


def torch_model(root: Path, requirements: str, lock: str | None = None) -> Path:
    files = {
        "MLmodel": MLMODEL,
        "python_env.yaml": "python: 3.11.7\ndependencies:\n- -r requirements.txt\n",
        "requirements.txt": requirements,
    }
    if lock is not None:
        files["pylock.toml"] = lock
    return write_model(root, files)


def installed_lock(*pins: tuple[str, str]) -> str:
    """A pylock.toml as capture writes it (the logging environment's closure)."""
    body = "".join(f'\n[[packages]]\nname = "{n}"\nversion = "{v}"\n' for n, v in pins)
    return f'lock-version = "1.0"\n{body}\n[tool.envbuild]\nsource = "installed"\n'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cpu", "cpu"),
        ("CUDA", "cuda"),
        ("cu121", "cu121"),
        ("rocm6.0", "rocm6.0"),
        ("auto", "auto"),
    ],
)
def test_accelerator_names(text: str, expected: str) -> None:
    assert accel.parse_accelerator(text) == expected


@pytest.mark.parametrize("bad", ["gpu", "cu1", "rocm", "cuda12", "cpu;rm"])
def test_unknown_accelerator_is_a_usage_error(bad: str) -> None:
    with pytest.raises(UsageError) as info:
        accel.parse_accelerator(bad)
    assert info.value.exit_code == 2 and "--accelerator" in str(info.value.field)


def test_cli_refuses_an_unknown_accelerator(tmp_path: Path) -> None:
    model = torch_model(tmp_path / "m", "torch==2.13.0\n")
    done = run_cli("lock", str(model), "--accelerator", "gpu")
    assert done.returncode == 2 and "unknown accelerator 'gpu'" in done.stderr


def test_a_label_chooses_its_index_by_default(tmp_path: Path) -> None:
    model = torch_model(tmp_path / "m", "torch==2.13.0+cpu\ntorchvision==0.28.0+cpu\n")
    target = Target.for_model(read_env(load_model(model)))
    assert target.accelerator == "cpu"
    assert target.accelerator_reason == (
        "torch==2.13.0+cpu (requirements.txt:1) is PyTorch's cpu build"
    )


def test_no_label_means_the_default_builds_unless_asked(tmp_path: Path) -> None:
    env = read_env(load_model(torch_model(tmp_path / "m", "torch==2.13.0\n")))
    assert Target.for_model(env).accelerator is None
    assert Target.for_model(env, accelerator="cu121").accelerator == "cu121"


def test_auto_decides_from_the_logging_environment(tmp_path: Path) -> None:
    cuda = torch_model(
        tmp_path / "cuda",
        "torch==2.13.0\n",
        installed_lock(("torch", "2.13.0"), ("nvidia-cublas-cu12", "12.8.4.1")),
    )
    target = Target.for_model(read_env(load_model(cuda)), accelerator="auto")
    assert (target.accelerator, target.accelerator_reason) == (
        "cuda",
        "the model was logged with nvidia-cublas-cu12",
    )
    cpu = torch_model(tmp_path / "cpu", "torch==2.13.0\n", installed_lock(("torch", "2.13.0")))
    target = Target.for_model(read_env(load_model(cpu)), accelerator="auto")
    assert target.accelerator == "cpu"
    assert "torch and no nvidia-* package" in str(target.accelerator_reason)
    labelled = torch_model(
        tmp_path / "lab", "torch==2.13.0\n", installed_lock(("torch", "2.13.0+cu121"))
    )
    assert Target.for_model(read_env(load_model(labelled)), accelerator="auto").accelerator == (
        "cu121"
    )
    nothing = torch_model(tmp_path / "none", "torch==2.13.0\n")
    target = Target.for_model(read_env(load_model(nothing)), accelerator="auto")
    assert target.accelerator is None
    assert target.accelerator_reason == "no accelerator label and no nvidia-* package in the model"


def test_a_resolved_lock_is_no_evidence_for_auto(tmp_path: Path) -> None:
    """Only capture's lock (source = installed) is the logging environment."""
    lock = installed_lock(("nvidia-cublas-cu12", "12.8.4.1")).replace(
        'source = "installed"', 'python = "3.11"'
    )
    model = torch_model(tmp_path / "m", "torch==2.13.0\n", lock)
    assert Target.for_model(read_env(load_model(model)), accelerator="auto").accelerator is None


def test_pins_are_retargeted_to_the_chosen_build() -> None:
    assert accel.retarget("torch==2.13.0+cpu", "cuda") == "torch==2.13.0"
    assert accel.retarget("torch==2.13.0+cu121", "cpu") == "torch==2.13.0"
    assert accel.retarget("torch==2.13.0+cpu", "cpu") == "torch==2.13.0+cpu"
    assert accel.retarget("numpy==2.0.0", "cpu") == "numpy==2.0.0"
    # a label on a package outside the family is another index's business
    assert accel.retarget("torch-scatter==2.1.2+pt20cu118", "cpu") == (
        "torch-scatter==2.1.2+pt20cu118"
    )
    assert accel.retarget("torch==2.13.0+cpu; sys_platform == 'linux'", "cuda") == (
        'torch==2.13.0; sys_platform == "linux"'
    )


def test_mirror_template_and_families() -> None:
    assert accel.torch_index_url("cu121") == "https://download.pytorch.org/whl/cu121"
    assert accel.torch_index_url("cpu", "https://m.example/pt/{accelerator}/") == (
        "https://m.example/pt/cpu"
    )
    assert accel.torch_index_url("cpu", "http://127.0.0.1:8000/simple") == (
        "http://127.0.0.1:8000/simple"
    )
    assert "triton" in accel.family_of("cu121") and "triton" not in accel.family_of("cpu")
    assert "pytorch-triton-rocm" in accel.family_of("rocm6.0")
    assert not accel.has_index("cuda") and not accel.has_index(None)
    assert accel.cuda_version([("nvidia-cuda-runtime-cu12", "12.8.90")]) == "12.8"
    assert accel.cuda_version([("torch", "2.5.1+cu121")]) == "12.1"


def test_mirror_from_the_environment_and_its_credentials_stay_in_variables(tmp_path: Path) -> None:
    environ = {
        "PIP_CONFIG_FILE": "/dev/null",
        "UV_CONFIG_FILE": "/nonexistent",
        accel.TORCH_INDEX_VARIABLE: "https://user:s3cret@mirror.example/pt/{accelerator}",
    }
    config = configure(environ=environ)
    setting = config.torch_index("cpu")
    assert setting.value == "https://user:s3cret@mirror.example/pt/cpu"
    assert setting.redacted == "https://***@mirror.example/pt/cpu"
    assert configure(environ=environ, torch_index_url="http://x/{accelerator}").torch_index(
        "cu121"
    ).value == ("http://x/cu121")

    env = read_env(load_model(torch_model(tmp_path / "m", "torch==2.13.0+cpu\n")))
    job = uvmod._Job(
        env=env,
        target=Target.for_model(env),
        as_of=None,
        offline=False,
        indexes=config,
        workdir=tmp_path,
        uv="uv",
        requirements=("torch==2.13.0+cpu", "numpy==2.0.0"),
        torch_index=setting,
    )
    path = uvmod.write_inputs(job)
    text = path.read_text()
    assert path.name == "pyproject.toml"
    assert "s3cret" not in text and 'url = "https://mirror.example/pt/cpu"' in text
    assert "explicit = true" in text
    assert 'torch = { index = "envbuild-pytorch" }' in text
    assert "numpy =" not in text  # the explicit index is for the torch family only
    child = uvmod._child_env(job)
    assert child["UV_INDEX_ENVBUILD_PYTORCH_USERNAME"] == "user"
    assert child["UV_INDEX_ENVBUILD_PYTORCH_PASSWORD"] == "s3cret"


def test_cuda_builds_are_pinned_for_linux_and_windows_only(tmp_path: Path) -> None:
    env = read_env(load_model(torch_model(tmp_path / "m", "torch==2.13.0\n")))
    target = Target.for_model(env, accelerator="cu121", platforms=["linux", "+macos"])
    job = uvmod._Job(
        env=env,
        target=target,
        as_of=None,
        offline=False,
        indexes=configure(),
        workdir=tmp_path,
        uv="uv",
        requirements=("torch==2.13.0",),
        torch_index=configure().torch_index("cu121"),
    )
    text = uvmod.write_inputs(job).read_text()
    assert "marker = \"sys_platform == 'linux' or sys_platform == 'win32'\"" in text


def test_a_family_package_that_comes_as_a_dependency_is_made_direct(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uv's sources apply to direct requirements: torch required by torchmetrics is added."""
    model = torch_model(tmp_path / "m", "torchmetrics==1.8.2\n")
    seen: list[str] = []

    def resolve_one(job, platform):
        text = (job.workdir / "pyproject.toml").read_text()
        seen.append(text)
        torch = "2.13.0+cpu" if 'torch = { index = "envbuild-pytorch" }' in text else "2.15.0"
        return {
            "packages": [
                {"name": "torch", "version": torch},
                {"name": "torchmetrics", "version": "1.8.2"},
            ]
        }

    monkeypatch.setattr(uvmod, "_resolve_one", resolve_one)
    env = read_env(load_model(model))
    lk = uvmod.resolve(env, Target.for_model(env, accelerator="cpu"), indexes=configure())
    assert len(seen) == 2 and '"torch",' in seen[1] and '"torch",' not in seen[0]
    assert [p.pin for p in lk.packages] == ["torch==2.13.0+cpu", "torchmetrics==1.8.2"]
    assert lk.accelerator == "cpu" and lk.accelerator_reason == "--accelerator cpu"
    assert lk.indexes["accelerator-index"] == "https://download.pytorch.org/whl/cpu"


def test_without_an_index_accelerator_uv_gets_the_plain_requirements(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = torch_model(tmp_path / "m", "torch==2.13.0+cpu\n")
    seen: list[str] = []

    def resolve_one(job, platform):
        seen.append((job.workdir / "requirements.in").read_text())
        assert not (job.workdir / "pyproject.toml").exists()
        return {"packages": [{"name": "torch", "version": "2.13.0"}]}

    monkeypatch.setattr(uvmod, "_resolve_one", resolve_one)
    env = read_env(load_model(model))
    lk = uvmod.resolve(env, Target.for_model(env, accelerator="cuda"), indexes=configure())
    assert seen == ["torch==2.13.0\n"]
    assert lk.accelerator == "cuda"
    assert lk.warnings[0] == (
        "torch==2.13.0+cpu (requirements.txt:1) is resolved as torch==2.13.0 for --accelerator cuda"
    )


def test_the_cache_key_changes_with_every_index_setting(tmp_path: Path) -> None:
    """Item 4 of issue 16: pip's and uv's settings, the mirror, the accelerator, the as-of."""
    env = read_env(load_model(torch_model(tmp_path / "m", "torch==2.13.0\n")))
    base = {"PIP_CONFIG_FILE": "/dev/null", "UV_CONFIG_FILE": "/nonexistent"}
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nextra-index-url = https://other.example/simple\n")
    uv_toml = tmp_path / "uv.toml"
    uv_toml.write_text('[[index]]\nurl = "https://uv.example/simple"\n')
    variants = {
        "nothing": base,
        "PIP_INDEX_URL": {**base, "PIP_INDEX_URL": "https://mirror.example/simple"},
        "PIP_EXTRA_INDEX_URL": {**base, "PIP_EXTRA_INDEX_URL": "https://x.example/simple"},
        "PIP_FIND_LINKS": {**base, "PIP_FIND_LINKS": str(tmp_path)},
        "pip.conf": {**base, "PIP_CONFIG_FILE": str(conf)},
        "UV_INDEX_URL": {**base, "UV_INDEX_URL": "https://uv-mirror.example/simple"},
        "UV_EXTRA_INDEX_URL": {**base, "UV_EXTRA_INDEX_URL": "https://uvx.example/simple"},
        "uv.toml": {**base, "UV_CONFIG_FILE": str(uv_toml)},
        "credentials": {**base, "PIP_INDEX_URL": "https://u:p@mirror.example/simple"},
        "torch mirror": {**base, accel.TORCH_INDEX_VARIABLE: "http://127.0.0.1:1/{accelerator}"},
    }
    target = Target.for_model(env)
    keys = {
        name: cache_key(env, target, configure(environ=environ), None)
        for name, environ in variants.items()
    }
    assert len(set(keys.values())) == len(keys), keys
    plain = configure(environ=base)
    others = {
        cache_key(env, Target.for_model(env, accelerator="cpu"), plain, None),
        cache_key(env, Target.for_model(env, accelerator="cu121"), plain, None),
        cache_key(env, target, plain, "2024-05-01T00:00:00Z"),
        cache_key(env, Target.for_model(env, platforms=["linux/arm64"]), plain, None),
    }
    assert len(others | {keys["nothing"]}) == 5
    # the same settings give the same key (a cache that never hits is no cache)
    assert cache_key(env, target, configure(environ=base), None) == keys["nothing"]


def test_an_unreachable_pytorch_index_is_named(tmp_path: Path) -> None:
    env = read_env(load_model(torch_model(tmp_path / "m", "torch==2.13.0+cpu\n")))
    stderr = (
        "error: Failed to fetch: `https://download.pytorch.org/whl/cpu/torch/`\n"
        "  Caused by: Request failed after 3 retries\n"
        "  Caused by: error sending request for url (https://download.pytorch.org/whl/cpu/torch/)\n"
    )
    exc = explain_failure(
        stderr,
        env=env,
        python="3.11.7",
        accelerator="cpu",
        torch_index="https://download.pytorch.org/whl/cpu",
        torch_index_source="PyTorch",
    )
    assert exc.exit_code == 3
    assert str(exc).startswith(
        f"{tmp_path / 'm' / 'requirements.txt'}:1: torch==2.13.0+cpu: cannot reach the PyTorch cpu "
        "index https://download.pytorch.org/whl/cpu"
    ), str(exc)
    assert "--torch-index-url" in str(exc.hint) and accel.TORCH_INDEX_VARIABLE in str(exc.hint)


def test_a_build_missing_from_the_mirror_is_named(tmp_path: Path) -> None:
    env = read_env(load_model(torch_model(tmp_path / "m", "torch==2.99.0+cpu\n")))
    stderr = (
        "  x No solution found when resolving dependencies:\n"
        "  `-> Because there is no version of torch==2.99.0+cpu and you require "
        "torch==2.99.0+cpu, we can conclude that your requirements are unsatisfiable.\n"
    )
    exc = explain_failure(
        "error: No solution found when resolving dependencies:\n"
        "  cause: Because there is no version of torch==2.99.0+cpu and you require "
        "torch==2.99.0+cpu, we can conclude that your requirements are unsatisfiable.\n" + stderr,
        env=env,
        python="3.11.7",
        accelerator="cpu",
        torch_index="http://127.0.0.1:8000/simple",
        torch_index_source=accel.TORCH_INDEX_VARIABLE,
    )
    assert "torch==2.99.0+cpu: no such build on the PyTorch cpu index http://127.0.0.1:8000" in (
        str(exc)
    )
    assert accel.TORCH_INDEX_VARIABLE in str(exc.hint)


def test_the_model_pytorch_index_option_is_not_a_warning(tmp_path: Path) -> None:
    model = torch_model(
        tmp_path / "m",
        "--extra-index-url https://download.pytorch.org/whl/cpu\n"
        "--extra-index-url https://other.example/simple\ntorch==2.13.0+cpu\n",
    )
    warnings = read_env(load_model(model)).warnings
    assert not any("download.pytorch.org" in w for w in warnings)
    assert any("other.example" in w and "is ignored" in w for w in warnings)


def test_cpu_leaves_out_the_cuda_libraries_others_pull_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = torch_model(tmp_path / "m", "xgboost==3.2.0\nnvidia-cuda-runtime-cu12==12.8.90\n")
    rounds: list[list[str]] = []

    def resolve_one(job, platform):
        excludes = job.workdir / "excludes.txt"
        left_out = excludes.read_text().split() if job.excludes else []
        rounds.append(left_out)
        names = ["nvidia-cuda-runtime-cu12", "nvidia-nccl-cu12", "numpy", "xgboost"]
        return {"packages": [{"name": n, "version": "1.0"} for n in names if n not in left_out]}

    monkeypatch.setattr(uvmod, "_resolve_one", resolve_one)
    env = read_env(load_model(model))
    target = Target.for_model(env, accelerator="cpu")
    lk = uvmod.resolve(env, target, indexes=configure())
    assert rounds == [[], ["nvidia-nccl-cu12"]]
    # the model's own nvidia-* requirement stays: it asked for it by name
    assert [p.name for p in lk.packages] == ["numpy", "nvidia-cuda-runtime-cu12", "xgboost"]
    job = uvmod._Job(env, target, None, False, configure(), tmp_path, "uv", excludes=("x",))
    assert "--excludes" in uvmod._uv_command(job, target.platforms[0], tmp_path)
    assert lk.tool["left-out"] == ["nvidia-nccl-cu12"]
    assert "accelerator-index" not in lk.tool  # no torch: the PyTorch index served nothing
    assert any("left out nvidia-nccl-cu12" in w for w in lk.warnings)


def test_file_names_of_labelled_wheels_are_decoded_from_their_urls() -> None:
    from envbuild.lock.pylock import file_name

    url = "http://127.0.0.1:1/files/torch-2.13.0%2Bcpu-cp311-cp311-manylinux_2_28_x86_64.whl"
    assert file_name({"url": url}) == "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
    assert file_name({"path": "files/a%2Bb.whl"}) == "a%2Bb.whl"  # a path is the name itself
