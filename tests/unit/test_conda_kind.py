"""The conda kind's decisions that need no solve: the automatic choice, which Python packages the
pip half leaves to conda, how a pip half is tied to its conda lock, what ``--check`` says changed.

Solving, installing and the CLI: tests/integration/test_conda_kind.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from envbuild.conda.lockfile import CondaLock, CondaRecord
from envbuild.conda.spec import conda_spec
from envbuild.envs.base import IMAGE, LOCK, BuildOptions
from envbuild.envs.registry import (
    choose_kind,
    describe,
    imaging_backend,
    kinds,
    lock_files_backend,
)
from envbuild.envspec import read_env, virtualenv_warnings
from envbuild.errors import UsageError
from envbuild.lock.conda import CondaBase, describe_conda_change, provided_distributions
from envbuild.lock.pylock import lock_from_text
from envbuild.lock.select import model_lock_name, model_lock_problem
from envbuild.model import load_model
from envbuild.target import Target
from tests.conftest import write_model

MLMODEL = """
flavors:
  python_function:
    env:
      conda: conda.yaml
    loader_module: mlflow.sklearn
    python_version: 3.10.13
"""


def env_of(tmp_path: Path, conda_yaml: str, **files: str):
    root = write_model(tmp_path / "m", {"MLmodel": MLMODEL, "conda.yaml": conda_yaml, **files})
    return read_env(load_model(root))


def record(name: str, version: str, *, noarch: str | None = None, depends=()) -> CondaRecord:
    return CondaRecord(
        name=name,
        version=version,
        build="0",
        subdir="noarch" if noarch else "linux-64",
        channel="https://conda.anaconda.org/conda-forge/",
        url=f"https://conda.anaconda.org/conda-forge/linux-64/{name}-{version}-0.conda",
        sha256="0" * 64,
        depends=tuple(depends),
        noarch=noarch,
    )


def conda_lock(*records: CondaRecord, digest: str = "sha256:c0da") -> CondaLock:
    return CondaLock(
        text="",
        digest=digest,
        platform="linux-64",
        virtual_packages=("__glibc=2.28=0",),
        channels=("https://conda.anaconda.org/conda-forge/",),
        records=tuple(sorted(records, key=lambda r: r.name)),
    )


# ---------------------------------------------------------------------------------------------
# the automatic choice


def test_conda_packages_beyond_the_toolchain_choose_conda(tmp_path: Path) -> None:
    env = env_of(
        tmp_path,
        "dependencies:\n- python=3.10.13\n- pip<=24.0\n- setuptools\n- mkl=2023.1\n- pip:\n"
        "  - mlflow\n",
    )
    choice = choose_kind(env, None, "env")
    assert (choice.name, choice.automatic) == ("conda", True)
    assert choice.reason == "conda.yaml needs conda packages (mkl=2023.1)"
    assert choose_kind(env, "venv", "env").name == "venv"  # an explicit --kind wins
    assert choose_kind(env, "venv", "env").reason is None
    given = BuildOptions(python="/usr/bin/python3")  # an interpreter: that is a virtualenv
    assert choose_kind(env, None, "env", given).name == "venv"


def test_without_conda_yaml_the_default_stays(tmp_path: Path) -> None:
    root = write_model(
        tmp_path / "m",
        {
            "MLmodel": "flavors:\n  python_function:\n    loader_module: x\n",
            "requirements.txt": "six\n",
        },
    )
    env = read_env(load_model(root))
    assert choose_kind(env, None, "env").to_dict() == {
        "kind": "venv",
        "automatic": True,
        "reason": None,
    }
    with pytest.raises(UsageError, match="unknown environment kind 'mamba'"):
        choose_kind(env, "mamba", "env")


def test_a_virtualenv_says_what_it_lacks(tmp_path: Path) -> None:
    env = env_of(tmp_path, "dependencies:\n- python=3.10.13\n- cudatoolkit=11.8\n- pip:\n  - six\n")
    assert virtualenv_warnings(env) == [
        "conda.yaml: conda packages (cudatoolkit=11.8) are not installed in a virtualenv; "
        "list them under pip: or use --kind conda"
    ]


def test_the_registry_knows_which_kinds_lock_and_image() -> None:
    assert kinds(LOCK) == ("venv", "conda") and kinds(IMAGE) == ("venv", "conda")
    assert describe("docker").locks == "venv" and describe("local").locks is None
    assert lock_files_backend("local") is None
    with pytest.raises(UsageError, match="--kind docker cannot be used here"):
        imaging_backend("docker")


# ---------------------------------------------------------------------------------------------
# the pip half and its conda base


def test_the_python_packages_conda_installs_are_left_to_it() -> None:
    lock = conda_lock(
        record("python", "3.10.13"),
        record("numpy", "1.26.4", depends=["python >=3.10,<3.11.0a0", "libblas"]),
        record("pip", "24.0", noarch="python", depends=["python >=3.7"]),
        record("libblas", "3.9.0"),  # a library: not a Python distribution
        record("scikit-learn", "1.4.2", depends=["python_abi 3.10.* *_cp310", "python"]),
        record("odd", "0.9.8w", noarch="python"),  # not a PEP 440 version: left alone
    )
    assert provided_distributions(lock) == (
        "numpy==1.26.4",
        "pip==24.0",
        "scikit-learn==1.4.2",
    )


def pip_half(tool: str) -> str:
    return (
        'lock-version = "1.0"\nenvironments = ["sys_platform == \'linux\' and platform_machine '
        '== \'x86_64\'"]\nrequires-python = "==3.10.*"\ncreated-by = "envbuild"\n\n'
        f'[tool.envbuild]\npython = "3.10.13"\nplatforms = ["linux/amd64"]\n{tool}'
    )


def test_a_pip_half_belongs_to_one_conda_lock(tmp_path: Path) -> None:
    env = env_of(tmp_path, "dependencies:\n- python=3.10.13\n- mkl\n")
    spec = conda_spec(env)
    base = CondaBase(conda_lock(record("python", "3.10.13")), spec, "cache")
    target = base.target()
    assert (target.python, target.platform_names, target.base) == (
        "3.10.13",
        ("linux/amd64",),
        base,
    )
    assert model_lock_name(target) == "pylock.conda.toml"
    assert model_lock_name(Target("3.10.13", target.platforms)) == "pylock.toml"
    recorded = base.record()
    assert recorded["conda-lock"] == "sha256:c0da"
    assert recorded["conda-input-digest"] == spec.digest()
    assert recorded["conda-dependencies"] == ["mkl", "python=3.10.13"]
    facts = "".join(
        f'{key} = "{value}"\n' for key, value in recorded.items() if isinstance(value, str)
    )
    ours = lock_from_text(pip_half(f'input-digest = "{env.digest()}"\nbase = "conda"\n{facts}'))
    assert model_lock_problem(ours, env, target) is None
    other = CondaBase(conda_lock(record("python", "3.10.13"), digest="sha256:0the4"), spec)
    assert model_lock_problem(ours, env, other.target()) == "it was made with another conda lock"
    assert (
        model_lock_problem(ours, env, Target("3.10.13", target.platforms))
        == "it is the pip half of a conda environment"
    )
    assert "over the conda lock sha256:c0da" in target.describe()
    assert target.to_dict()["base"] == {"name": "conda", "digest": "sha256:c0da"}
    assert "base" not in Target("3.10.13", target.platforms).to_dict()  # cache keys unchanged


def test_check_names_what_changed_in_conda_yaml(tmp_path: Path) -> None:
    env = env_of(tmp_path, "dependencies:\n- python=3.10.13\n- mkl=2024\n- pip\n")
    tool = {"conda-dependencies": ["mkl=2023", "pip", "python=3.10.13"]}
    assert describe_conda_change(tool, conda_spec(env)) == (
        "conda.yaml:3 adds mkl=2024; mkl=2023 was removed"
    )
    same = {"conda-dependencies": ["mkl=2024", "pip", "python=3.10.13"]}
    assert describe_conda_change(same, conda_spec(env)) == "conda.yaml's channels changed"
