"""The capture probe (envbuild/runtime/capture_probe.py): its mapping of files and names to fake
installed distributions (in this process), and whole runs on tiny model folders that need no
mlflow (a subprocess of this interpreter; no network)."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from envbuild.capturing.engine import capture_model
from envbuild.errors import ModelRunError
from envbuild.model import load_model
from tests.conftest import run_cli

PROBE_PATH = Path(__file__).resolve().parents[2] / "envbuild" / "runtime" / "capture_probe.py"


@pytest.fixture(scope="module")
def probe():
    spec = importlib.util.spec_from_file_location("_envbuild_test_probe", PROBE_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def fake_dist(
    site: Path, name: str, version: str, files: dict[str, bytes], hashes: dict | None = None
) -> None:
    """Install a fake distribution: its files, METADATA and RECORD (``hashes``: RECORD's hash of
    some files, when it must differ from the content)."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = []
    for rel, data in files.items():
        target = site / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.write_bytes(data)
        lines.append(f"{rel},{(hashes or {}).get(rel, record_hash(data))},{len(data)}")
    lines.append(f"{info.name}/METADATA,,")
    (info / "RECORD").write_text("\n".join(lines) + "\n")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site-packages"
    fake_dist(site, "fakens-alpha", "1.0", {"fakens/alpha/__init__.py": b"A = 1\n"})
    fake_dist(site, "fakens-beta", "2.0", {"fakens/beta/__init__.py": b"B = 2\n"})
    real = b"WHO = 'two'\n"
    fake_dist(site, "dupe-two", "1.0", {"dupemod/__init__.py": real})
    fake_dist(
        site,
        "dupe-one",
        "1.0",
        {"dupemod/__init__.py": real},
        {"dupemod/__init__.py": record_hash(b"WHO = 'one'\n")},
    )
    fake_dist(site, "labelled-torch", "2.1.0+cpu", {"fake_torch/__init__.py": b""})
    monkeypatch.syspath_prepend(str(site))
    return site


def test_files_and_names_map_to_the_distributions_that_ship_them(probe, site: Path) -> None:
    installed = probe.Installed()
    index = {d["name"]: i for i, d in enumerate(installed.dists)}
    owners = installed.owners_of_file(str(site / "dupemod" / "__init__.py"), {})
    assert sorted(owners) == sorted([[index["dupe-one"], False], [index["dupe-two"], True]])
    assert installed.owners_of_name("fakens.alpha.sub") == [index["fakens-alpha"]]
    assert installed.owners_of_name("fakens.beta") == [index["fakens-beta"]]
    assert installed.owners_of_file(str(site / "fakens" / "beta" / "__init__.py"), {}) == [
        [index["fakens-beta"], None]
    ]
    assert installed.dists[index["labelled-torch"]]["version"] == "2.1.0+cpu"
    assert installed.owners_of_name("not_installed_anywhere") == []


def test_metadata_headers_are_read_past_folded_fields(probe, tmp_path: Path, monkeypatch) -> None:
    """METADATA is read directly (not through ``email``): a folded field with a line of spaces
    in it (a licence text) does not end the headers, the body after the empty line is not read."""
    site = tmp_path / "site-packages"
    fake_dist(site, "folded-dist", "3.1", {"folded_mod.py": b""})
    metadata = site / "folded_dist-3.1.dist-info" / "METADATA"
    metadata.write_text(
        "Metadata-Version: 2.1\nName: folded-dist\nVersion: 3.1\n"
        "License: Copyright (c) someone\n        \n        Redistribution is allowed.\n"
        "Requires-Dist: numpy>=1.25\nRequires-Dist: pytest ; extra == 'tests'\n"
        "\nRequires-Dist: not-a-header (the description)\n"
    )
    monkeypatch.syspath_prepend(str(site))
    installed = probe.Installed()
    (info,) = [d for d in installed.dists if d["name"] == "folded-dist"]
    assert info["version"] == "3.1"
    assert info["requires"] == ["numpy>=1.25", "pytest ; extra == 'tests'"]


