"""The conda half's values: spec from conda.yaml, channels, target virtual packages, activation.

No solving or installing here (that needs the local channel: tests/integration/test_conda.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from envbuild.conda.activate import activation_env, prefix_python
from envbuild.conda.channels import (
    CANONICAL_ALIAS,
    DEFAULTS_URLS,
    redact_url,
    resolve_channels,
    select_channels,
    strip_credentials,
    to_canonical,
    to_fetch,
)
from envbuild.conda.lockfile import CondaRecord, dependency_order
from envbuild.conda.platforms import VirtualPackage, conda_platform, subdir_of
from envbuild.conda.spec import conda_spec
from envbuild.envspec import read_env
from envbuild.errors import ModelError, UsageError
from envbuild.model import load_model
from tests.conftest import write_model

MLMODEL = """
flavors:
  python_function:
    env:
      conda: conda.yaml
    loader_module: mlflow.sklearn
    python_version: 3.8.16
mlflow_version: 2.20.0
"""


def model_with(tmp_path: Path, conda_yaml: str, **extra: str):
    root = write_model(tmp_path / "m", {"MLmodel": MLMODEL, "conda.yaml": conda_yaml, **extra})
    return read_env(load_model(root))


# ---------------------------------------------------------------------------------------------
# spec


def test_spec_keeps_file_order_lines_and_every_form(tmp_path: Path) -> None:
    env = model_with(
        tmp_path,
        """
        channels:
        - conda-forge
        dependencies:
        - python=3.8.*
        - numpy=1.18.1
        - keras==2.2.5
        - pip:
          - mlflow
        - pip
        """,
    )
    spec = conda_spec(env)
    assert [(d.spec, d.origin.line) for d in spec.dependencies] == [
        ("python=3.8.*", 4),
        ("numpy=1.18.1", 5),
        ("keras==2.2.5", 6),
        ("pip", 9),  # pip after the pip block is a conda spec like any other
    ]
    assert spec.channels == ("conda-forge",)
    assert [str(m) for m in spec.match_specs()] == [
        "python 3.8.*",
        "numpy 1.18.1.*",
        "keras ==2.2.5",
        "pip",
    ]


def test_verbatim_duplicates_dropped_differing_ones_kept_with_a_warning(tmp_path: Path) -> None:
    env = model_with(
        tmp_path,
        """
        dependencies:
        - python=3.8.16
        - numpy~=1.18.0
        - pip
        - numpy==1.18.5
        - pip
        """,
    )
    spec = conda_spec(env)
    assert [d.spec for d in spec.dependencies] == [
        "python=3.8.16",
        "numpy~=1.18.0",
        "pip",
        "numpy==1.18.5",
    ]
    assert len(spec.warnings) == 1
    assert (
        "conda.yaml:5: numpy is listed again (numpy==1.18.5, first numpy~=1.18.0"
        in (spec.warnings[0])
    )


def test_python_from_other_files_is_added_and_override_replaces(tmp_path: Path) -> None:
    env = model_with(tmp_path, "dependencies:\n- numpy\n")
    spec = conda_spec(env)
    assert spec.dependencies[0].spec == "python=3.8.16"  # from MLmodel's python_version
    assert str(spec.dependencies[0].origin) == "MLmodel"
    overridden = conda_spec(model_with(tmp_path, "dependencies:\n- python=3.7\n"), python="3.10")
    assert [d.spec for d in overridden.dependencies] == ["python=3.10"]
    assert (
        overridden.digest()
        != conda_spec(model_with(tmp_path, "dependencies:\n- python=3.7\n")).digest()
    )


def test_digest_ignores_order_of_specs_but_not_of_channels(tmp_path: Path) -> None:
    a = conda_spec(
        model_with(tmp_path / "a", "channels: [x, y]\ndependencies: [python=3.8, numpy]\n")
    )
    b = conda_spec(
        model_with(tmp_path / "b", "channels: [x, y]\ndependencies: [numpy, python=3.8]\n")
    )
    c = conda_spec(
        model_with(tmp_path / "c", "channels: [y, x]\ndependencies: [numpy, python=3.8]\n")
    )
    assert a.digest() == b.digest() != c.digest()


def test_unreadable_spec_names_its_line(tmp_path: Path) -> None:
    env = model_with(tmp_path, "dependencies:\n- python=3.8\n- numpy=>1.0\n")
    with pytest.raises(ModelError) as info:
        conda_spec(env).match_specs()
    assert info.value.line == 3
    assert info.value.format().endswith(
        "conda.yaml:3: dependencies: invalid conda package spec 'numpy=>1.0': "
        "unable to parse version spec: =>1.0"
    )
    assert info.value.exit_code == 2


# ---------------------------------------------------------------------------------------------
# channels


def test_channel_selection_follows_conda() -> None:
    assert select_channels([]) == ("conda-forge",)
    assert select_channels(["defaults", "conda-forge"]) == ("defaults", "conda-forge")
    assert select_channels(["conda-forge"], extra=["pytorch", "conda-forge"]) == (
        "pytorch",
        "conda-forge",
    )
    assert select_channels(["defaults"], extra=["mine"], override=True) == ("mine",)


def test_channel_names_urls_and_paths(tmp_path: Path) -> None:
    forge, *defaults, local, url = resolve_channels(
        ["conda-forge", "defaults", str(tmp_path), "https://example.org/chan"], alias=""
    )
    assert forge.url == forge.fetch_url == CANONICAL_ALIAS + "conda-forge/"
    assert [d.url for d in defaults] == list(DEFAULTS_URLS)
    assert local.url == tmp_path.as_uri() + "/" and local.is_local
    assert url.url == "https://example.org/chan/"
    with pytest.raises(UsageError, match="invalid conda channel 'no good'"):
        resolve_channels(["no good"])
    with pytest.raises(ModelError) as info:
        resolve_channels(["no good"], path=tmp_path / "conda.yaml")
    assert info.value.field == "channels"


def test_alias_is_a_mirror_for_fetching_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENVBUILD_CONDA_CHANNEL_ALIAS", "https://user:secret@mirror.example/conda")
    (forge,) = resolve_channels(["conda-forge"])
    assert forge.url == "https://conda.anaconda.org/conda-forge/"
    assert forge.fetch_url == "https://user:secret@mirror.example/conda/conda-forge/"
    assert "secret" not in repr(forge) and "secret" not in str(forge.to_dict())
    assert forge.to_dict()["mirror"] == "https://***@mirror.example/conda/conda-forge/"
    package = "https://conda.anaconda.org/conda-forge/noarch/six-1.16.0-pyh_0.conda"
    fetched = "https://user:secret@mirror.example/conda/conda-forge/noarch/six-1.16.0-pyh_0.conda"
    assert to_fetch(package, [forge]) == fetched
    assert to_fetch(package, []) == fetched  # the environment's alias applies without channels
    assert to_canonical(fetched, [forge], [forge.fetch_url]) == package
    monkeypatch.setenv("ENVBUILD_CONDA_CHANNEL_ALIAS", str(tmp_path))
    (local,) = resolve_channels(["envbuild-test"])
    assert local.fetch_url == tmp_path.as_uri() + "/envbuild-test/"


def test_credentials_never_reach_the_recorded_url() -> None:
    (chan,) = resolve_channels(["https://user:secret@host.example/t/tok-123/private"], alias="")
    assert chan.url == "https://host.example/private/"
    assert chan.name == "https://***@host.example/t/***/private"
    assert (
        strip_credentials("https://u:p@h/t/abc/c/linux-64/x.conda")
        == "https://h/c/linux-64/x.conda"
    )
    assert redact_url("https://u:p@h/t/abc/c/") == "https://***@h/t/***/c/"


# ---------------------------------------------------------------------------------------------
# platforms


def test_target_virtual_packages_are_the_targets_not_the_hosts() -> None:
    linux = conda_platform("linux/amd64")
    assert linux.subdir == "linux-64"
    assert [str(v) for v in linux.virtual_packages] == [
        "__archspec=1=x86_64",
        "__glibc=2.28=0",
        "__linux=4.18=0",
        "__unix=0=0",
    ]
    mac = conda_platform("osx-arm64", cuda="12.0")
    assert [str(v) for v in mac.virtual_packages] == [
        "__archspec=1=arm64",
        "__cuda=12.0=0",
        "__osx=13.0=0",
        "__unix=0=0",
    ]
    assert [v.name for v in conda_platform("win-64").virtual_packages] == ["__archspec", "__win"]
    given = conda_platform("linux-aarch64", virtual_packages=[VirtualPackage("__glibc", "2.17")])
    assert given.virtual_packages == (VirtualPackage("__glibc", "2.17"),)
    with pytest.raises(UsageError, match="unknown conda platform 'beos'"):
        subdir_of("beos")


# ---------------------------------------------------------------------------------------------
# lock helpers and activation


def test_explicit_order_puts_dependencies_first() -> None:
    def rec(name: str, *depends: str) -> CondaRecord:
        return CondaRecord(
            name, "1", "0", "noarch", "c/", f"c/noarch/{name}-1-0.conda", "0", depends=depends
        )

    ordered = dependency_order(
        [
            rec("a", "python >=3.8", "b"),
            rec("b", "python"),
            rec("python", "__glibc >=2.17"),
            rec("z"),
        ]
    )
    assert [r.name for r in ordered] == ["python", "b", "a", "z"]


def test_activation_env_puts_the_prefix_first_and_drops_python_leaks(tmp_path: Path) -> None:
    old = tmp_path / "old-env"
    prefix = tmp_path / "env"
    (prefix / "conda-meta").mkdir(parents=True)
    (prefix / "conda-meta" / "state").write_text('{"env_vars": {"MODEL_HOME": "/data"}}')
    base = {
        "PATH": os.pathsep.join([str(old / "bin"), "/usr/bin"]),
        "CONDA_PREFIX": str(old),
        "PYTHONPATH": "/elsewhere",
        "VIRTUAL_ENV": "/some/venv",
        "HOME": "/root",
    }
    env = activation_env(prefix, base)
    assert env["PATH"].split(os.pathsep) == [str(prefix / "bin"), "/usr/bin"]
    assert env["CONDA_PREFIX"] == str(prefix)
    assert env["MODEL_HOME"] == "/data"
    assert env["HOME"] == "/root"
    assert "PYTHONPATH" not in env and "VIRTUAL_ENV" not in env
    assert env["PYTHONNOUSERSITE"] == "1"
    assert prefix_python(prefix, windows=False) == prefix / "bin" / "python"
    assert prefix_python(prefix, windows=True) == prefix / "python.exe"


def test_importing_the_conda_modules_does_not_import_rattler() -> None:
    """py-rattler costs ~0.1 s to import: the CLI's start-up must not pay it."""
    import subprocess
    import sys

    modules = ", ".join(
        f"envbuild.conda.{m}"
        for m in ("spec", "platforms", "channels", "lockfile", "solve", "install", "activate")
    )
    code = f"import sys, {modules}; print(sorted(m for m in sys.modules if m.split('.')[0] == 'rattler'))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
