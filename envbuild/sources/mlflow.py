"""The MLflow source: ``runs:/``, ``models:/`` and artifact-store URIs, through MLflow's own client.

The only module of envbuild's core that imports MLflow, and only when MODEL is such a URI:
``import mlflow`` costs seconds and MLflow is an optional extra (``envbuild[mlflow]``).
Authentication is MLflow's own (``MLFLOW_TRACKING_TOKEN``, ``MLFLOW_TRACKING_USERNAME`` /
``_PASSWORD``, cloud credentials); envbuild never reads, prints or stores it.

Why the care around each call (:meth:`Session.calls`):

* MLflow's HTTP client retries a refused connection for about four minutes by default (7 retries,
  backoff factor 2). For the call only, and unless the user set them, envbuild lowers
  ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``/``_BACKOFF_FACTOR``/``_BACKOFF_JITTER``/``_TIMEOUT`` so that
  an unreachable server fails in about two seconds (a silent host: the timeout, three times).
* Some of MLflow 3's own code paths ignore the ``tracking_uri``/``registry_uri`` they are given and
  use the process-wide URIs (a ``runs:/`` URI whose artifacts live in a logged model; a
  ``models:/`` download resolving its version). The process-wide URIs are pinned to the ones
  envbuild resolved for the duration of the call, then restored.
* MLflow's progress bars, log lines and warnings are switched off for the call: envbuild's CLI is
  the only place that prints, and an MLflow message could show a URL with credentials.
* These settings are process-wide state, changed for the length of one call and restored: the
  calls are not meant to run from several threads at once.
* Every failure becomes one envbuild error with its exit code (no traceback): unknown run, model,
  version, alias or logged model, and an artifact path without MLmodel, exit 2, naming what the
  server does have; an unreachable server, exit 3, naming its host (without credentials).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from envbuild.errors import EnvbuildError, MissingExtra, ModelSourceError, SourceUnreachable
from envbuild.redact import redact
from envbuild.sources.refs import (
    ArtifactRef,
    LoggedModelRef,
    ModelRef,
    RegistryRef,
    RunRef,
    identity,
    shown,
    store_id,
)

MLMODEL = "MLmodel"
INSTALL_HINT = "pip install 'envbuild[mlflow]'"

# Set for each call unless the user set them: fail in seconds, not minutes, when unreachable;
# send no usage telemetry on the user's behalf.
CALL_DEFAULTS = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
# Set for each call whatever the user set: envbuild draws its own progress, MLflow draws none.
FORCED = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}

# The package a missing module comes from, for the hint.
_PACKAGES = {
    "boto3": "boto3",
    "botocore": "boto3",
    "google": "google-cloud-storage",
    "azure": "azure-storage-blob azure-identity",
    "pyarrow": "pyarrow",
    "databricks": "databricks-sdk",
}
_NOT_FOUND = {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"}
_DENIED = {"UNAUTHENTICATED", "PERMISSION_DENIED", "CUSTOMER_UNAUTHORIZED", "UNAUTHORIZED"}
_LISTED = 20  # at most this many names, versions or aliases in a message


def import_mlflow(subject: str) -> ModuleType:
    """``mlflow``, or the one-line error saying which extra to install (exit 2)."""
    # MLflow decides at import whether to send usage telemetry: envbuild is a tool, not the
    # user's MLflow session, so it imports MLflow with telemetry off (unless the user chose),
    # and restores the variable so that the model's processes see the user's own setting.
    saved = os.environ.get("MLFLOW_DISABLE_TELEMETRY")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        import mlflow
        import mlflow.artifacts
    except ImportError as exc:
        raise MissingExtra(
            f"{subject}: reading a model from MLflow needs MLflow, which is not installed "
            f"({type(exc).__name__}: {exc}): install envbuild[mlflow]",
            hint=INSTALL_HINT,
        ) from None
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_DISABLE_TELEMETRY", None)
    return mlflow


@dataclass(frozen=True)
class Resolved:
    """A MODEL URI resolved to an immutable reference: what keys the cache, what downloads it,
    and the facts of the reference (for provenance; never a credential)."""

    identity: Mapping[str, str]
    download_uri: str
    reference: Mapping[str, str | None]
    check_listing: bool = True  # list the path for an MLmodel before downloading it
    needs_server: bool = True  # False: an artifact store of its own (s3://bucket/...)


class Session:
    """MLflow's client for one MODEL, with the tracking and registry URIs fixed for every call.

    ``tracking_uri``/``registry_uri`` are the resolved URIs (they may hold credentials: only
    their :func:`store_id` is ever shown or stored).
    """

    def __init__(
        self, subject: str, *, tracking_uri: str | None = None, registry_uri: str | None = None
    ) -> None:
        self.subject = subject  # MODEL as it may be shown
        self.mlflow = import_mlflow(subject)
        self._tracking_given = tracking_uri
        self._registry_given = registry_uri
        self._tracking: str | None = None
        self._registry: str | None = None

    # -- the URIs ------------------------------------------------------------------------------

    @property
    def tracking_uri(self) -> str:
        if self._tracking is None:
            self._tracking = self._tracking_given or self._default_tracking_uri()
        return self._tracking

    @property
    def registry_uri(self) -> str:
        if self._registry is None:
            given = self._registry_given
            if given is None:
                from mlflow.tracking._model_registry import utils as registry_utils

                default = getattr(registry_utils, "_resolve_registry_uri", None)
                given = default(None, self.tracking_uri) if default else None
            self._registry = given or self.tracking_uri
        return self._registry

    @property
    def tracking_store(self) -> str:
        return store_id(self.tracking_uri)

    @property
    def registry_store(self) -> str:
        return store_id(self.registry_uri)

    def _default_tracking_uri(self) -> str:
        """MLflow's default store, but only when it exists: a default ``sqlite:///mlflow.db`` that
        is not there would be created in the current folder, then found empty."""
        uri = str(self.mlflow.get_tracking_uri())
        local = uri.startswith(("sqlite:///", "file:")) or "://" not in uri
        if local and not _local_store_exists(uri):
            raise ModelSourceError(
                f"{self.subject}: no MLflow tracking server is configured",
                hint="pass --tracking-uri URI or set MLFLOW_TRACKING_URI",
            )
        return uri

    # -- calling MLflow ------------------------------------------------------------------------

    def client(self) -> Any:
        return self.mlflow.MlflowClient(
            tracking_uri=self.tracking_uri, registry_uri=self.registry_uri
        )

    def _uris(self, server: bool) -> tuple[str | None, str | None]:
        """The URIs a call runs with; without ``server`` (an ``s3://`` download) none need be
        configured."""
        if server:
            return self.tracking_uri, self.registry_uri
        try:
            return self.tracking_uri, self.registry_uri
        except ModelSourceError:
            return None, None

    @contextmanager
    def calls(self, store: str | None = None, *, server: bool = True) -> Iterator[None]:
        """MLflow calls with envbuild's settings; their failures become envbuild errors."""
        tracking, registry = self._uris(server)
        try:
            with _quiet(), _env(tracking, registry), _process_uris(tracking, registry):
                yield
        except EnvbuildError:
            raise
        except Exception as exc:
            raise translate(exc, self.subject, store or self.tracking_store) from None

    # -- resolving -----------------------------------------------------------------------------

    def resolve(self, ref: ModelRef) -> Resolved:
        """Ask the server what ``ref`` is now: the immutable reference it names."""
        if isinstance(ref, RunRef):
            return self._resolve_run(ref)
        if isinstance(ref, RegistryRef):
            return self._resolve_version(ref)
        if isinstance(ref, LoggedModelRef):
            return self._resolve_logged_model(ref)
        if isinstance(ref, ArtifactRef):
            return self._resolve_artifacts(ref)
        raise TypeError(f"not an MLflow reference: {ref!r}")

    def _resolve_run(self, ref: RunRef) -> Resolved:
        with self.calls():
            client = self.client()
            try:
                run = client.get_run(ref.run_id)
            except Exception as exc:
                if _code(exc) not in _NOT_FOUND:
                    raise
                raise ModelSourceError(
                    f"{self.subject}: no run {ref.run_id} on {self.tracking_store}",
                    hint="check the run id (mlflow runs list --experiment-id ID)",
                ) from None
        resolved_uri = f"runs:/{ref.run_id}/{ref.artifact_path}"
        return Resolved(
            identity=identity(ref, tracking=self.tracking_store),
            download_uri=resolved_uri,
            reference={
                "resolved_uri": resolved_uri,
                "run_id": ref.run_id,
                "artifact_path": ref.artifact_path,
                "tracking_uri": self.tracking_store,
                "experiment_id": str(run.info.experiment_id),
            },
        )

    def _resolve_version(self, ref: RegistryRef) -> Resolved:
        store = self.registry_store
        with self.calls(store):
            client = self.client()
            version = ref.version or self._moving_version(client, ref)
            try:
                mv = client.get_model_version(ref.name, version)
            except Exception as exc:
                if _code(exc) not in _NOT_FOUND:
                    raise
                raise self._unknown_version(client, ref, version) from None
        status = str(getattr(mv, "status", "READY") or "READY")
        if status != "READY":
            raise ModelSourceError(
                f"{self.subject}: version {version} of registered model {ref.name!r} is "
                f"{status}, not READY",
                hint="wait for the registration to finish, or name another version",
            )
        base = f"models:/{ref.name}/{version}"
        full = f"{base}/{ref.sub_path}" if ref.sub_path else base
        reference: dict[str, str | None] = {
            "resolved_uri": full,
            "registered_name": ref.name,
            "version": str(version),
            "run_id": getattr(mv, "run_id", None) or None,
            "model_id": getattr(mv, "model_id", None) or _model_id(getattr(mv, "source", None)),
            "artifact_path": ref.sub_path or None,
            "tracking_uri": self.tracking_store,
            "registry_uri": store if store != self.tracking_store else None,
        }
        return Resolved(
            identity=identity(ref, registry=store, version=str(version)),
            download_uri=full,
            reference=reference,
            check_listing=bool(ref.sub_path),
        )

    def _moving_version(self, client: Any, ref: RegistryRef) -> str:
        """The version an alias, ``latest`` or a stage names at this moment."""
        model = self._registered_model(client, ref.name)
        if ref.alias is not None:
            aliases = _aliases(model)
            if ref.alias in aliases:
                return aliases[ref.alias]
            there = ", ".join(f"{a} -> {v}" for a, v in sorted(aliases.items())[:_LISTED])
            raise ModelSourceError(
                f"{self.subject}: registered model {ref.name!r} has no alias {ref.alias!r} "
                + (f"(aliases: {there})" if there else "(it has no aliases)"),
                hint=f"set it with MlflowClient().set_registered_model_alias({ref.name!r}, "
                f"{ref.alias!r}, VERSION), or name a version: models:/{ref.name}/VERSION",
            )
        stages = None if ref.latest else [ref.stage]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # stages are deprecated; `latest` is not
            latest = client.get_latest_versions(ref.name, stages)
        if latest:
            return str(max(int(v.version) for v in latest))
        if ref.latest:
            raise ModelSourceError(f"{self.subject}: registered model {ref.name!r} has no versions")
        versions = self._versions(client, ref.name)
        in_use = sorted({str(getattr(v, "current_stage", "None")) for v in versions})
        raise ModelSourceError(
            f"{self.subject}: registered model {ref.name!r} has no version in stage "
            f"{ref.stage!r} (stages in use: {', '.join(in_use) or 'none'})",
            hint=f"models:/{ref.name}/latest, models:/{ref.name}@ALIAS or models:/{ref.name}/N",
        )

    def _registered_model(self, client: Any, name: str) -> Any:
        try:
            return client.get_registered_model(name)
        except Exception as exc:
            if _code(exc) not in _NOT_FOUND:
                raise
            raise self._unknown_model(client, name) from None

    def _unknown_model(self, client: Any, name: str) -> ModelSourceError:
        try:
            names = sorted(m.name for m in client.search_registered_models(max_results=_LISTED))
        except Exception:
            names = []
        there = f" (registered models: {', '.join(names)})" if names else ""
        return ModelSourceError(
            f"{self.subject}: no registered model {name!r} on {self.registry_store}{there}",
            hint="check the name, and --registry-uri / MLFLOW_REGISTRY_URI",
        )

    def _unknown_version(self, client: Any, ref: RegistryRef, version: str) -> ModelSourceError:
        self._registered_model(client, ref.name)  # an unknown model says so first
        numbers = sorted(int(v.version) for v in self._versions(client, ref.name))
        shown_versions = ", ".join(map(str, numbers[-_LISTED:])) or "none"
        return ModelSourceError(
            f"{self.subject}: registered model {ref.name!r} has no version {version} "
            f"(versions: {shown_versions})",
            hint=f"models:/{ref.name}/latest names the newest",
        )

    def _versions(self, client: Any, name: str) -> list[Any]:
        quoted = name.replace("\\", "\\\\").replace("'", "\\'")
        try:
            return list(client.search_model_versions(f"name='{quoted}'"))
        except Exception:
            return []

    def _resolve_logged_model(self, ref: LoggedModelRef) -> Resolved:
        if not hasattr(self.mlflow.MlflowClient, "get_logged_model"):
            raise ModelSourceError(
                f"{self.subject}: models:/MODEL_ID names an MLflow 3 logged model; the "
                f"installed MLflow {self.mlflow.__version__} has none",
                hint=f"for a registered model write models:/{ref.model_id}/VERSION or "
                f"models:/{ref.model_id}@ALIAS",
            )
        with self.calls():
            client = self.client()
            try:
                model = client.get_logged_model(ref.model_id)
            except Exception as exc:
                if _code(exc) not in _NOT_FOUND:
                    raise
                hint = None
                if not ref.model_id.startswith("m-"):
                    hint = (
                        f"for a registered model write models:/{ref.model_id}/VERSION, "
                        f"models:/{ref.model_id}@ALIAS or models:/{ref.model_id}/latest"
                    )
                raise ModelSourceError(
                    f"{self.subject}: no logged model {ref.model_id} on {self.tracking_store}",
                    hint=hint,
                ) from None
        resolved_uri = f"models:/{ref.model_id}"
        return Resolved(
            identity=identity(ref, tracking=self.tracking_store),
            download_uri=resolved_uri,
            reference={
                "resolved_uri": resolved_uri,
                "model_id": ref.model_id,
                "run_id": getattr(model, "source_run_id", None) or None,
                "tracking_uri": self.tracking_store,
            },
            check_listing=False,
        )

    def _resolve_artifacts(self, ref: ArtifactRef) -> Resolved:
        tracking = self.tracking_store if ref.needs_tracking else None
        return Resolved(
            identity=identity(ref, tracking=tracking),
            download_uri=ref.text,
            reference={"resolved_uri": shown(ref.text), "tracking_uri": tracking},
            needs_server=ref.needs_tracking,
        )

    # -- downloading ---------------------------------------------------------------------------

    def check_mlmodel(self, resolved: Resolved) -> None:
        """Refuse, before downloading anything, a path that holds no MLmodel (it could be a run's
        whole artifact tree)."""
        if not resolved.check_listing:
            return
        store = resolved.reference.get("registry_uri") or resolved.reference.get("tracking_uri")
        server = resolved.needs_server
        with self.calls(store or _store_of(resolved.download_uri), server=server):
            entries = self.mlflow.artifacts.list_artifacts(
                artifact_uri=resolved.download_uri, tracking_uri=self._uris(server)[0]
            )
            names = {p.path.rstrip("/").rsplit("/", 1)[-1] for p in entries if not p.is_dir}
            if MLMODEL in names:
                return
            raise self._no_mlmodel(resolved, entries)

    def _no_mlmodel(self, resolved: Resolved, entries: list[Any]) -> ModelSourceError:
        hint = None
        run_id = resolved.reference.get("run_id")
        if entries:
            names = sorted(p.path.rstrip("/").rsplit("/", 1)[-1] for p in entries)
            hint = f"it holds: {', '.join(names[:_LISTED])}"
        elif run_id and resolved.identity.get("kind") == "run":
            there = self._run_contents(run_id, resolved.reference.get("experiment_id"))
            if there:
                hint = f"the run has: {', '.join(there)}"
        where = "there is nothing at this path" if not entries else "no MLmodel file at this path"
        return ModelSourceError(f"{self.subject}: {where}", hint=hint)

    def _run_contents(self, run_id: str, experiment_id: str | None) -> list[str]:
        """Top-level artifacts and logged models of a run, for the no-MLmodel hint."""
        found: list[str] = []
        try:
            for entry in self.mlflow.artifacts.list_artifacts(
                run_id=run_id, tracking_uri=self.tracking_uri
            ):
                found.append(entry.path + ("/" if entry.is_dir else ""))
        except Exception:
            pass
        if experiment_id and hasattr(self.mlflow.MlflowClient, "search_logged_models"):
            try:
                for model in self.client().search_logged_models(
                    experiment_ids=[experiment_id],
                    filter_string=f"source_run_id = '{run_id}'",
                ):
                    found.append(f"{model.name} (logged model: runs:/{run_id}/{model.name})")
            except Exception:
                pass
        return sorted(set(found))[:_LISTED]

    def download(self, resolved: Resolved, into: Path) -> Path:
        """Download the reference into ``into/model`` (``into`` is the cache's temporary folder:
        nothing is published unless this returns). Call :meth:`check_mlmodel` first."""
        staging = into / "download"
        staging.mkdir()
        store = resolved.reference.get("registry_uri") or resolved.reference.get("tracking_uri")
        server = resolved.needs_server
        tracking, registry = self._uris(server)
        with self.calls(store or _store_of(resolved.download_uri), server=server):
            local = Path(
                self.mlflow.artifacts.download_artifacts(
                    artifact_uri=resolved.download_uri,
                    dst_path=str(staging),
                    tracking_uri=tracking,
                    registry_uri=registry,
                )
            )
        if not local.is_dir() or not (local / MLMODEL).is_file():
            raise ModelSourceError(f"{self.subject}: no MLmodel file at this path")
        target = into / "model"
        os.replace(local, target)
        shutil.rmtree(staging, ignore_errors=True)
        return target


def _local_store_exists(uri: str) -> bool:
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///") :].split("?", 1)[0]).is_file()
    path = uri[len("file:") :].lstrip("/") if uri.startswith("file:") else uri
    path = "/" + path if uri.startswith("file:") else path
    return Path(path).is_dir() and any(Path(path).iterdir())


def _aliases(model: Any) -> dict[str, str]:
    raw = getattr(model, "aliases", None) or {}
    if isinstance(raw, Mapping):
        return {str(k): str(v) for k, v in raw.items()}
    return {str(a.alias): str(a.version) for a in raw}  # older entity: a list of alias objects


def _model_id(source: str | None) -> str | None:
    """``models:/m-...`` (MLflow 3 registers a logged model by that source) -> its id."""
    if source and source.startswith("models:/m-") and "/" not in source[len("models:/") :]:
        return source[len("models:/") :]
    return None


def _store_of(uri: str) -> str:
    """``s3://bucket/a/b`` -> ``s3://bucket``: the store an artifact URI lives in, as shown."""
    parts = urlsplit(store_id(uri))
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else f"{parts.scheme}:"


def _code(exc: BaseException) -> str | None:
    code = getattr(exc, "error_code", None)
    return str(code) if code is not None else None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _first_line(text: str) -> str:
    line = next((part.strip() for part in str(text).splitlines() if part.strip()), "")
    return redact(line)[:300]


_NETWORK_NAMES = {
    "ConnectionError",
    "ConnectTimeout",
    "ReadTimeout",
    "Timeout",
    "MaxRetryError",
    "NewConnectionError",
    "NameResolutionError",
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ReadTimeoutError",
}


def _network_reason(exc: BaseException) -> str | None:
    """Why the server could not be reached, if that is what ``exc`` says; else None."""
    texts = []
    for item in _chain(exc):
        if isinstance(item, ConnectionRefusedError):
            return "connection refused"
        text = str(item)
        network = isinstance(item, TimeoutError | ConnectionError)
        if network or type(item).__name__ in _NETWORK_NAMES or "Max retries exceeded" in text:
            texts.append(text)
    if not texts:
        return None
    joined = " ".join(texts)
    for pattern, reason in (
        (r"Connection refused", "connection refused"),
        (r"timed out|Timeout", "timed out"),
        (
            r"Name or service not known|nodename nor servname|getaddrinfo|NameResolution",
            "unknown host",
        ),
        (r"Network is unreachable", "network unreachable"),
        (r"too many \d+ error responses", "the server keeps answering with errors"),
    ):
        if re.search(pattern, joined):
            return reason
    return "connection failed"


def translate(exc: BaseException, subject: str, store: str) -> EnvbuildError:
    """Any failure inside an MLflow call -> one envbuild error (message redacted, one line)."""
    for item in _chain(exc):
        if isinstance(item, ModuleNotFoundError) and item.name:
            top = item.name.split(".")[0]
            package = _PACKAGES.get(top, top)
            return MissingExtra(
                f"{subject}: reading it needs the Python package {package}, which is not installed",
                hint=f"pip install {package}",
            )
    reason = _network_reason(exc)
    if reason is not None:
        return SourceUnreachable(
            f"{subject}: cannot reach {store}: {reason}",
            hint="check that the server is up and the URI is right "
            "(--tracking-uri / MLFLOW_TRACKING_URI, --registry-uri / MLFLOW_REGISTRY_URI)",
        )
    code = _code(exc)
    message = _first_line(getattr(exc, "message", None) or str(exc))
    if code in _DENIED or re.search(r"\b(401|403)\b", message):
        return ModelSourceError(
            f"{subject}: {store} refused access ({code or 'HTTP 401/403'})",
            hint="MLflow's own credentials apply: MLFLOW_TRACKING_TOKEN, or "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD",
        )
    if re.search(r"too many 5\d\d error responses", message):
        return SourceUnreachable(f"{subject}: {store} keeps answering with server errors")
    kind = "" if code else f"{type(exc).__name__}: "
    return ModelSourceError(f"{subject}: {kind}{message}")


@contextmanager
def _env(tracking: str | None, registry: str | None) -> Iterator[None]:
    """MLflow's settings for one call; the environment is restored after it."""
    values = {k: v for k, v in CALL_DEFAULTS.items() if k not in os.environ}
    values.update(FORCED)
    if tracking is not None and registry is not None:
        values["MLFLOW_TRACKING_URI"] = tracking
        values["MLFLOW_REGISTRY_URI"] = registry
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def _process_uris(tracking: str | None, registry: str | None) -> Iterator[None]:
    """Pin MLflow's process-wide URIs (which beat the environment variables) for one call."""
    if tracking is None or registry is None:
        yield
        return
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    saved = (
        getattr(tracking_utils, "_tracking_uri", None),
        getattr(registry_utils, "_registry_uri", None),
    )
    setattr(tracking_utils, "_tracking_uri", tracking)  # noqa: B010 - private, typed None
    setattr(registry_utils, "_registry_uri", registry)  # noqa: B010
    try:
        yield
    finally:
        setattr(tracking_utils, "_tracking_uri", saved[0])  # noqa: B010
        setattr(registry_utils, "_registry_uri", saved[1])  # noqa: B010


@contextmanager
def _quiet() -> Iterator[None]:
    """No MLflow log line or warning reaches the terminal during a call."""
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def open_session(
    subject: str,
    *,
    tracking_uri: str | None = None,
    registry_uri: str | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> Session:
    """A :class:`Session` for MODEL (imports MLflow: call only for a URI)."""
    if on_progress is not None:
        on_progress(f"loading MLflow to resolve {subject}")
    return Session(subject, tracking_uri=tracking_uri, registry_uri=registry_uri)