def test_bytecode_is_written_except_into_the_model_folder(probe, tmp_path: Path) -> None:
    model, elsewhere = tmp_path / "model", tmp_path / "site"
    for folder, name in ((model / "code", "model_mod"), (elsewhere, "env_mod")):
        folder.mkdir(parents=True)
        (folder / f"{name}.py").write_text("X = 1\n")
    script = (
        "import sys, importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('p', {str(PROBE_PATH)!r})\n"
        "probe = importlib.util.module_from_spec(spec); spec.loader.exec_module(probe)\n"
        f"probe.keep_bytecode_out_of({str(model)!r})\n"
        f"sys.path[:0] = [{str(model / 'code')!r}, {str(elsewhere)!r}]\n"
        "import model_mod, env_mod\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE",)}
    env.pop("PYTHONPYCACHEPREFIX", None)
    subprocess.run([sys.executable, "-c", script], env=env, check=True)
    assert list((elsewhere / "__pycache__").glob("env_mod.*.pyc"))
    assert not (model / "code" / "__pycache__").exists()


def test_module_names_of_installed_files(probe) -> None:
    assert probe._module_name("pkg/sub/__init__.py") == "pkg.sub"
    assert probe._module_name("pkg/mod.py") == "pkg.mod"
    ext = "pkg/_fast" + importlib.machinery.EXTENSION_SUFFIXES[0]
    assert probe._module_name(ext) == "pkg._fast"
    for not_a_module in ("pkg-1.0.dist-info/RECORD", "../../bin/tool", "pkg/data.json"):
        assert probe._module_name(not_a_module) is None
    assert probe._module_name("pkg/__pycache__/mod.cpython-311.pyc") is None


def test_stdlib_is_recognized_with_and_without_stdlib_module_names(probe, monkeypatch) -> None:
    import json as json_module

    import yaml

    stdlib = probe.Stdlib()
    assert stdlib.contains("json.decoder", probe._real(json_module.__file__))
    assert not stdlib.contains("yaml", probe._real(yaml.__file__))
    assert stdlib.contains_name("os.path") and not stdlib.contains_name("yaml")
    monkeypatch.delattr(sys, "stdlib_module_names")  # what Python 3.8/3.9 have
    old = probe.Stdlib()
    assert old.names is None
    assert old.contains("json.decoder", probe._real(json_module.__file__))
    assert not old.contains("yaml", probe._real(yaml.__file__))
    assert old.contains_name("json") and not old.contains_name("yaml")


def test_static_scan_finds_absolute_imports_and_marks_optional_ones(probe, tmp_path) -> None:
    model = tmp_path / "model"
    (model / "code" / "helpers").mkdir(parents=True)
    (model / "code" / "helpers" / "__init__.py").write_text("")
    (model / "code" / "main.py").write_text(
        textwrap.dedent(
            """
            from __future__ import annotations
            import os, PIL.Image as Image
            from sklearn.linear_model import LogisticRegression
            from . import sibling
            from helpers import tool
            from typing import TYPE_CHECKING
            if TYPE_CHECKING:
                import pandas
            try:
                import ujson as fast_json
            except ImportError:
                fast_json = None
            def later():
                import yaml
            """
        )
    )
    (model / "broken.py").write_text("def (:\n")
    imports, errors = probe.static_imports(str(model), ["code"])
    found = {(module, optional) for module, _, _, optional in imports}
    assert found == {
        ("__future__", False),
        ("os", False),
        ("PIL.Image", False),
        ("sklearn.linear_model", False),
        ("helpers", False),
        ("typing", False),
        ("pandas", True),
        ("ujson", True),
        ("yaml", False),
    }
    assert errors and errors[0].startswith("broken.py: cannot parse")
    assert probe.local_module_names(str(model), ["code"]) == {"main", "helpers", "broken"}


