"""Capture without a model run: mapping the probe's facts to pins, the closure, labelled and
local builds, the diff against the model's files, and writing the files and the lock.

The probe's JSON document is written by hand here (what capture_probe.py reports for such an
environment); uv is replaced by a canned resolution, except for the unreachable-index test, which
runs the real uv against a closed loopback port (no network).
"""

from __future__ import annotations

import hashlib
import importlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from envbuild.capturing import engine
from envbuild.capturing.engine import compare, interpret, labelled_index
from envbuild.capturing.writer import (
    EXPECTED_OUTPUT,
    render_env_files,
    write_capture,
)
from envbuild.envspec import read_env
from envbuild.errors import ResolutionError
from envbuild.lock import check_lock, read_lock
from envbuild.lock.toml import render
from envbuild.model import load_model
from envbuild.yamlio import load_yaml
from tests.conftest import run_cli

lockmod = importlib.import_module("envbuild.lock.pylock")
uvmod = importlib.import_module("envbuild.lock.uv")

MARKERS = {
    "implementation_name": "cpython",
    "implementation_version": "3.11.7",
    "os_name": "posix",
    "platform_machine": "x86_64",
    "platform_release": "6.1.0",
    "platform_system": "Linux",
    "platform_version": "#1 SMP",
    "python_full_version": "3.11.7",
    "platform_python_implementation": "CPython",
    "python_version": "3.11",
    "sys_platform": "linux",
}


def dist(name: str, version: str, *requires: str, direct_url: dict | None = None) -> dict:
    return {
        "name": name,
        "version": version,
        "requires": list(requires),
        "direct_url": direct_url,
        "installer": "pip",
        "location": "/venv/lib/python3.11/site-packages",
        "shadowed": False,
    }


def document(
    dists: list[dict],
    modules: list[tuple[str, list[Any], str]],
    static: list[tuple[str, list[str], bool]] = (),
    *,
    with_input: bool = True,
) -> dict:
    """A probe document: ``modules`` are (name, owners, phase); an owner is a distribution
    name, or (name, hash matches)."""
    index = {d["name"]: i for i, d in enumerate(dists)}
    out_modules = []
    for name, owners, phase in modules:
        pairs = [(o, None) if isinstance(o, str) else o for o in owners]
        out_modules.append(
            {
                "name": name,
                "file": f"/venv/lib/python3.11/site-packages/{name.replace('.', '/')}.py",
                "kind": "record" if owners else "unmapped",
                "phase": phase,
                "owners": [[index[o], match] for o, match in pairs],
            }
        )
    return {
        "probe_version": "1",
        "python": {
            "version": "3.11.7",
            "implementation": "CPython",
            "executable": "/venv/bin/python",
            "markers": MARKERS,
        },
        "model": "/model",
        "input": "/model/serving_input_example.json" if with_input else None,
        "backend": "mlflow",
        "error": None,
        "expected_output": '{"predictions": [1, 0]}' if with_input else None,
        "modules": out_modules,
        "excluded": {"stdlib": 10},
        "static_imports": [
            {
                "module": module,
                "file": "code/model.py",
                "line": 3,
                "optional": optional,
                "owners": [index[o] for o in owners],
            }
            for module, owners, optional in static
        ],
        "parse_errors": [],
        "distributions": dists,
        "timings": {},
    }


def captured(doc: dict, model: Path = Path("/model")) -> engine.Capture:
    return interpret(doc, model_path=model, python="/venv/bin/python")


def direct(result: engine.Capture) -> list[str]:
    """Every direct requirement (what was imported), roots or not."""
    return [p.requirement for p in result.packages]


MLFLOW_FAMILY = [
    dist("mlflow", "3.1.0", "mlflow-skinny==3.1.0", "Flask<4"),
    dist("mlflow-skinny", "3.1.0", "mlflow-tracing==3.1.0", "PyYAML<7,>=5.1"),
    dist("mlflow-tracing", "3.1.0"),
    dist("Flask", "3.0.0"),
    dist("PyYAML", "6.0.2"),
]


