"""CI templates (``envbuild ci-template github|gitlab``): a job that runs ``envbuild reproduce`` on
a list of model folders and publishes its JUnit report. The YAML lives in ``templates/ci/``."""

from __future__ import annotations

import json
from collections.abc import Sequence

from envbuild.__about__ import __version__
from envbuild.errors import UsageError

PROVIDERS = {"github": "github.yml", "gitlab": "gitlab.yml"}
DESTINATIONS = {"github": ".github/workflows/envbuild.yml", "gitlab": ".gitlab-ci.yml"}


def render_ci(provider: str, models: Sequence[str], *, kind: str = "venv") -> str:
    """The CI file for ``provider``, reproducing ``models`` (folders relative to the repo root)."""
    from envbuild.templates import read_template, render

    if provider not in PROVIDERS:
        raise UsageError(f"unknown CI provider {provider!r} (expected github or gitlab)")
    if not models:
        raise UsageError("name at least one model folder")
    text = read_template(f"ci/{PROVIDERS[provider]}")
    return render(
        text,
        {
            "models_json": json.dumps(list(models)),
            "kind": kind,
            "envbuild_requirement": f"envbuild=={__version__}",
        },
        name=PROVIDERS[provider],
    )
