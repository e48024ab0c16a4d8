"""Model sources: MODEL (a folder, ``runs:/``, ``models:/NAME@ALIAS``, ``s3://`` ...) -> a folder.

Every command turns its MODEL argument into a folder with one call, before the first stage::

    source = open_model(args.model, tracking_uri=args.tracking_uri, registry_uri=args.registry_uri)
    spec = load_model(source.path)
    source.provenance.to_dict()   # for --json and reports;  .labels() for an image
    source.read_only              # a downloaded copy: write no lock or capture into it

A folder (or ``file:`` URI) is used in place, and MLflow is never imported for it. A URI is
resolved through MLflow's client (:mod:`envbuild.sources.mlflow`, the only module that imports
MLflow) to an immutable reference — a run and artifact path, a registered name and version (an
alias, ``latest`` or a stage resolved now), a logged model id, an artifact-store URI — and
downloaded once into envbuild's model cache (:mod:`envbuild.sources.model_cache`). A reference
that is immutable as written (``runs:/ID/PATH``, ``models:/NAME/3``, ``models:/m-ID``, ``s3://...``)
is found in the cache without importing MLflow or asking the server, when the store it lives in
is named (``--tracking-uri``/``--registry-uri`` or ``MLFLOW_TRACKING_URI``/``MLFLOW_REGISTRY_URI``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envbuild.sources.refs import (
    ArtifactRef,
    FolderRef,
    LoggedModelRef,
    ModelRef,
    RegistryRef,
    RunRef,
    identity,
    is_uri,
    parse,
    shown,
    store_id,
)
from envbuild.sources.source import Provenance, Source

if TYPE_CHECKING:
    from envbuild.sources.model_cache import Entry

__all__ = ["Provenance", "Source", "is_uri", "open_model", "parse"]

_KINDS = {
    RunRef: "run",
    RegistryRef: "model-version",
    LoggedModelRef: "logged-model",
    ArtifactRef: "artifacts",
}


def open_model(
    model: str | os.PathLike[str],
    *,
    tracking_uri: str | None = None,
    registry_uri: str | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> Source:
    """MODEL as typed -> a :class:`Source`: the folder to pass to ``load_model`` + provenance.

    ``tracking_uri``/``registry_uri`` (the CLI's ``--tracking-uri``/``--registry-uri``) win over
    ``MLFLOW_TRACKING_URI``/``MLFLOW_REGISTRY_URI``, which win over MLflow's defaults. Errors are
    :class:`~envbuild.errors.EnvbuildError` subclasses: ``MissingExtra`` (MLflow not installed,
    exit 2), ``ModelSourceError`` (unknown run/model/version/alias, no MLmodel, exit 2),
    ``SourceUnreachable`` (exit 3).
    """
    from envbuild.sources.folder import open_folder

    text = os.fspath(model)
    ref = parse(text)
    if isinstance(ref, FolderRef):
        return open_folder(ref)
    tracking, registry = configured_uris(tracking_uri, registry_uri)
    known = _identity_without_server(ref, tracking, registry)
    if known is not None:
        from envbuild.sources import model_cache

        entry = model_cache.lookup(known)
        if entry is not None:
            return _source(ref, entry, downloaded=False)
    return _resolve_and_download(ref, tracking, registry, on_progress)


def configured_uris(
    tracking_uri: str | None = None, registry_uri: str | None = None
) -> tuple[str | None, str | None]:
    """The tracking and registry URIs the user named (arguments, then MLflow's environment
    variables); None where MLflow's own default applies."""
    tracking = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or None
    registry = registry_uri or os.environ.get("MLFLOW_REGISTRY_URI") or None
    return tracking, registry


def _identity_without_server(
    ref: ModelRef, tracking: str | None, registry: str | None
) -> dict[str, str] | None:
    """The cache identity of a reference that is immutable as written, when its store is known
    without MLflow; else None (MLflow must resolve it)."""
    if registry is None and tracking is not None and not _is_databricks(tracking):
        registry = tracking  # MLflow's default registry, outside Databricks
    tracking_store = store_id(tracking) if tracking else None
    registry_store = store_id(registry) if registry else None
    if isinstance(ref, RegistryRef) and ref.moving:
        return None
    try:
        return identity(ref, tracking=tracking_store, registry=registry_store)
    except ValueError:
        return None


def _is_databricks(uri: str) -> bool:
    return uri.lower().startswith(("databricks", "uc:"))


def _resolve_and_download(
    ref: ModelRef,
    tracking: str | None,
    registry: str | None,
    on_progress: Callable[[str], None] | None,
) -> Source:
    from envbuild.sources import mlflow as mlflow_source
    from envbuild.sources import model_cache

    subject = shown(ref.text)
    session = mlflow_source.open_session(
        subject, tracking_uri=tracking, registry_uri=registry, on_progress=on_progress
    )
    if on_progress is not None:
        on_progress(f"resolving {subject}")
    resolved = session.resolve(ref)
    entry = model_cache.lookup(resolved.identity)
    if entry is not None:
        return _source(ref, entry, downloaded=False)
    session.check_mlmodel(resolved)  # before taking a lock or a temporary folder

    def fill(tmp: Path) -> Path:
        if on_progress is not None:
            on_progress(f"downloading {resolved.reference.get('resolved_uri') or subject}")
        return session.download(resolved, tmp)

    def waiting() -> None:
        if on_progress is not None:
            on_progress(f"waiting for another download of {subject}")

    entry, built = model_cache.store(resolved.identity, resolved.reference, fill, on_wait=waiting)
    return _source(ref, entry, downloaded=built)


def _source(ref: ModelRef, entry: Entry, *, downloaded: bool) -> Source:
    reference: Mapping[str, Any] = entry.reference
    alias = ref.alias if isinstance(ref, RegistryRef) else None
    stage = ref.stage if isinstance(ref, RegistryRef) else None

    def text(key: str) -> str | None:
        value = reference.get(key)
        return str(value) if value not in (None, "") else None

    provenance = Provenance(
        uri=shown(ref.text),
        kind=_KINDS[type(ref)],
        resolved_uri=text("resolved_uri"),
        registered_name=text("registered_name"),
        version=text("version"),
        alias=alias,
        stage=stage,
        moving=isinstance(ref, RegistryRef) and ref.moving,
        run_id=text("run_id"),
        artifact_path=text("artifact_path"),
        model_id=text("model_id"),
        tracking_uri=text("tracking_uri"),
        registry_uri=text("registry_uri"),
    )
    return Source(
        path=entry.folder,
        provenance=provenance,
        read_only=True,
        downloaded=downloaded,
        cache_entry=entry.path,
    )