def test_a_file_several_distributions_ship_goes_to_the_one_that_requires_the_others() -> None:
    doc = document(
        MLFLOW_FAMILY,
        [
            ("mlflow", ["mlflow", "mlflow-skinny", "mlflow-tracing"], "load"),
            ("mlflow.pyfunc", ["mlflow", "mlflow-skinny"], "load"),
            ("yaml", ["PyYAML"], "load"),
        ],
    )
    result = captured(doc)
    assert direct(result) == ["mlflow==3.1.0", "PyYAML==6.0.2"]
    assert [p.requirement for p in result.closure] == [
        "Flask==3.0.0",
        "mlflow==3.1.0",
        "mlflow-skinny==3.1.0",
        "mlflow-tracing==3.1.0",
        "PyYAML==6.0.2",
    ]
    assert result.packages[0].modules == ("mlflow",)
    assert result.warnings == ()  # no "same files" warning: mlflow requires the others


def test_skinny_alone_is_captured_as_skinny() -> None:
    dists = [d for d in MLFLOW_FAMILY if d["name"] != "mlflow"]
    doc = document(dists, [("mlflow", ["mlflow-skinny", "mlflow-tracing"], "load")])
    assert direct(captured(doc)) == ["mlflow-skinny==3.1.0"]


def test_the_file_really_loaded_decides_by_its_hash() -> None:
    dists = [dist("opencv-python", "4.9.0.80"), dist("opencv-python-headless", "4.10.0.84")]
    doc = document(
        dists,
        [("cv2", [("opencv-python", False), ("opencv-python-headless", True)], "load")],
    )
    assert direct(captured(doc)) == ["opencv-python-headless==4.10.0.84"]


def test_identical_files_of_unrelated_distributions_are_reported() -> None:
    dists = [dist("b-fork", "1.0"), dist("a-fork", "1.0")]
    doc = document(dists, [("common", ["b-fork", "a-fork"], "load")])
    result = captured(doc)
    assert direct(result) == ["a-fork==1.0"]
    assert any("provided by a-fork, b-fork" in w for w in result.warnings)


def test_namespace_package_portions_map_to_their_own_distributions() -> None:
    dists = [dist("protobuf", "5.27.0"), dist("google-auth", "2.30.0"), dist("grpcio", "1.64.0")]
    doc = document(
        dists,
        [
            ("google.protobuf", ["protobuf"], "load"),
            ("google.protobuf.message", ["protobuf"], "load"),
            ("google.auth", ["google-auth"], "predict"),
        ],
    )
    result = captured(doc)
    assert direct(result) == ["google-auth==2.30.0", "protobuf==5.27.0"]
    auth = result.packages[0]
    assert auth.modules == ("google.auth",) and auth.phase == "predict"


def test_local_version_labels_are_kept_and_their_index_recorded() -> None:
    dists = [
        dist("torch", "2.1.0+cu118", "filelock", "triton==2.1.0; platform_system == 'Linux'"),
        dist("filelock", "3.13.1"),
        dist("triton", "2.1.0"),
        dist("torchvision", "0.16.0+cpu"),
    ]
    doc = document(dists, [("torch", ["torch"], "load"), ("torchvision", ["torchvision"], "load")])
    result = captured(doc)
    assert direct(result) == ["torch==2.1.0+cu118", "torchvision==0.16.0+cpu"]
    assert result.extra_index_urls == [
        "https://download.pytorch.org/whl/cpu",
        "https://download.pytorch.org/whl/cu118",
    ]
    assert result.requirement_lines()[:2] == [
        "--extra-index-url https://download.pytorch.org/whl/cpu",
        "--extra-index-url https://download.pytorch.org/whl/cu118",
    ]
    assert [p.requirement for p in result.closure] == [
        "filelock==3.13.1",
        "torch==2.1.0+cu118",
        "torchvision==0.16.0+cpu",
        "triton==2.1.0",
    ]
    assert labelled_index("2.1.0+rocm5.6") == "https://download.pytorch.org/whl/rocm5.6"
    assert labelled_index("1.0") is None


