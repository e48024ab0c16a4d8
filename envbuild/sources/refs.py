"""What the user typed as MODEL, parsed into a reference — without MLflow, without the network.

Parsing is pure so that a plain folder never imports MLflow (seconds of start-up), and so that a
reference that is already immutable (``runs:/ID/PATH``, ``models:/NAME/3``, ``models:/m-ID``, an
artifact-store URI) can be looked up in the model cache before anything else is loaded: a second
use of such a reference needs neither MLflow's import nor the server.

The grammar follows MLflow's own (``mlflow.store.artifact.utils.models._parse_model_uri`` and
``ModelsArtifactRepository.split_models_uri``), so a URI means here what it means to
``mlflow.pyfunc.load_model``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from envbuild.errors import ModelSourceError
from envbuild.redact import redact_url

# A scheme of two or more characters followed by ":/" (so ``C:\model`` stays a path).
_URI = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+):/")
LATEST = "latest"
_FORMS = "models:/NAME/VERSION, models:/NAME@ALIAS, models:/NAME/latest or models:/MODEL_ID"


def is_uri(text: str) -> bool:
    """True when MODEL is a URI (``runs:/``, ``models:/``, ``s3://``, ``file://`` ...)."""
    return _URI.match(text) is not None


def shown(text: str) -> str:
    """MODEL as it may be printed: credentials in it replaced by ``***``."""
    return redact_url(text)


@dataclass(frozen=True)
class FolderRef:
    """A model folder or MLmodel file on this machine (a plain path or a ``file:`` URI)."""

    text: str
    path: Path


@dataclass(frozen=True)
class RunRef:
    """``runs:/RUN_ID/PATH``: an artifact path of a run (immutable)."""

    text: str
    run_id: str
    artifact_path: str


@dataclass(frozen=True)
class RegistryRef:
    """``models:/NAME/VERSION``, ``models:/NAME@ALIAS``, ``models:/NAME/latest`` or
    ``models:/NAME/STAGE``, optionally followed by ``/PATH`` inside the version's artifacts.

    Only a version is immutable; an alias, ``latest`` and a stage are resolved to a version by
    the registry each time (they move).
    """

    text: str
    name: str
    version: str | None = None
    alias: str | None = None
    stage: str | None = None  # a (deprecated) registry stage: Production, Staging, ...
    latest: bool = False
    sub_path: str = ""

    @property
    def moving(self) -> bool:
        return self.version is None


@dataclass(frozen=True)
class LoggedModelRef:
    """``models:/MODEL_ID``: an MLflow 3 logged model, by its id (immutable)."""

    text: str
    model_id: str


@dataclass(frozen=True)
class ArtifactRef:
    """Any other URI MLflow's artifact repositories read: ``mlflow-artifacts:/``, ``s3://``,
    ``gs://``, ``wasbs://``, ``abfss://``, ``hdfs://``, ``dbfs:/``, ``http(s)://`` ...

    Taken to be immutable like the run artifact locations these URIs normally name: the same URI
    is downloaded once. Without a host (``mlflow-artifacts:/0/...``, ``dbfs:/...``) it is
    relative to the tracking server, which is then part of its identity.
    """

    text: str
    scheme: str

    @property
    def needs_tracking(self) -> bool:
        return not urlsplit(self.text).netloc


ModelRef = FolderRef | RunRef | RegistryRef | LoggedModelRef | ArtifactRef


def parse(text: str) -> ModelRef:
    """MODEL -> a reference; a malformed URI is a one-line :class:`ModelSourceError`."""
    match = _URI.match(text)
    if match is None:
        return FolderRef(text=text, path=Path(text).expanduser())
    scheme = match["scheme"].lower()
    if scheme == "file":
        return _parse_file(text)
    if scheme == "runs":
        return _parse_runs(text)
    if scheme == "models":
        return _parse_models(text)
    return ArtifactRef(text=text, scheme=scheme)


def _bad(text: str, what: str, hint: str | None = None) -> ModelSourceError:
    return ModelSourceError(f"{shown(text)}: {what}", hint=hint)


def _parse_file(text: str) -> FolderRef:
    from urllib.request import url2pathname  # 11 ms of imports (http, ssl, email): file: only

    parts = urlsplit(text)
    if parts.netloc not in ("", "localhost"):
        raise _bad(text, f"a file: URI on another host ({parts.netloc}) cannot be read")
    return FolderRef(text=text, path=Path(url2pathname(unquote(parts.path))))


def _no_netloc(text: str, scheme: str) -> str:
    parts = urlsplit(text)
    if parts.netloc:
        raise _bad(
            text,
            f"{scheme}:// with a profile or host is not supported; write {scheme}:/...",
            hint="name the tracking server with --tracking-uri (or MLFLOW_TRACKING_URI) instead",
        )
    return parts.path


def _parse_runs(text: str) -> RunRef:
    path = _no_netloc(text, "runs")
    run_id, _, artifact_path = path.lstrip("/").partition("/")
    artifact_path = artifact_path.strip("/")
    if not run_id or not artifact_path:
        raise _bad(
            text,
            "expected runs:/RUN_ID/PATH (the artifact path the model was logged to)",
            hint="for example runs:/<run id>/model",
        )
    return RunRef(text=text, run_id=run_id, artifact_path=artifact_path)


def _parse_models(text: str) -> RegistryRef | LoggedModelRef:
    path = _no_netloc(text, "models").rstrip("/")
    parts = path.lstrip("/").split("/") if path.strip("/") else []
    if not parts or not parts[0].strip():
        raise _bad(text, f"expected {_FORMS}")
    head = parts[0]
    if "@" in head:  # models:/NAME@ALIAS[/PATH]
        name, _, alias = head.rpartition("@")
        if not name.strip() or not alias.strip():
            raise _bad(text, f"expected {_FORMS}")
        return RegistryRef(text=text, name=name, alias=alias, sub_path="/".join(parts[1:]))
    if len(parts) == 1:  # models:/MODEL_ID
        return LoggedModelRef(text=text, model_id=head)
    name, suffix, sub_path = head, parts[1], "/".join(parts[2:])
    if not suffix.strip():
        raise _bad(text, f"expected {_FORMS}")
    if suffix.isdigit():
        return RegistryRef(text=text, name=name, version=str(int(suffix)), sub_path=sub_path)
    if suffix.lower() == LATEST:
        return RegistryRef(text=text, name=name, latest=True, sub_path=sub_path)
    return RegistryRef(text=text, name=name, stage=suffix, sub_path=sub_path)


def store_id(uri: str) -> str:
    """A tracking/registry/store URI reduced to what identifies the store, never a secret.

    ``https://user:token@host:5000/prefix/?x=1`` -> ``https://host:5000/prefix``; a local store
    (``sqlite:///mlflow.db``, ``file:./mlruns``, a path) gets an absolute path, so that the same
    relative URI used from two folders names two stores. The result is what envbuild shows as
    the tracking server and what keys the model cache.
    """
    match = _URI.match(uri) or re.match(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+):", uri)
    if match is None or len(match["scheme"]) < 2:  # a plain path, or C:\...
        return Path(os.path.abspath(os.path.expanduser(uri))).as_uri()
    scheme = match["scheme"].lower()
    if scheme == "file":
        from urllib.request import url2pathname

        return Path(os.path.abspath(url2pathname(unquote(urlsplit(uri).path)))).as_uri()
    if scheme == "sqlite":
        rest = uri[len("sqlite:") :].split("?", 1)[0]
        if rest.startswith("///"):
            db = rest[3:]
            db = db if db.startswith("/") else os.path.abspath(db)
            return f"sqlite:///{db}"
        return "sqlite:" + rest
    parts = urlsplit(uri)
    netloc = parts.netloc.rpartition("@")[2]  # no user, password or token
    return urlunsplit((scheme, netloc.lower(), parts.path.rstrip("/"), "", ""))


def without_password(uri: str) -> str:
    """The URI with any password removed but the user kept (``wasbs://container@account``
    names a container there): what identifies an artifact location in the cache key."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, f"{user}@{host}", parts.path, parts.query, parts.fragment))


def identity(
    ref: ModelRef,
    *,
    tracking: str | None = None,
    registry: str | None = None,
    version: str | None = None,
) -> dict[str, str]:
    """What makes a reference immutable, and so what keys the model cache: the run, registered
    version or logged model *and the store that holds it* (two servers each have a run ``abc``).

    ``tracking``/``registry`` are :func:`store_id` values; ``version`` is the version an alias,
    ``latest`` or a stage resolved to. Raises ValueError when a needed part is missing.
    """

    def need(value: str | None, what: str) -> str:
        if not value:
            raise ValueError(f"{what} is needed for the identity of {shown(ref.text)}")
        return value

    if isinstance(ref, RunRef):
        return {
            "kind": "run",
            "tracking": need(tracking, "the tracking store"),
            "run_id": ref.run_id,
            "path": ref.artifact_path,
        }
    if isinstance(ref, RegistryRef):
        return {
            "kind": "model-version",
            "registry": need(registry, "the registry store"),
            "name": ref.name,
            "version": need(version or ref.version, "the version"),
            "path": ref.sub_path,
        }
    if isinstance(ref, LoggedModelRef):
        return {
            "kind": "logged-model",
            "tracking": need(tracking, "the tracking store"),
            "model_id": ref.model_id,
        }
    if isinstance(ref, ArtifactRef):
        return {
            "kind": "artifacts",
            "uri": without_password(ref.text),
            "tracking": need(tracking, "the tracking store") if ref.needs_tracking else "",
        }
    raise ValueError(f"a local folder has no cache identity: {ref.text}")
