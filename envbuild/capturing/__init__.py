"""Capture a model's real dependencies where it is logged: loud, exact and complete.

* ``envbuild.capture()``: a context manager; every model MLflow logs or saves inside it gets the
  requirements envbuild captured (pinned to the installed versions, local labels kept), a
  ``pylock.toml`` of the installed dependency closure and ``envbuild_expected_output.json``::

      with envbuild.capture():
          mlflow.sklearn.log_model(model, name="model", input_example=X[:5])

* ``envbuild.infer_requirements(model)``: the captured pins of a saved model folder, as a list
  usable as MLflow's ``pip_requirements=``;
* ``capture_model(model)`` / ``write_capture(model, capture)``: the stages ``envbuild capture``
  composes (engine.py runs the probe and maps its facts; writer.py writes the files).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from envbuild.capturing.mlflow_hook import CaptureSession, CaptureWarning, capture
from envbuild.model import ModelSpec

if TYPE_CHECKING:
    from envbuild.capturing.engine import Capture
    from envbuild.capturing.writer import Written

__all__ = [
    "CaptureSession",
    "CaptureWarning",
    "capture",
    "capture_model",
    "infer_requirements",
    "write_capture",
]


def capture_model(
    model: ModelSpec | str | os.PathLike[str], *, python: str | os.PathLike[str] | None = None
) -> Capture:
    """Load the saved model in ``python`` (default: this interpreter), predict on its input
    example, and return what it imports, pinned (see :mod:`envbuild.capturing.engine`)."""
    from envbuild.capturing.engine import capture_model as run
    from envbuild.model import load_model

    spec = model if isinstance(model, ModelSpec) else load_model(model)
    return run(spec, python=python)


def write_capture(model: ModelSpec, result: Capture, **options: Any) -> Written:
    """Rewrite the model's env files and write its lock and expected output (all or nothing)."""
    from envbuild.capturing.writer import write_capture as write

    return write(model, result, **options)


def infer_requirements(
    model: ModelSpec | str | os.PathLike[str], *, python: str | os.PathLike[str] | None = None
) -> list[str]:
    """The requirements a saved model really imports, pinned to the versions installed in
    ``python`` (default: this interpreter), for ``mlflow.<flavor>.log_model(pip_requirements=)``.

    The ``--extra-index-url`` a labelled build (``torch==2.1.0+cpu``) needs comes first. Every
    direct requirement is listed, not only the roots ``capture --write`` puts in
    ``requirements.txt``: MLflow installs these without envbuild's lock, so a package that
    another one merely allows (scikit-learn under mlflow's ``<2``) must be pinned here.
    """
    return capture_model(model, python=python).requirement_lines(roots_only=False)
