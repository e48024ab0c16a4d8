"""The value a model source returns: a folder to read, and where it came from.

Kept apart from the resolvers so that commands, reports and image labels can use these values
without importing MLflow.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

LABEL_PREFIX = "envbuild.model."


@dataclass(frozen=True)
class Provenance:
    """Where a model came from: MODEL as given and the immutable reference it resolved to.

    Nothing here holds a credential: ``uri`` is redacted, the store URIs are reduced to scheme,
    host, port and path (:func:`envbuild.sources.refs.store_id`).
    """

    uri: str  # MODEL as given (credentials shown as ***)
    kind: str  # folder | run | model-version | logged-model | artifacts
    resolved_uri: str | None = None  # the immutable reference: runs:/ID/PATH, models:/NAME/3, ...
    registered_name: str | None = None
    version: str | None = None  # the registered version (an alias or `latest` resolved now)
    alias: str | None = None  # the alias MODEL named, if any
    stage: str | None = None  # the registry stage MODEL named, if any (deprecated by MLflow)
    moving: bool = False  # MODEL names an alias, `latest` or a stage: resolved again on each use
    run_id: str | None = None
    artifact_path: str | None = None  # inside the run, or inside the registered version
    model_id: str | None = None  # an MLflow 3 logged model's id, when MODEL named one
    tracking_uri: str | None = None  # the tracking server, without credentials
    registry_uri: str | None = None  # the model registry, when it is not the tracking server

    @property
    def is_local(self) -> bool:
        return self.kind == "folder"

    def to_dict(self) -> dict[str, object]:
        """For ``--json`` and reports: every field, ``None`` when unknown (a stable shape)."""
        return asdict(self)

    def labels(self) -> dict[str, str]:
        """Image labels naming the source (empty for a local folder: its path means nothing on
        the machine that runs the image)."""
        if self.is_local:
            return {}
        values = {
            "uri": self.uri,
            "registered-name": self.registered_name,
            "version": self.version,
            "run-id": self.run_id,
            "tracking-uri": self.tracking_uri,
            "registry-uri": self.registry_uri,
        }
        return {LABEL_PREFIX + k: v for k, v in values.items() if v}


@dataclass(frozen=True)
class Source:
    """A model folder ready for :func:`envbuild.model.load_model`, and its provenance.

    ``read_only``: the folder is a downloaded copy in envbuild's model cache. Nothing may be
    written into it (its files have no write bits): a lock it needs goes to envbuild's cache, and
    ``capture --write`` must refuse it. ``downloaded`` says whether this call fetched it (False
    when the cache already had it, and for a local folder).
    """

    path: Path  # what load_model() takes: the model folder, or the MLmodel file given
    provenance: Provenance
    read_only: bool = False
    downloaded: bool = False
    cache_entry: Path | None = None  # the cache entry holding the folder (None: local folder)

    def to_dict(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "read_only": self.read_only,
            "downloaded": self.downloaded,
            "cache_entry": str(self.cache_entry) if self.cache_entry else None,
            "provenance": self.provenance.to_dict(),
        }