def test_an_unknown_label_and_a_local_build_are_reported() -> None:
    dists = [
        dist("fancy", "1.0+internal"),
        dist(
            "mylib",
            "0.3",
            direct_url={"url": "file:///home/me/mylib", "dir_info": {"editable": True}},
        ),
    ]
    doc = document(dists, [("fancy", ["fancy"], "load"), ("mylib", ["mylib"], "load")])
    result = captured(doc)
    assert direct(result) == ["fancy==1.0+internal", "mylib==0.3"]
    assert [p.name for p in result.local_builds] == ["mylib"]
    text = " ".join(result.warnings)
    assert "fancy==1.0+internal is a labelled build (+internal) from no known index" in text
    assert "mylib 0.3 was installed from file:///home/me/mylib (a local build)" in text


def test_url_installs_are_pinned_to_their_url() -> None:
    dists = [
        dist(
            "vcspkg",
            "0.1",
            direct_url={
                "url": "https://github.com/o/vcspkg",
                "vcs_info": {"vcs": "git", "commit_id": "0123abcd"},
            },
        ),
        dist(
            "wheelpkg",
            "2.0",
            direct_url={"url": "https://files.example.org/wheelpkg-2.0-py3-none-any.whl"},
        ),
    ]
    doc = document(dists, [("vcspkg", ["vcspkg"], "load"), ("wheelpkg", ["wheelpkg"], "load")])
    assert direct(captured(doc)) == [
        "vcspkg @ git+https://github.com/o/vcspkg@0123abcd",
        "wheelpkg @ https://files.example.org/wheelpkg-2.0-py3-none-any.whl",
    ]


def test_closure_follows_markers_and_extras_of_the_logging_interpreter() -> None:
    dists = [
        dist(
            "app",
            "1.0",
            "old; python_version < '3.0'",
            "winonly; sys_platform == 'win32'",
            "lib[fast]>=1",
        ),
        dist("lib", "2.0", "speedup; extra == 'fast'", "docs; extra == 'docs'", "gone>=1"),
        dist("speedup", "0.9"),
        dist("old", "1.0"),
        dist("winonly", "1.0"),
        dist("docs", "1.0"),
    ]
    result = captured(document(dists, [("app", ["app"], "load")]))
    assert [p.name for p in result.closure] == ["app", "lib", "speedup"]
    assert any("lib requires gone, which is not installed" in w for w in result.warnings)


def test_static_imports_add_distributions_and_report_unmapped_modules() -> None:
    dists = [dist("pillow", "10.3.0"), dist("PyYAML", "6.0.1"), dist("envbuild", "0.1")]
    doc = document(
        dists,
        [("yaml", ["PyYAML"], "predict"), ("envbuild", ["envbuild"], "load")],
        static=[
            ("PIL.Image", ["pillow"], False),
            ("yaml", ["PyYAML"], False),
            ("not_installed", [], False),
            ("optional_accel", [], True),
        ],
    )
    result = captured(doc)
    assert direct(result) == ["pillow==10.3.0", "PyYAML==6.0.1"]  # never envbuild
    pillow, pyyaml = result.packages
    assert pillow.found_by == ("static",) and pillow.modules == ("PIL.Image",)
    assert pyyaml.found_by == ("import", "static") and pyyaml.phase == "predict"
    assert result.unmapped_modules == ["not_installed"]
    assert str(result.unmapped[0]) == "not_installed (imported by code/model.py:3)"


def test_modules_from_no_distribution_are_unmapped() -> None:
    doc = document(
        [dist("numpy", "1.26.4")], [("helpers", [], "load"), ("numpy", ["numpy"], "load")]
    )
    result = captured(doc)
    assert direct(result) == ["numpy==1.26.4"]
    assert result.unmapped_modules == ["helpers"]
    assert "no installed distribution provides module helpers (imported from" in " ".join(
        result.warnings
    )


def test_without_input_example_predict_is_not_run_and_said_so() -> None:
    doc = document([dist("numpy", "1.26.4")], [("numpy", ["numpy"], "load")], with_input=False)
    result = captured(doc)
    assert result.expected_output is None
    assert any("no input example" in w for w in result.warnings)


