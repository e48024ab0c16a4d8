"""Conda channels: which ones a solve uses, their URLs, mirrors, and keeping credentials out.

Which channels, in priority order (conda's rule): the ``--channel`` ones first, then the model's
``channels:`` unless ``--override-channels``; duplicates dropped; none at all means
``conda-forge`` (what MLflow writes, and the only free public default).

Names become URLs as conda does: ``conda-forge`` is ``https://conda.anaconda.org/conda-forge/``;
``defaults`` is Anaconda's ``pkgs/main`` and ``pkgs/r`` (conda's ``default_channels`` on Linux and
macOS); a URL (``https://``, ``file://``) or an absolute path is taken as it is.

**Mirrors.** ``ENVBUILD_CONDA_CHANNEL_ALIAS`` (a URL or a local folder) replaces
``https://conda.anaconda.org/`` for fetching, like conda's ``channel_alias``: ``conda-forge`` is
then read from ``ALIAS/conda-forge/``. The lock still records the canonical
``https://conda.anaconda.org/...`` URL of every package (a mirror holds the same files, with the
same sha256), so a lock made behind a company mirror installs anywhere else, and one made
anywhere installs behind the mirror: the same mapping is applied again when installing.

**Credentials** (``https://user:secret@host/...``, anaconda.org's ``/t/TOKEN/`` path segment)
may appear in a channel given on the command line or in the alias. They are used for fetching
only: :attr:`CondaChannel.url` — what locks, messages and reports show — has them removed, and
anything else displayed goes through :func:`redact_url`. rattler's own credential store
(``RATTLER_AUTH_FILE``, the keyring) also works, with no credentials in any URL.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from envbuild import proc
from envbuild.errors import ModelError, UsageError

ALIAS_ENV = "ENVBUILD_CONDA_CHANNEL_ALIAS"
CANONICAL_ALIAS = "https://conda.anaconda.org/"
DEFAULT_CHANNELS = ("conda-forge",)
DEFAULTS_URLS = ("https://repo.anaconda.com/pkgs/main/", "https://repo.anaconda.com/pkgs/r/")

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9_.\-]+)*")
_TOKEN = re.compile(r"/t/[^/]+(?=/)")


@dataclass(frozen=True)
class CondaChannel:
    """One channel: as written, its canonical URL (recorded), and where it is fetched from."""

    name: str  # as written (credentials redacted)
    url: str  # canonical base URL ending in "/", without credentials: what a lock records
    fetch_url: str = field(repr=False)  # mirror applied, credentials kept: never displayed

    @property
    def mirrored(self) -> bool:
        return self.fetch_url != self.url

    @property
    def is_local(self) -> bool:
        return self.url.startswith("file://")

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "url": self.url,
            "mirror": redact_url(self.fetch_url) if self.mirrored else None,
        }


def redact_url(url: str) -> str:
    """``url`` fit to display: ``user:secret@`` and ``/t/TOKEN/`` shown as ``***``."""
    return _TOKEN.sub("/t/***", proc.redact(url))


def strip_credentials(url: str) -> str:
    """``url`` without ``user:secret@`` and without an anaconda.org ``/t/TOKEN`` segment."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, _TOKEN.sub("", parts.path), parts.query, ""))


def select_channels(
    model: Sequence[str], *, extra: Sequence[str] = (), override: bool = False
) -> tuple[str, ...]:
    """The channel names to use, in priority order (see the module docstring)."""
    chosen = [*extra, *([] if override else model)]
    unique = tuple(dict.fromkeys(c.strip() for c in chosen if c and c.strip()))
    return unique or DEFAULT_CHANNELS


def alias_from_env(env: Mapping[str, str] | None = None) -> str | None:
    """The mirror for ``https://conda.anaconda.org/`` from ``ENVBUILD_CONDA_CHANNEL_ALIAS``."""
    value = (env if env is not None else os.environ).get(ALIAS_ENV, "").strip()
    if not value:
        return None
    return _base(_as_url(value) or value)


def resolve_channels(
    names: Iterable[str],
    *,
    alias: str | None = None,
    path: Path | None = None,
) -> tuple[CondaChannel, ...]:
    """URLs for ``names``; ``alias`` defaults to the environment's; ``path`` names the file the
    names come from (a bad name is then a ModelError about its ``channels``, else a UsageError)."""
    mirror = alias if alias is not None else alias_from_env()
    out: dict[str, CondaChannel] = {}
    for raw in names:
        name = raw.strip()
        shown = redact_url(name)
        if name == "defaults":
            for url in DEFAULTS_URLS:
                out.setdefault(url, CondaChannel("defaults", url, url))
            continue
        given = _as_url(name)
        if given is None:
            if not _NAME.fullmatch(name):
                message = f"invalid conda channel {shown!r} (expected a name, a URL or a path)"
                if path is not None:
                    raise ModelError(message, path=path, field="channels")
                raise UsageError(message)
            given = CANONICAL_ALIAS + name
        fetch = _base(given)
        url = _base(strip_credentials(fetch))
        if mirror and url.startswith(CANONICAL_ALIAS):
            fetch = mirror + fetch[len(CANONICAL_ALIAS) :]
        out.setdefault(url, CondaChannel(shown, url, fetch))
    return tuple(out.values())


def to_canonical(url: str, channels: Sequence[CondaChannel], fetch_bases: Sequence[str]) -> str:
    """A package URL as fetched (under ``fetch_bases[i]``) -> as recorded (under ``url``)."""
    for channel, base in zip(channels, fetch_bases, strict=True):
        if url.startswith(base):
            return channel.url + url[len(base) :]
    return strip_credentials(url)


def to_fetch(url: str, channels: Sequence[CondaChannel], *, alias: str | None = None) -> str:
    """A recorded package URL -> where to fetch it now (this run's mirror and credentials)."""
    for channel in channels:
        if url.startswith(channel.url):
            return channel.fetch_url + url[len(channel.url) :]
    mirror = alias if alias is not None else alias_from_env()
    if mirror and url.startswith(CANONICAL_ALIAS):
        return mirror + url[len(CANONICAL_ALIAS) :]
    return url


def _as_url(text: str) -> str | None:
    """``text`` as a URL when it is one (``scheme://``) or an absolute/home path, else None."""
    if "://" in text:
        return text
    if text.startswith(("/", "~")):
        return Path(os.path.expanduser(text)).resolve().as_uri()
    return None


def _base(url: str) -> str:
    return url if url.endswith("/") else url + "/"