def test_the_recorder_sees_a_lazy_import_and_its_phase(probe, tmp_path, monkeypatch) -> None:
    (tmp_path / "lazy_thing_for_probe.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    recorder = probe.ImportRecorder()
    recorder.phase = "predict"
    sys.meta_path.insert(0, recorder)
    try:
        import lazy_thing_for_probe  # noqa: F401
    finally:
        sys.meta_path.remove(recorder)
        sys.modules.pop("lazy_thing_for_probe", None)
    origin, phase = recorder.found["lazy_thing_for_probe"]
    assert Path(origin) == tmp_path / "lazy_thing_for_probe.py" and phase == "predict"


# ---------------------------------------------------------------------------------------------
# Whole probe runs (subprocess of this interpreter, without mlflow)


LOADER = """
import os


class Model:
    def predict(self, model_input, params=None):
        if os.environ.get("CAPTURE_TEST_FAIL_PREDICT"):
            raise ValueError("predict broke on purpose")
        import tomli_w  # imported only here: a lazy import load never sees

        rows = model_input.to_dict(orient="records")
        return [tomli_w.dumps(row).strip() for row in rows]


def _load_pyfunc(path):
    if os.environ.get("CAPTURE_TEST_FAIL_LOAD"):
        raise RuntimeError("load broke on purpose")
    import helper_module  # the model's own code

    return Model()


def not_called():
    import not_installed_module_xyz
"""

MLMODEL = """
flavors:
  python_function:
    loader_module: tiny_capture_loader
    code: code
    python_version: {python}
saved_input_example_info:
  artifact_path: input_example.json
  type: dataframe
  pandas_orient: split
"""


@pytest.fixture
def tiny_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    model = tmp_path / "tiny"
    (model / "code").mkdir(parents=True)
    (model / "code" / "tiny_capture_loader.py").write_text(LOADER)
    (model / "code" / "helper_module.py").write_text("HELP = 1\n")
    python = ".".join(map(str, sys.version_info[:3]))
    (model / "MLmodel").write_text(MLMODEL.format(python=python))
    (model / "input_example.json").write_text(
        json.dumps({"columns": ["a", "b"], "data": [[1, "x"], [2, "y"]]})
    )
    monkeypatch.setenv("ENVBUILD_NO_MLFLOW", "1")  # the runner's plain loader: fast, no mlflow
    return model


def test_a_lazy_import_is_captured_with_its_phase(tiny_model: Path) -> None:
    result = capture_model(load_model(tiny_model))
    by_name = {p.name: p for p in result.packages}
    assert by_name["tomli_w"].phase == "predict"
    assert by_name["tomli_w"].requirement.startswith("tomli_w==")
    assert by_name["PyYAML"].phase == "load"  # the runner reads MLmodel with it
    assert "envbuild" not in by_name
    assert result.backend == "plain"
    assert result.python_version == ".".join(map(str, sys.version_info[:3]))
    assert result.unmapped_modules == ["not_installed_module_xyz"]
    assert json.loads(result.expected_output) == {
        "predictions": ['a = 1\nb = "x"', 'a = 2\nb = "y"']
    }
    assert result.excluded["model"] >= 2  # tiny_capture_loader and helper_module
    assert not (tiny_model / "code" / "__pycache__").exists()


def test_a_model_that_fails_to_load_exits_5_with_its_own_error(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAPTURE_TEST_FAIL_LOAD", "1")
    with pytest.raises(ModelRunError, match="model failed to load: RuntimeError: load broke"):
        capture_model(load_model(tiny_model))
    proc = run_cli("capture", str(tiny_model))
    assert proc.returncode == 5
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert errors[0] == (
        f"error: {tiny_model}: model failed to load: RuntimeError: load broke on purpose"
    )
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_a_model_that_fails_to_predict_exits_5(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAPTURE_TEST_FAIL_PREDICT", "1")
    proc = run_cli("capture", str(tiny_model), "--json")
    assert proc.returncode == 5
    error = json.loads(proc.stdout)
    assert error["message"].endswith(
        "model failed to predict: ValueError: predict broke on purpose"
    )
    assert error["exit_code"] == 5
