"""Every real ``conda.yaml`` in ../shared/corpus becomes a conda spec py-rattler can read.

Each file is read the way a conda environment will be: placed in a minimal model folder that
names it, through ``read_env`` -> ``conda_spec`` -> py-rattler's match spec parser (lenient, as
conda). Real files have ``numpy=1.18.1``, ``keras==2.2.5``, ``python=3.8.*``, ``python~=3.12``,
``psutil>5.0.0,<6.0.0``, ``tzdata=2025c``, ``pip`` after the pip block and duplicates.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from envbuild.conda.spec import conda_spec
from envbuild.envspec import read_env
from envbuild.model import load_model
from tests.conftest import write_model
from tests.corpus.test_corpus import CORPUS

FILES = (
    sorted(str(p.relative_to(CORPUS)) for p in CORPUS.glob("**/conda*.y*ml"))
    if CORPUS.is_dir()
    else []
)
pytestmark = pytest.mark.skipif(not FILES, reason=f"the shared corpus is not at {CORPUS}")

MLMODEL = """
flavors:
  python_function:
    env:
      conda: {name}
    loader_module: mlflow.pyfunc.model
mlflow_version: 2.20.0
"""


def spec_of(rel: str, tmp_path: Path):
    source = CORPUS / rel
    root = write_model(tmp_path / "model", {"MLmodel": MLMODEL.format(name=source.name)})
    shutil.copy(source, root / source.name)
    return conda_spec(read_env(load_model(root)))


@pytest.mark.parametrize("rel", FILES)
def test_every_corpus_conda_yaml_parses(rel: str, tmp_path: Path) -> None:
    spec = spec_of(rel, tmp_path)
    matched = spec.match_specs()
    assert len(matched) == len(spec.dependencies) >= 1
    assert [m.name.normalized for m in matched if m.name] == [
        d.name.lower() for d in spec.dependencies
    ]
    assert len(spec.python) >= 1  # a conda environment always gets its Python from the channel
    for dep in spec.dependencies:
        assert dep.origin.line is not None or dep.name == "python"


def test_corpus_covers_the_hard_cases(tmp_path: Path) -> None:
    seen = {}
    for index, rel in enumerate(FILES):
        spec = spec_of(rel, tmp_path / str(index))
        for dep, match in zip(spec.dependencies, spec.match_specs(), strict=True):
            seen[dep.spec] = str(match)
    assert seen["keras==2.2.5"] == "keras ==2.2.5"
    assert seen["scikit-learn=0.22.2.post1"] == "scikit-learn 0.22.2.post1.*"
    assert seen["python=3.10.*"] == "python 3.10.*"
    assert seen["python~=3.12"] == "python ~=3.12"
    assert seen["psutil>5.0.0,<6.0.0"] == "psutil >5.0.0,<6.0.0"
    assert seen["tzdata=2025c"] == "tzdata 2025c.*"


def test_automl_duplicates_are_kept_with_warnings(tmp_path: Path) -> None:
    spec = spec_of("06-azureml-automl-sklearn-huge-conda/conda.yaml", tmp_path)
    numpy = [d.spec for d in spec.dependencies if d.name == "numpy"]
    assert numpy == ["numpy~=1.18.0", "numpy==1.18.5"]
    assert any("numpy is listed again (numpy==1.18.5" in w for w in spec.warnings)