def test_roots_are_the_direct_requirements_nothing_else_captured_requires() -> None:
    dists = [
        dist("mlflow", "3.1.0", "numpy<3", "scikit-learn<2"),
        dist("scikit-learn", "1.5.0", "numpy>=1.19"),
        dist("numpy", "1.26.4"),
        dist("torch", "2.13.0+cpu", "filelock"),
        dist("filelock", "3.15.0"),
        # a requirement cycle: neither hides the other
        dist("left", "1.0", "right"),
        dist("right", "1.0", "left"),
    ]
    modules = [
        ("mlflow", ["mlflow"], "load"),
        ("sklearn", ["scikit-learn"], "load"),
        ("numpy", ["numpy"], "load"),
        ("torch", ["torch"], "load"),
        ("filelock", ["filelock"], "load"),
        ("left", ["left"], "load"),
        ("right", ["right"], "load"),
    ]
    result = captured(document(dists, modules))
    assert result.requirements == ["left==1.0", "mlflow==3.1.0", "right==1.0", "torch==2.13.0+cpu"]
    assert [p.name for p in result.packages if not p.root] == ["filelock", "numpy", "scikit-learn"]
    assert len(result.closure) == 7  # the lock still pins every one


def test_a_broken_package_is_reported_and_left_out_unless_needed() -> None:
    dists = [
        dist("torch", "2.13.0+cpu"),
        dist("torchvision", "0.28.0", "torch"),
        dist("helper", "1.0", "torchaudio"),
        dist("torchaudio", "2.13.0", "torch"),
        dist("pip", "24.0"),
    ]
    modules = [("torch", ["torch"], "load"), ("helper", ["helper"], "load")]
    static = [("torchvision", ["torchvision"], False)]
    result = captured(document(dists, modules, static))
    assert engine.import_candidates(result) == ["torchaudio", "torchvision"]
    assert result.requirements == ["helper==1.0", "torchvision==0.28.0"]  # torch: required
    error = "import torchvision: RuntimeError: operator torchvision::nms does not exist"
    marked = engine.mark_broken(
        result, {"torchvision": error, "torchaudio": "import torchaudio: OSError: x"}
    )
    assert [p.name for p in marked.broken] == ["torchaudio", "torchvision"]
    assert marked.broken[1].broken == error
    # torchvision: nothing needs it, left out; torch becomes a root again
    assert marked.requirements == ["helper==1.0", "torch==2.13.0+cpu"]
    assert "torchvision" not in {p.key for p in marked.closure}
    # torchaudio: helper requires it, so it stays in the lock, with a warning
    assert "torchaudio" in {p.key for p in marked.closure}
    assert any("torchvision 0.28.0 is installed but fails to import" in w for w in marked.warnings)
    assert any("torchaudio" in w and "kept because helper" in w for w in marked.warnings)
    assert engine.mark_broken(result, {"torchvision": None}) is result


def test_the_import_check_runs_in_the_logging_interpreter(tmp_path: Path) -> None:
    """The stdlib-only checker, run by path as capture runs it, on a package that raises."""
    import subprocess
    import sys

    site = tmp_path / "site"
    (site / "brokenpkg").mkdir(parents=True)
    (site / "brokenpkg" / "__init__.py").write_text(
        "raise RuntimeError('built for another torch')\n"
    )
    info = site / "brokenpkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenpkg\nVersion: 1.0\n")
    (info / "RECORD").write_text("brokenpkg/__init__.py,,\nbrokenpkg-1.0.dist-info/METADATA,,\n")
    output = tmp_path / "found.json"
    subprocess.run(
        [sys.executable, str(engine.IMPORT_CHECK), str(output), "brokenpkg", "PyYAML", "no-such"],
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin"},
        check=True,
    )
    found = json.loads(output.read_text())
    assert found == {
        "brokenpkg": "import brokenpkg: RuntimeError: built for another torch",
        "PyYAML": None,
        "no-such": None,
    }
    assert engine.check_imports(sys.executable, ["PyYAML"]) == {"PyYAML": None}


