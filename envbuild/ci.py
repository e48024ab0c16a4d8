"""CI templates (``envbuild ci-template github|gitlab``): a job that runs ``envbuild reproduce`` on
a list of models and publishes its JUnit report. The YAML lives in ``templates/ci/``.

A model may be a folder of the repository or an MLflow URI (``models:/NAME@ALIAS``): the job then
installs ``envbuild[mlflow]`` and takes the tracking server and its credentials from the CI's
secrets (MLflow's own variables), never from the file, which is committed."""

from __future__ import annotations

import json
from collections.abc import Sequence

from envbuild.__about__ import __version__
from envbuild.errors import UsageError

PROVIDERS = {"github": "github.yml", "gitlab": "gitlab.yml"}
DESTINATIONS = {"github": ".github/workflows/envbuild.yml", "gitlab": ".gitlab-ci.yml"}


def render_ci(provider: str, models: Sequence[str], *, kind: str = "venv") -> str:
    """The CI file for ``provider``, reproducing ``models`` (folders relative to the repo root,
    or MLflow URIs)."""
    from envbuild.redact import redact_url
    from envbuild.sources import is_uri
    from envbuild.templates import read_template, render

    if provider not in PROVIDERS:
        raise UsageError(f"unknown CI provider {provider!r} (expected github or gitlab)")
    if not models:
        raise UsageError("name at least one model folder or URI")
    for model in models:
        if redact_url(model) != model:
            raise UsageError(
                f"{redact_url(model)}: the model URI holds credentials, and the CI file is "
                "committed",
                hint="name the model without them; the job reads MLflow's credentials from the "
                "CI's secrets (MLFLOW_TRACKING_TOKEN, MLFLOW_TRACKING_USERNAME/_PASSWORD)",
            )
    registry = any(is_uri(m) and not m.lower().startswith("file:") for m in models)
    extra = "[mlflow]" if registry else ""
    text = read_template(f"ci/{PROVIDERS[provider]}")
    return render(
        text,
        {
            "models_json": json.dumps(list(models)),
            "kind": kind,
            "envbuild_requirement": f"'envbuild{extra}=={__version__}'",
            "registry": registry,
        },
        name=PROVIDERS[provider],
    )
