"""The values of the registry: what is installed in an environment (:class:`Installed`) and one
registered version (:class:`SharedEnvironment`), with their JSON forms.

Both are read from and written to the small metadata file of a version
(``environment.json``); reading checks every field it uses, so a hand-edited or truncated file
is one error naming it rather than a traceback later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from envbuild.errors import RegistryError

FORMAT = 1  # bump when the metadata's shape changes incompatibly
PREFIX, IMAGE = "prefix", "image"  # where a shared environment's interpreter runs


@dataclass(frozen=True)
class Distribution:
    """One installed distribution: its name as installed, version and ``Requires-Dist``."""

    name: str
    version: str
    requires: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return canonicalize_name(self.name)


@dataclass(frozen=True)
class Installed:
    """What an environment holds, as its own interpreter reports it (runner ``info`` plus the
    ``Requires-Dist`` probe): nothing here was imported into envbuild's process."""

    python_version: str
    implementation: str
    executable: str
    platform: str
    markers: Mapping[str, str]
    distributions: Mapping[str, Distribution]  # canonical name -> distribution

    @property
    def python_minor(self) -> str:
        return ".".join(self.python_version.split(".")[:2])

    def version_of(self, name: str) -> str | None:
        dist = self.distributions.get(canonicalize_name(name))
        return dist.version if dist else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "python_version": self.python_version,
            "implementation": self.implementation,
            "executable": self.executable,
            "platform": self.platform,
            "markers": dict(self.markers),
            "distributions": [
                {"name": d.name, "version": d.version, "requires": list(d.requires)}
                for _, d in sorted(self.distributions.items())
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: Path) -> Installed:
        try:
            dists = {}
            for item in data["distributions"]:
                dist = Distribution(
                    str(item["name"]), str(item["version"]), tuple(map(str, item["requires"]))
                )
                dists[dist.key] = dist
            return cls(
                python_version=str(data["python_version"]),
                implementation=str(data["implementation"]),
                executable=str(data["executable"]),
                platform=str(data["platform"]),
                markers={str(k): str(v) for k, v in dict(data["markers"]).items()},
                distributions=dists,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RegistryError(
                f"broken registry file: 'installed' is incomplete ({type(exc).__name__}: {exc})",
                path=where,
            ) from None

    def difference(self, other: Installed) -> list[str]:
        """What changed from ``self`` to ``other`` (``+name==v``, ``-name==v``, ``name a -> b``)."""
        out = []
        for key in sorted(set(self.distributions) | set(other.distributions)):
            before, after = self.distributions.get(key), other.distributions.get(key)
            if before is None and after is not None:
                out.append(f"+{after.name}=={after.version}")
            elif after is None and before is not None:
                out.append(f"-{before.name}=={before.version}")
            elif before is not None and after is not None and before.version != after.version:
                out.append(f"{after.name} {before.version} -> {after.version}")
        if self.python_version != other.python_version:
            out.insert(0, f"python {self.python_version} -> {other.python_version}")
        return out


@dataclass(frozen=True)
class SharedEnvironment:
    """One immutable version of a named shared environment.

    ``runs_in`` says how the model runs there: ``prefix`` (an interpreter on this machine: a
    virtualenv envbuild built under the registry, or a registered prefix) or ``image`` (a
    Docker image, pinned by its id). ``managed`` environments were made by envbuild and are
    removed with their version; registered ones are never changed, only forgotten.
    """

    name: str
    version: str
    runs_in: str  # PREFIX or IMAGE
    managed: bool
    created: str  # RFC 3339 UTC
    envbuild_version: str
    source: Mapping[str, Any]  # how it was made (from models, requirements, a lock, a prefix...)
    installed: Installed
    prefix: str | None = None  # PREFIX: the environment's folder
    python: str | None = None  # its interpreter (inside the image for IMAGE)
    image: str | None = None  # IMAGE: the reference it was registered or built as
    image_id: str | None = None  # IMAGE: the image it is pinned to
    lock: str | None = None  # the lock it was built from, a file of the version's folder
    lock_digest: str | None = None
    folder: Path = field(default=Path(), compare=False)  # the version's folder in the registry

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    @property
    def lock_path(self) -> Path | None:
        return self.folder / self.lock if self.lock else None

    def to_dict(self) -> dict[str, Any]:
        """The metadata file's content (and ``show --json``)."""
        return {
            "format": FORMAT,
            "name": self.name,
            "version": self.version,
            "runs_in": self.runs_in,
            "managed": self.managed,
            "created": self.created,
            "envbuild_version": self.envbuild_version,
            "source": dict(self.source),
            "prefix": self.prefix,
            "python": self.python,
            "image": self.image,
            "image_id": self.image_id,
            "lock": self.lock,
            "lock_digest": self.lock_digest,
            "installed": self.installed.to_dict(),
        }

    def summary(self) -> dict[str, Any]:
        """One line of ``list --json``."""
        return {
            "name": self.name,
            "version": self.version,
            "runs_in": self.runs_in,
            "managed": self.managed,
            "created": self.created,
            "python": self.installed.python_version,
            "platform": self.installed.platform,
            "distributions": len(self.installed.distributions),
            "source": self.source.get("from"),
            "where": self.prefix if self.runs_in == PREFIX else self.image,
        }

    @classmethod
    def from_dict(cls, data: Any, where: Path) -> SharedEnvironment:
        if not isinstance(data, Mapping):
            raise RegistryError("broken registry file: not a JSON object", path=where)
        if data.get("format") != FORMAT:
            raise RegistryError(
                f"registry file of format {data.get('format')!r}, this envbuild reads format "
                f"{FORMAT}",
                path=where,
                hint="use the envbuild version that created it, or remove and create it again",
            )
        try:
            runs_in = str(data["runs_in"])
            if runs_in not in (PREFIX, IMAGE):
                raise ValueError(f"runs_in {runs_in!r}")
            return cls(
                name=str(data["name"]),
                version=str(data["version"]),
                runs_in=runs_in,
                managed=bool(data["managed"]),
                created=str(data["created"]),
                envbuild_version=str(data["envbuild_version"]),
                source=dict(data["source"]),
                installed=Installed.from_dict(data["installed"], where),
                prefix=_optional(data, "prefix"),
                python=_optional(data, "python"),
                image=_optional(data, "image"),
                image_id=_optional(data, "image_id"),
                lock=_optional(data, "lock"),
                lock_digest=_optional(data, "lock_digest"),
                folder=where.parent,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RegistryError(
                f"broken registry file: {type(exc).__name__}: {exc}", path=where
            ) from None


def _optional(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return None if value is None else str(value)