def test_compare_lists_added_removed_and_repinned(sklearn_model: Path) -> None:
    dists = [dist("mlflow", "2.20.0"), dist("scikit-learn", "1.5.1"), dist("numpy", "1.26.4")]
    doc = document(
        dists,
        [
            ("mlflow", ["mlflow"], "load"),
            ("sklearn", ["scikit-learn"], "load"),
            ("numpy", ["numpy"], "load"),
        ],
    )
    changes = compare(captured(doc), read_env(load_model(sklearn_model)))
    assert changes.to_dict() == {
        "source": "python_env.yaml",
        "added": ["numpy==1.26.4"],
        "removed": [],
        "repinned": [{"from": "scikit-learn==1.5.0", "to": "scikit-learn==1.5.1"}],
        "unchanged": ["mlflow==2.20.0"],
        "python": {"from": "3.11.7", "to": "3.11.7"},
        "changed": True,
    }
    nothing = compare(captured(document([dist("numpy", "1.0")], [])), None)
    assert nothing.python_before is None and nothing.changed


# ---------------------------------------------------------------------------------------------
# Writing


SKLEARN_DISTS = [
    dist("mlflow", "2.20.0", "numpy<3"),
    dist("scikit-learn", "1.5.0", "numpy>=1.19"),
    dist("numpy", "1.26.4"),
    dist("pip", "24.0"),
    dist("setuptools", "69.0.0"),
]
SKLEARN_MODULES = [
    ("mlflow", ["mlflow"], "load"),
    ("sklearn", ["scikit-learn"], "load"),
    ("numpy", ["numpy"], "load"),
]


def fake_resolution(calls: list) -> Any:
    """A stand-in for ``envbuild.lock.uv.resolve``: the requested pins as uv would lock them."""

    def resolve(env, target, **kwargs):
        python = target.python
        calls.append(
            {"env": env, "python": python, "platforms": list(target.platform_names), **kwargs}
        )
        packages = []
        for req in env.requirements:
            name, version = req.text.split("==")
            wheel = f"{name}-{version}-py3-none-any.whl"
            packages.append(
                {
                    "name": name,
                    "version": version,
                    "wheels": [
                        {
                            "url": f"https://files.example.org/{wheel}",
                            "upload-time": datetime(2024, 1, 1, tzinfo=timezone.utc),
                            "size": 1,
                            "hashes": {"sha256": hashlib.sha256(wheel.encode()).hexdigest()},
                        }
                    ],
                }
            )
        doc = {
            "lock-version": "1.0",
            "environments": ["sys_platform == 'linux' and platform_machine == 'x86_64'"],
            "requires-python": "==3.11.*",
            "created-by": "envbuild",
            "packages": packages,
            "tool": {
                "envbuild": {
                    "python": python,
                    "platforms": ["linux/amd64"],
                    "model-python": env.python.specifier,
                    "input-digest": env.digest(),
                    "index-url": "https://pypi.org/simple",
                    "requirements": sorted(r.text for r in env.requirements),
                }
            },
        }
        return lockmod.lock_from_text(render(doc))

    return resolve


def test_the_three_env_files_carry_the_same_pins(sklearn_model: Path) -> None:
    spec = load_model(sklearn_model)
    result = captured(document(SKLEARN_DISTS, SKLEARN_MODULES), sklearn_model)
    files = render_env_files(spec, result)
    # the roots: numpy is required by both others, so the lock pins it, not the env files
    pins = ["mlflow==2.20.0", "scikit-learn==1.5.0"]
    assert files["requirements.txt"] == "".join(f"{p}\n" for p in pins)
    for name, text in files.items():
        (sklearn_model / name).write_text(text)
    venv = load_yaml(sklearn_model / "python_env.yaml")
    assert venv == {
        "python": "3.11.7",
        "build_dependencies": ["pip==24.0"],  # the model's own, kept
        "dependencies": ["-r requirements.txt"],
    }
    conda = load_yaml(sklearn_model / "conda.yaml")
    assert conda["channels"] == ["conda-forge"] and conda["name"] == "mlflow-env"
    assert conda["dependencies"] == ["python=3.11.7", "pip<=24.0", {"pip": pins}]
    env = read_env(load_model(sklearn_model))
    assert [r.text for r in env.requirements] == pins
    assert env.python.text == "3.11.7"
    assert not env.warnings  # python_env.yaml, requirements.txt and conda.yaml agree


