"""Shared environments without environments: names, the verdict's rules on hand-made
``Installed`` values, the registry's files (atomic versions, broken files, busy versions), the
union of models and the mapping of a conflict back to them, the model's requirement set (lock or
files). The real environments are in tests/integration/test_shared.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from envbuild.errors import RegistryError, ResolutionError, UsageError
from envbuild.requirements import Origin, make_requirement
from envbuild.shared.names import Ref, parse_ref, version_key
from envbuild.shared.record import PREFIX, Distribution, Installed, SharedEnvironment
from envbuild.shared.store import METADATA, Registry
from envbuild.shared.verdict import judge
from envbuild.shared.wanted import ModelRequirements, model_requirements
from tests.conftest import run_cli, write_model
from tests.unit import test_lock

fake_uv = test_lock.fake_uv

MARKERS_311 = {
    "implementation_name": "cpython",
    "implementation_version": "3.11.9",
    "os_name": "posix",
    "platform_machine": "x86_64",
    "platform_release": "6.1",
    "platform_system": "Linux",
    "platform_version": "#1",
    "python_full_version": "3.11.9",
    "platform_python_implementation": "CPython",
    "python_version": "3.11",
    "sys_platform": "linux",
}


def installed(*dists: tuple[str, str, tuple[str, ...]], python: str = "3.11.9") -> Installed:
    markers = {**MARKERS_311, "python_full_version": python, "python_version": python[:4]}
    return Installed(
        python_version=python,
        implementation="CPython",
        executable="/env/bin/python",
        platform="Linux-x86_64",
        markers=markers,
        distributions={Distribution(n, v, r).key: Distribution(n, v, r) for n, v, r in dists},
    )


def wanted(*lines: str, python: str | None = "3.11.7", constraints: tuple[str, ...] = ()):
    from envbuild.envspec import python_from_text

    def req(text: str, line: int):
        return make_requirement(text, Origin("requirements.txt", line), root=Path("/m"), shown="m")

    reqs = tuple(req(text, n) for n, text in enumerate(lines, start=1))
    request = (
        python_from_text(
            python, Origin("python_env.yaml", 1), conda=False, shown=Path("m"), field_name="python"
        )
        if python
        else None
    )
    return ModelRequirements(
        Path("/m"),
        request,
        reqs,
        tuple(req(text, 10 + n) for n, text in enumerate(constraints)),
        "requirements.txt",
        frozenset(r.name for r in reqs),
    )


def rows(verdict):
    return {(row.status, row.name): row for row in verdict.rows}


def test_names_and_refs() -> None:
    assert parse_ref("sklearn-cpu") == Ref("sklearn-cpu")
    assert parse_ref("sklearn-cpu:2024.05") == Ref("sklearn-cpu", "2024.05")
    assert str(Ref("a", "3")) == "a:3"
    for bad in ("Sklearn", "-x", "a/b", "a:", "a:b:c", "a b", ""):
        with pytest.raises(UsageError):
            parse_ref(bad)
    assert sorted(["10", "2", "beta", "1"], key=version_key) == ["1", "2", "10", "beta"]


def test_each_rule_gives_its_row() -> None:
    verdict = judge(
        wanted(
            "six==1.16.0",
            "numpy>=2",
            "pandas",
            "torch==2.3.1+cu121",
            "onnx==1.16.0+cpu",
            "typing-extensions<4; python_version < '3.9'",
            "pywin32; sys_platform == 'win32'",
            "demo @ https://example.org/demo-1.0-py3-none-any.whl",
        ),
        installed(
            ("six", "1.16.0", ()),
            ("numpy", "1.26.4", ()),
            ("torch", "2.3.1+cpu", ()),
            ("onnx", "1.16.0", ()),
            ("typing_extensions", "4.12.2", ()),
            ("demo", "1.0", ()),
        ),
        model="m",
        environment="e:1",
    )
    found = rows(verdict)
    assert found[("ok", "six")].installed == "1.16.0"
    assert found[("version", "numpy")].message == "numpy 1.26.4 is installed, the model needs >=2"
    assert found[("missing", "pandas")].origin == "requirements.txt:3"
    label = found[("local-label", "torch")]
    assert label.message == "torch 2.3.1: +cu121 wanted, +cpu installed (2.3.1+cpu)"
    assert "no local label installed" in found[("local-label", "onnx")].message
    # markers evaluated for the environment's Python and platform: both lines do not apply
    assert found[("marker", "typing-extensions")].satisfied
    assert found[("marker", "pywin32")].satisfied
    assert found[("ok", "demo")].satisfied
    assert found[("ok", "python")].message.startswith("Python 3.11.9, not exactly 3.11.7")
    assert not verdict.satisfied
    assert [r.status for r in verdict.rows] == [
        "missing",
        "version",
        "local-label",
        "local-label",
        "marker",
        "marker",
        "ok",
        "ok",
        "ok",
    ]
    assert verdict.to_dict()["counts"] == {
        "missing": 1,
        "version": 1,
        "local-label": 2,
        "marker": 2,
        "ok": 3,
    }


def test_python_minor_decides_and_markers_follow_the_environment() -> None:
    model = wanted("six; python_version >= '3.12'", python="3.12")
    verdict = judge(model, installed(python="3.11.9"), model="m", environment="e:1")
    assert [(r.status, r.name) for r in verdict.rows] == [("python", "python"), ("marker", "six")]
    assert verdict.rows[0].message == "the model asks for Python 3.12, the environment has 3.11.9"
    ok = judge(
        wanted("six", python=None), installed(("six", "1.0", ())), model="m", environment="e"
    )
    assert ok.satisfied and [r.name for r in ok.rows] == ["six"]


def test_conflicts_are_those_of_the_models_packages() -> None:
    env = installed(
        ("scikit-learn", "1.5.0", ("numpy>=1.19", "scipy>=1.6", "joblib>=1.2")),
        ("scipy", "1.10.0", ("numpy<1.27,>=1.19",)),
        ("numpy", "2.1.0", ()),
        ("mlflow", "3.1.0", ("alembic!=1.10", "gunicorn; sys_platform != 'win32'")),
        ("alembic", "1.13.0", ()),
        ("unrelated", "1.0", ("numpy<2",)),  # broken, but not something the model uses
        ("extras-user", "1.0", ("rich; extra == 'cli'",)),
    )
    verdict = judge(
        wanted("scikit-learn==1.5.0", "mlflow", "extras-user[cli]"),
        env,
        model="m",
        environment="e:1",
    )
    conflicts = [(r.name, r.message) for r in verdict.rows if r.status == "conflict"]
    assert conflicts == [
        ("gunicorn", "mlflow 3.1.0 requires gunicorn, which is not installed"),
        ("joblib", "scikit-learn 1.5.0 requires joblib>=1.2, which is not installed"),
        ("rich", "extras-user 1.0 requires rich, which is not installed"),
        ("numpy", "scipy 1.10.0 requires numpy<1.27,>=1.19, but 2.1.0 is installed"),
    ]
    assert not any("unrelated" in r.message for r in verdict.rows)
    assert verdict.rows[-1].status == "ok"


def test_constraints_apply_only_to_what_is_installed() -> None:
    verdict = judge(
        wanted("six", constraints=("numpy<2", "pandas<2")),
        installed(("six", "1.0", ()), ("numpy", "2.0.0", ())),
        model="m",
        environment="e:1",
    )
    assert [(r.status, r.name, r.origin) for r in verdict.rows] == [
        ("version", "numpy", "requirements.txt:10"),
        ("ok", "python", "python_env.yaml:1"),
        ("ok", "six", "requirements.txt:1"),
    ]


def record(name: str, version: str, folder: Path) -> SharedEnvironment:
    return SharedEnvironment(
        name=name,
        version=version,
        runs_in=PREFIX,
        managed=False,
        created=f"2026-01-01T00:00:0{version}.000000Z",
        envbuild_version="0",
        source={"from": "prefix", "path": "/p"},
        installed=installed(("six", "1.16.0", ())),
        prefix="/p",
        python="/p/bin/python",
        folder=folder,
    )


def test_registry_versions_newest_and_errors(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    assert registry.all() == [] and registry.next_version("a") == "1"
    for version in ("1", "2"):
        registry.create("a", version, lambda folder, v=version: record("a", v, folder))
    assert registry.next_version("a") == "3"
    assert registry.get(Ref("a")).version == "2"
    assert registry.get(Ref("a", "1")).installed.version_of("six") == "1.16.0"
    with pytest.raises(RegistryError, match=r"a:2 already exists \(versions are immutable\)"):
        registry.create("a", "2", lambda folder: record("a", "2", folder))
    with pytest.raises(RegistryError, match=r"a has no version '7' \(versions: 1, 2\)"):
        registry.get(Ref("a", "7"))
    with pytest.raises(RegistryError, match=r"no shared environment named 'b' \(known: a\)"):
        registry.get(Ref("b"))

    def fails(folder: Path) -> SharedEnvironment:
        (folder / "half").write_text("x")
        raise UsageError("nope")

    with pytest.raises(UsageError):
        registry.create("a", "3", fails)
    assert [r.version for r in registry.versions("a")] == ["1", "2"]
    assert not list((tmp_path / "environments" / "a").glob(".tmp-*")), "a failure leaves nothing"
    registry.remove(registry.get(Ref("a", "1")))
    assert [r.version for r in registry.versions("a")] == ["2"]


def test_a_version_being_created_refuses_a_second_creator(tmp_path: Path) -> None:
    from filelock import FileLock

    registry = Registry(tmp_path)
    (tmp_path / "environments" / "a").mkdir(parents=True)
    held = FileLock(str(tmp_path / "environments" / "a" / "1.lock"))
    with held, pytest.raises(RegistryError, match="a:1 is being created by another process"):
        registry.create("a", "1", lambda folder: record("a", "1", folder))
    assert registry.all() == []


def test_a_broken_registry_file_is_one_line_naming_it(tmp_path: Path, monkeypatch) -> None:
    registry = Registry(tmp_path)
    registry.create("a", "1", lambda folder: record("a", "1", folder))
    meta = tmp_path / "environments" / "a" / "1" / METADATA
    meta.write_text("{not json")
    with pytest.raises(RegistryError, match="broken registry file") as caught:
        registry.all()
    assert caught.value.path == meta
    meta.write_text(json.dumps({"format": 1, "name": "a"}))
    with pytest.raises(RegistryError, match="broken registry file: KeyError"):
        registry.get(Ref("a"))
    monkeypatch.setenv("ENVBUILD_HOME", str(tmp_path))
    proc = run_cli("environments", "list")
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0].startswith(f"error: {meta}: broken registry file")


def test_the_cli_lists_shows_and_removes(tmp_path: Path, monkeypatch) -> None:
    registry = Registry(tmp_path)
    for version in ("1", "2"):
        registry.create("a", version, lambda folder, v=version: record("a", v, folder))
    monkeypatch.setenv("ENVBUILD_HOME", str(tmp_path))
    listed = json.loads(run_cli("environments", "list", "--json").stdout)
    assert [(e["name"], e["version"]) for e in listed["environments"]] == [("a", "1"), ("a", "2")]
    shown = json.loads(run_cli("environments", "show", "a", "--json").stdout)
    assert shown["version"] == "2" and shown["installed"]["distributions"][0]["name"] == "six"
    refused = run_cli("environments", "remove", "a")
    assert refused.returncode == 2 and "a has 2 versions (1, 2)" in refused.stderr
    assert run_cli("environments", "remove", "a:1").returncode == 0
    assert run_cli("environments", "remove", "a", "--all").returncode == 0
    assert json.loads(run_cli("environments", "list", "--json").stdout) == {"environments": []}
    unknown = run_cli("check", "m", "--environment", "a")
    assert unknown.returncode == 2 and "no shared environment named 'a'" in unknown.stderr
    conda = run_cli("environments", "create", "c", "--conda", "conda.yaml")
    assert conda.returncode == 2 and "needs the conda kind" in conda.stderr


def test_model_requirements_come_from_a_current_lock(sklearn_model: Path, fake_uv) -> None:
    from envbuild.envspec import read_env
    from envbuild.lock import lock_model
    from envbuild.model import load_model

    spec = load_model(sklearn_model)
    env = read_env(spec)
    files = model_requirements(env)
    assert files.source == "python_env.yaml" and not files.from_lock
    lock_model(spec)
    locked = model_requirements(env)
    assert locked.from_lock
    assert [(r.text, r.origin.file) for r in locked.requirements] == [
        ("numpy==1.26.4", "pylock.toml"),
        ("scikit-learn==1.4.2", "pylock.toml"),
    ]
    text = (sklearn_model / "pylock.toml").read_text().splitlines()
    line = locked.requirements[1].origin.line
    assert line is not None and text[line - 1] == 'name = "scikit-learn"'
    assert locked.direct == {"mlflow", "scikit-learn"}
    (sklearn_model / "requirements.txt").write_text("mlflow==2.20.0\nscikit-learn==1.5.1\n")
    stale = model_requirements(read_env(load_model(sklearn_model)))
    assert stale.source == "python_env.yaml"
    assert "pylock.toml is not used: it no longer matches" in stale.warnings[0]


def test_union_needs_one_python_and_names_both_pins(tmp_path: Path) -> None:
    from envbuild.envspec import read_env
    from envbuild.model import load_model
    from envbuild.shared.union import Member, union_env, union_failure
    from tests.conftest import MLMODEL_SKLEARN

    def model(name: str, python: str, pin: str) -> Member:
        root = write_model(
            tmp_path / name,
            {
                "MLmodel": MLMODEL_SKLEARN.replace(
                    "virtualenv: python_env.yaml", "virtualenv: e.yaml"
                ),
                "e.yaml": f"python: {python}\ndependencies:\n- -r requirements.txt\n",
                "requirements.txt": f"mlflow==2.20.0\n{pin}\n",
            },
        )
        env = read_env(load_model(root))
        return Member(f"models/{name}", load_model(root), env, model_requirements(env))

    a, b = model("a", "3.11.7", "six==1.16.0"), model("b", "3.11.9", "six==1.15.0")
    union = union_env([a, b])
    assert union.python is not None and union.python.specifier == "==3.11.*"
    assert [str(r.origin) for r in union.requirements] == [
        "models/a/requirements.txt:1",
        "models/a/requirements.txt:2",
        "models/b/requirements.txt:1",
        "models/b/requirements.txt:2",
    ]
    uv_said = ResolutionError(
        "six==1.16.0 conflicts with six==1.15.0 (models/b/requirements.txt:2): because you "
        "require six==1.16.0 and six==1.15.0, we can conclude that your requirements are "
        "unsatisfiable."
    )
    mapped = union_failure(uv_said, union, [a, b])
    assert isinstance(mapped, ResolutionError)
    assert mapped.message.startswith(
        "the models models/a, models/b cannot share one environment: six==1.16.0 "
        "(models/a/requirements.txt:2) conflicts with six==1.15.0 (models/b/requirements.txt:2):"
        " because you require"
    )
    with pytest.raises(UsageError, match="the models need different Pythons"):
        union_env([a, model("c", "3.10", "six")])
    assert union_env([a, model("d", "3.10", "six")], python="3.11").python is None


def without_prefix_blocks(lines: list[str]) -> list[str]:
    """A template's lines as a venv image has them: the conda kind's ``{% if prefix %}`` blocks
    dropped, their ``{% else %}`` parts kept (other directives left as they are)."""
    import re

    directive = re.compile(r"^\s*\{%\s*(if|else|endif)\s*([a-z_]*)\s*%\}\s*$")
    out: list[str] = []
    stack: list[tuple[bool, bool]] = []  # (a prefix block?, keeping its lines now?)
    for line in lines:
        found = directive.match(line)
        keeping = all(keep for _prefix, keep in stack)
        if found and found[1] == "if":
            stack.append((found[2] == "prefix", found[2] != "prefix"))
            if found[2] != "prefix" and keeping:
                out.append(line)
            continue
        if found and stack and stack[-1][0]:
            if found[1] == "else":
                stack[-1] = (True, True)
            else:
                stack.pop()
            continue
        if found and found[1] == "endif":
            stack.pop()
        if keeping:
            out.append(line)
    return out


def build_stage(name: str) -> list[str]:
    from envbuild.templates import read_template

    lines = without_prefix_blocks(read_template(name).splitlines())
    start = next(i for i, line in enumerate(lines) if line.endswith(" AS build"))
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("FROM "))
    return [line for line in lines[start:end] if line.strip() and not line.startswith("#")]


def test_an_environment_image_installs_as_a_model_image_does() -> None:
    """The shared-environment image's build stage is the model image's, line for line."""
    stage = build_stage("Dockerfile.tmpl")
    assert any("uv pip sync" in line for line in stage)
    assert build_stage("Dockerfile.environment.tmpl") == stage


def test_environment_and_on_environment_dockerfiles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from envbuild.image.environment import dockerfile_text as environment_dockerfile
    from envbuild.image.environment import plan_environment_image
    from envbuild.image.shared import dockerfile_text, plan_on_environment
    from envbuild.lock import lock_from_text
    from envbuild.model import load_model
    from tests.conftest import MLMODEL_SKLEARN

    lock = lock_from_text(
        'lock-version = "1.0"\nrequires-python = "==3.11.*"\n[tool.envbuild]\n'
        'python = "3.11.7"\nplatforms = ["linux/amd64"]\n'
    )
    monkeypatch.delenv("ENVBUILD_BASE_IMAGE", raising=False)  # set by the docker stand-ins
    plan = plan_environment_image("team", "2", lock)
    text = environment_dockerfile(plan)
    assert plan.tag == "envbuild-env/team:2" and "FROM python:3.11-slim AS build" in text
    assert "COPY model/" not in text and '"envbuild.environment.name"="team"' in text
    record = record_image(tmp_path)
    model = load_model(write_model(tmp_path / "m", {"MLmodel": MLMODEL_SKLEARN}))
    on = plan_on_environment(model, record)
    text = dockerfile_text(on)
    assert text.splitlines()[7] == f"FROM {record.image_id}"
    assert "RUN" not in text, "nothing is installed on a shared image"
    assert 'ENTRYPOINT ["/opt/env/bin/python", "/opt/envbuild/runtime/runner.py"]' in text
    assert "COPY model/ /opt/envbuild/model/" in text
    assert on.tag.startswith("envbuild/m:env-")
    assert on.labels["envbuild.environment.version"] == "1"


def record_image(folder: Path) -> SharedEnvironment:
    from dataclasses import replace

    from envbuild.shared.record import IMAGE

    return replace(
        record("img", "1", folder),
        runs_in=IMAGE,
        prefix=None,
        python="/opt/env/bin/python",
        image="team/img:1",
        image_id="sha256:" + "ab" * 32,
    )