def test_labelled_builds_put_their_index_in_every_file(sklearn_model: Path) -> None:
    dists = [dist("torch", "2.1.0+cpu"), dist("pip", "24.0")]
    result = captured(document(dists, [("torch", ["torch"], "load")]), sklearn_model)
    files = render_env_files(load_model(sklearn_model), result)
    lines = ["--extra-index-url https://download.pytorch.org/whl/cpu", "torch==2.1.0+cpu"]
    assert files["requirements.txt"].splitlines() == lines
    assert f"  - {lines[0]}\n  - {lines[1]}\n" in files["conda.yaml"]


def test_write_records_the_rewritten_files_digest_so_check_passes(
    sklearn_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list = []
    monkeypatch.setattr(uvmod, "resolve", fake_resolution(calls))
    result = captured(document(SKLEARN_DISTS, SKLEARN_MODULES), sklearn_model)
    written = write_capture(load_model(sklearn_model), result)
    assert written.files == (
        "requirements.txt",
        "python_env.yaml",
        "conda.yaml",
        "pylock.toml",
        EXPECTED_OUTPUT,
    )
    # uv was asked for exactly the installed closure, for the captured Python
    (call,) = calls
    assert sorted(r.text for r in call["env"].requirements) == [
        "mlflow==2.20.0",
        "numpy==1.26.4",
        "scikit-learn==1.5.0",
    ]
    assert call["python"] == "3.11.7"
    lk = check_lock(load_model(sklearn_model))  # `envbuild lock --check` passes
    tool = lk.document["tool"]["envbuild"]
    assert tool["requirements"] == ["mlflow==2.20.0", "scikit-learn==1.5.0"]
    assert tool["source"] == "installed"
    assert lk.input_digest == read_env(load_model(sklearn_model)).digest()
    assert read_lock(sklearn_model / "pylock.toml").text == written.lock.text
    assert (sklearn_model / EXPECTED_OUTPUT).read_text() == '{"predictions": [1, 0]}'
    check = run_cli("lock", str(sklearn_model), "--check")
    assert check.returncode == 0, check.stderr


def test_a_stale_expected_output_is_removed(
    sklearn_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(uvmod, "resolve", fake_resolution([]))
    (sklearn_model / EXPECTED_OUTPUT).write_text('{"predictions": "old"}')
    result = captured(document(SKLEARN_DISTS, SKLEARN_MODULES, with_input=False), sklearn_model)
    written = write_capture(load_model(sklearn_model), result)
    assert written.removed == (EXPECTED_OUTPUT,)
    assert not (sklearn_model / EXPECTED_OUTPUT).exists()


def test_nothing_is_written_when_the_lock_fails(
    sklearn_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(*args, **kwargs):
        raise ResolutionError("numpy==1.26.4 cannot be installed: no wheel")

    monkeypatch.setattr(uvmod, "resolve", failing)
    before = {p.name: p.read_bytes() for p in sklearn_model.iterdir()}
    result = captured(document(SKLEARN_DISTS, SKLEARN_MODULES), sklearn_model)
    with pytest.raises(ResolutionError, match="cannot lock the installed versions: numpy"):
        write_capture(load_model(sklearn_model), result)
    assert {p.name: p.read_bytes() for p in sklearn_model.iterdir()} == before


def test_a_local_build_fails_the_lock_with_its_origin(sklearn_model: Path) -> None:
    dists = [
        dist("mylib", "0.3", direct_url={"url": "file:///home/me/mylib", "dir_info": {}}),
        dist("pip", "24.0"),
    ]
    result = captured(document(dists, [("mylib", ["mylib"], "load")]), sklearn_model)
    with pytest.raises(ResolutionError) as info:
        write_capture(load_model(sklearn_model), result)
    assert "mylib 0.3 was installed from a local folder or file (a local build)" in str(info.value)
    assert info.value.exit_code == 3 and "--extra-index-url" in info.value.hint


def test_an_unreachable_labelled_index_fails_clearly(
    sklearn_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real uv; the index is a closed loopback port, so nothing leaves the machine."""
    import re

    monkeypatch.setattr(
        engine,
        "LABELLED_INDEXES",
        ((re.compile(r"^cpu$"), "http://127.0.0.1:9/whl/{label}"),),
    )
    monkeypatch.setenv("UV_HTTP_RETRIES", "0")
    monkeypatch.setenv("UV_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("ENVBUILD_TORCH_INDEX_URL", "http://127.0.0.1:9/whl/{accelerator}")
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    result = captured(document([dist("torch", "2.1.0+cpu")], [("torch", ["torch"], "load")]))
    assert result.extra_index_urls == ["http://127.0.0.1:9/whl/cpu"]
    with pytest.raises(ResolutionError) as info:
        write_capture(load_model(sklearn_model), result)
    message = str(info.value)
    assert message.startswith(
        "cannot lock the installed versions: torch==2.1.0+cpu: cannot reach the PyTorch cpu "
        "index http://127.0.0.1:9/whl/cpu"
    ), message
    assert "torch==2.1.0+cpu (from http://127.0.0.1:9/whl/cpu)" in info.value.hint
    assert not (sklearn_model / "pylock.toml").exists()


# ---------------------------------------------------------------------------------------------
# Public API and command line


def test_capture_is_exported_and_callable_either_way() -> None:
    import envbuild
    import envbuild.capturing.engine  # binds the package attribute to the module first

    assert callable(envbuild.capture)
    session = envbuild.capture(strict=False)
    assert hasattr(session, "__enter__")
    from envbuild.capturing import capture, infer_requirements

    assert envbuild.infer_requirements is infer_requirements
    assert callable(capture)


def test_cli_capture_help_and_bad_interpreter(sklearn_model: Path) -> None:
    proc = run_cli("capture", "--help")
    assert proc.returncode == 0 and "--write" in proc.stdout and "--python" in proc.stdout
    bad = run_cli("capture", str(sklearn_model), "--python", "/nonexistent/python", "--json")
    assert bad.returncode == 2
    error = json.loads(bad.stdout)
    assert error["message"] == "--python: no such interpreter: /nonexistent/python"


# ---------------------------------------------------------------------------------------------
# The hook's wrappers, without MLflow


def test_wrapped_save_model_captures_once_and_only_inside_a_session(tmp_path: Path) -> None:
    from envbuild.capturing import mlflow_hook

    seen: list[Path] = []

    class Recording(mlflow_hook.CaptureSession):
        def after_save(self, path: Path) -> None:
            seen.append(path)

    def save_model(sk_model, path, mlflow_model=None, **kwargs):
        inner(path=path)  # a flavor saving through another wrapped save_model
        return "saved"

    inner = mlflow_hook.wrap_save_model(lambda path: None)
    wrapped = mlflow_hook.wrap_save_model(save_model)
    assert mlflow_hook.wrap_save_model(wrapped) is wrapped
    assert wrapped("model", str(tmp_path / "outside")) == "saved"
    assert seen == []  # no session: MLflow's behaviour, unchanged
    token = mlflow_hook._session.set(Recording())
    try:
        assert wrapped("model", str(tmp_path / "a")) == "saved"
        wrapped("model", path=tmp_path / "b")
    finally:
        mlflow_hook._session.reset(token)
    assert seen == [tmp_path / "a", tmp_path / "b"]  # once per save, with its path


def test_the_flavor_stand_in_delegates_everything_but_save_model() -> None:
    import types

    from envbuild.capturing import mlflow_hook

    flavor = types.ModuleType("mlflow.fakeflavor")
    flavor.save_model = lambda path: path
    flavor.FLAVOR_NAME = "fake"
    proxy = mlflow_hook._FlavorProxy(flavor)
    assert proxy.__name__ == "mlflow.fakeflavor" and proxy.FLAVOR_NAME == "fake"
    assert proxy.save_model.__envbuild_original__ is flavor.save_model
    assert mlflow_hook._is_flavor("mlflow.fakeflavor", flavor) is False  # no log_model
    flavor.log_model = lambda: None
    assert mlflow_hook._is_flavor("mlflow.fakeflavor", flavor)
    assert not mlflow_hook._is_flavor("mlflow.fakeflavor.sub", flavor)
