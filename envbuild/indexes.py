"""Which package indexes a resolution uses, gathered from every place a user configures them.

uv reads its own settings (``UV_*`` variables, ``uv.toml``) but not pip's, and most people
configure a private index or a mirror for pip. So envbuild gathers, in decreasing precedence:

1. envbuild's command line (``--index-url``, ``--extra-index-url``, ``--find-links``);
2. the model's own files, only when the user trusts them (``--trust-model-indexes``): a model is
   downloaded data and must not be able to redirect installs to an index of its choosing;
3. uv's environment variables (``UV_DEFAULT_INDEX``, ``UV_INDEX_URL``, ``UV_EXTRA_INDEX_URL``,
   ``UV_FIND_LINKS``) and user/system ``uv.toml`` files (read for the record; uv applies them);
4. pip's environment variables (``PIP_INDEX_URL``, ``PIP_EXTRA_INDEX_URL``, ``PIP_FIND_LINKS``,
   ``PIP_TRUSTED_HOST``), else pip's configuration files, in pip's own order.

Only one default index can win (the first of the list above that names one); extra indexes and
find-links from every level are used together, as pip merges them. The result is passed to uv as
uv's own variables (never on a command line), and recorded in the lock with credentials replaced
by ``***``.
"""

from __future__ import annotations

import configparser
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from envbuild.redact import redact_url
from envbuild.requirements import IndexOption

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI
    import tomli as tomllib

PYPI = "https://pypi.org/simple"

# uv's index variables: read as settings of their level, then set again by IndexConfig.child_env.
UV_INDEX_VARIABLES = (
    "UV_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_EXTRA_INDEX_URL",
    "UV_FIND_LINKS",
    "UV_INSECURE_HOST",
)

_MODEL_KINDS = {
    "--index-url": "index-url",
    "--extra-index-url": "extra-index-url",
    "--find-links": "find-links",
    "--trusted-host": "trusted-host",
}


@dataclass(frozen=True)
class IndexSetting:
    """One index option and where it was found (for messages; never printed unredacted)."""

    kind: str  # index-url, extra-index-url, find-links, trusted-host
    value: str  # as configured: may hold credentials
    source: str  # "command line", "PIP_INDEX_URL", "/etc/pip.conf", "model requirements.txt:3"

    @property
    def redacted(self) -> str:
        return redact_url(self.value)

    @property
    def is_local(self) -> bool:
        """A file:// URL or a folder: usable on this machine only (not in an image, not in CI)."""
        scheme = urlsplit(self.value).scheme.lower()
        return scheme == "file" or scheme == "" or len(scheme) == 1  # "C:\\wheels" on Windows

    def __str__(self) -> str:
        return f"{self.kind} {self.redacted} (from {self.source})"


@dataclass(frozen=True)
class IndexConfig:
    """The effective index settings of one resolution."""

    index_url: IndexSetting | None = None  # None: uv's default (PyPI) or uv's own config
    extra_index_urls: tuple[IndexSetting, ...] = ()
    find_links: tuple[IndexSetting, ...] = ()
    trusted_hosts: tuple[IndexSetting, ...] = ()
    uv_config: tuple[IndexSetting, ...] = ()  # found in uv.toml / UV_INDEX: uv applies those
    index_strategy: str | None = None  # "unsafe-best-match" when pip's extra indexes are used
    ignored: tuple[IndexSetting, ...] = field(default=(), compare=False)
    # a mirror of PyTorch's indexes (--torch-index-url, ENVBUILD_TORCH_INDEX_URL), "{accelerator}"
    # standing for cpu/cu121/...: used as an explicit index for the torch family only
    torch_mirror: IndexSetting | None = None

    def torch_index(self, accelerator: str) -> IndexSetting:
        """The explicit index ``accelerator``'s torch-family builds come from (the mirror, with
        its credentials, when one is set)."""
        from envbuild.accelerator import torch_index_url

        mirror = self.torch_mirror
        url = torch_index_url(accelerator, mirror.value if mirror else None)
        return IndexSetting("torch-index-url", url, mirror.source if mirror else "PyTorch")

    def child_env(self, env: Mapping[str, str]) -> dict[str, str]:
        """``env`` for uv with the effective settings as uv's own variables.

        Variables rather than arguments: a URL with credentials in a command line is visible to
        every local user (``ps``) and ends up in logs; the environment is neither.
        """
        out = {k: v for k, v in env.items() if k not in UV_INDEX_VARIABLES}
        if self.index_url is not None:
            out["UV_INDEX_URL"] = self.index_url.value
        if self.extra_index_urls:
            out["UV_EXTRA_INDEX_URL"] = " ".join(s.value for s in self.extra_index_urls)
        if self.find_links:
            out["UV_FIND_LINKS"] = ",".join(s.value for s in self.find_links)
        if self.trusted_hosts:
            out["UV_INSECURE_HOST"] = " ".join(s.value for s in self.trusted_hosts)
        if self.index_strategy and not out.get("UV_INDEX_STRATEGY"):
            out["UV_INDEX_STRATEGY"] = self.index_strategy
        return out

    def record(self) -> dict[str, object]:
        """What the lock records under ``[tool.envbuild]``: URLs with credentials hidden."""
        out: dict[str, object] = {}
        default = self.index_url.redacted if self.index_url else None
        uv_default = [s for s in self.uv_config if s.kind == "index-url"]
        if default is None:
            default = uv_default[0].redacted if uv_default else PYPI
        out["index-url"] = default
        extras = [s.redacted for s in self.extra_index_urls]
        extras += [s.redacted for s in self.uv_config if s.kind == "extra-index-url"]
        if extras:
            out["extra-index-urls"] = list(dict.fromkeys(extras))
        links = [s.redacted for s in self.find_links]
        links += [s.redacted for s in self.uv_config if s.kind == "find-links"]
        if links:
            out["find-links"] = list(dict.fromkeys(links))
        if self.index_strategy:
            out["index-strategy"] = self.index_strategy
        return out

    def fingerprint(self) -> str:
        """A digest of the effective settings, credentials included (they can select another
        index view), for cache keys; never shown."""
        import hashlib

        parts = [
            f"{s.kind}={s.value}"
            for s in [
                *([self.index_url] if self.index_url else []),
                *self.extra_index_urls,
                *self.find_links,
                *self.trusted_hosts,
                *self.uv_config,
                *([self.torch_mirror] if self.torch_mirror else []),
            ]
        ]
        parts.append(f"strategy={self.index_strategy}")
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    def local(self) -> list[IndexSetting]:
        """Settings that make a lock unusable elsewhere (local folders and file:// indexes)."""
        settings = [*([self.index_url] if self.index_url else []), *self.extra_index_urls]
        return [s for s in [*settings, *self.find_links] if s.is_local]

    def local_advice(self) -> str:
        """Where the local settings come from, and how to leave them out (for a warning)."""
        local = self.local()
        if not local:
            return ""
        shown = "; ".join(str(s) for s in local)
        advice = f"local index settings: {shown}"
        if any(from_pip(s) for s in local):
            advice += "; PIP_CONFIG_FILE=/dev/null (and no PIP_* index variables) ignores pip's"
        return advice


# ---------------------------------------------------------------------------------------------
# pip's configuration


def _split(value: str) -> list[str]:
    return [part for part in value.split() if part]


def pip_config_files(environ: Mapping[str, str]) -> list[Path]:
    """pip's configuration files in pip's load order (later ones override earlier ones).

    Mirrors ``pip._internal.configuration``: global (``$XDG_CONFIG_DIRS/pip/pip.conf``,
    ``/etc/pip.conf``), user (``~/.pip/pip.conf``, ``~/.config/pip/pip.conf``; skipped when
    ``PIP_CONFIG_FILE`` names an existing file), site (``sys.prefix/pip.conf``), then
    ``PIP_CONFIG_FILE``. ``PIP_CONFIG_FILE=/dev/null`` disables them all, as in pip.
    """
    env_file = environ.get("PIP_CONFIG_FILE")
    if env_file == os.devnull:
        return []
    files: list[Path] = []
    if sys.platform == "win32":  # pragma: no cover - paths differ, same idea
        program_data = environ.get("PROGRAMDATA", r"C:\ProgramData")
        files.append(Path(program_data, "pip", "pip.ini"))
        appdata = environ.get("APPDATA")
        user = [Path(appdata, "pip", "pip.ini")] if appdata else []
        name = "pip.ini"
    else:
        dirs = environ.get("XDG_CONFIG_DIRS") or "/etc/xdg"
        files += [Path(d, "pip", "pip.conf") for d in dirs.split(os.pathsep) if d]
        files.append(Path("/etc/pip.conf"))
        home = Path(environ.get("HOME") or Path.home())
        config_home = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
        if sys.platform == "darwin":
            user = [home / ".pip" / "pip.conf", home / "Library/Application Support/pip/pip.conf"]
        else:
            user = [home / ".pip" / "pip.conf", config_home / "pip" / "pip.conf"]
        name = "pip.conf"
    if not (env_file and Path(env_file).exists()):
        files += user
    files.append(Path(sys.prefix, name))
    if env_file:
        files.append(Path(env_file))
    return files


def read_pip_config(environ: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """pip's effective index options: key -> (value, source), files then ``PIP_*`` variables.

    Only the ``[global]`` and ``[install]`` sections are read (``pip install`` is what a lock
    stands in for).
    """
    found: dict[str, tuple[str, str]] = {}
    for path in pip_config_files(environ):
        if not path.is_file():
            continue
        parser = configparser.RawConfigParser()
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError, OSError):
            continue  # pip would complain; a broken file must not break a resolution
        for section in ("global", "install"):
            if not parser.has_section(section):
                continue
            for key, value in parser.items(section):
                norm = key.replace("_", "-").lower()
                if norm in ("index-url", "extra-index-url", "find-links", "trusted-host"):
                    found[norm] = (value, str(path))
    for norm in ("index-url", "extra-index-url", "find-links", "trusted-host"):
        var = "PIP_" + norm.upper().replace("-", "_")
        if environ.get(var):
            found[norm] = (environ[var], var)
    return found


# ---------------------------------------------------------------------------------------------
# uv's configuration (read for the record only: uv applies its own files itself)


def uv_config_files(environ: Mapping[str, str]) -> list[Path]:
    if environ.get("UV_NO_CONFIG"):
        return []
    if environ.get("UV_CONFIG_FILE"):
        return [Path(environ["UV_CONFIG_FILE"])]
    home = Path(environ.get("HOME") or Path.home())
    config_home = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
    dirs = (environ.get("XDG_CONFIG_DIRS") or "/etc/xdg").split(os.pathsep)
    return [
        *[Path(d, "uv", "uv.toml") for d in dirs if d],
        Path("/etc/uv/uv.toml"),
        config_home / "uv" / "uv.toml",
    ]


def read_uv_config(environ: Mapping[str, str]) -> list[IndexSetting]:
    """Index settings uv will apply by itself: ``uv.toml`` files and ``UV_INDEX``."""
    out: list[IndexSetting] = []
    for path in uv_config_files(environ):
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
            continue
        for table in (doc, doc.get("pip") if isinstance(doc.get("pip"), dict) else {}):
            source = str(path)
            if isinstance(table.get("index-url"), str):
                out.append(IndexSetting("index-url", table["index-url"], source))
            for key, kind in (("extra-index-url", "extra-index-url"), ("find-links", "find-links")):
                values = table.get(key)
                if isinstance(values, list):
                    out += [IndexSetting(kind, str(v), source) for v in values]
            for index in table.get("index", []) if isinstance(table.get("index"), list) else []:
                if isinstance(index, dict) and isinstance(index.get("url"), str):
                    kind = "index-url" if index.get("default") else "extra-index-url"
                    out.append(IndexSetting(kind, index["url"], source))
    for item in _split(environ.get("UV_INDEX", "")):
        url = item.split("=", 1)[1] if "=" in item and "://" not in item.split("=", 1)[0] else item
        out.append(IndexSetting("extra-index-url", url, "UV_INDEX"))
    return out


# ---------------------------------------------------------------------------------------------


def from_pip(setting: IndexSetting) -> bool:
    return setting.source.startswith("PIP_") or setting.source.endswith(("pip.conf", "pip.ini"))


def _strategy(extra: Sequence[IndexSetting], environ: Mapping[str, str]) -> str | None:
    """pip's semantics for pip's settings: the best version found on any of its indexes.

    uv's default (``first-index``: a package comes from the first index that has it, against
    dependency confusion) turns a pip configuration that works into "no solution" as soon as an
    extra index holds an older copy of a package; ``unsafe-best-match`` is what pip does. Only
    applied when pip's configuration adds indexes, and never over the user's UV_INDEX_STRATEGY.
    """
    if environ.get("UV_INDEX_STRATEGY"):
        return None
    return "unsafe-best-match" if any(from_pip(s) for s in extra) else None


def _local_path(value: str) -> str:
    """Relative find-links folders are made absolute: uv runs in a temporary folder."""
    if "://" in value:
        return value
    return os.path.abspath(os.path.expanduser(value))


def configure(
    *,
    index_url: str | None = None,
    extra_index_urls: Sequence[str] = (),
    find_links: Sequence[str] = (),
    model_options: Sequence[IndexOption] = (),
    trust_model_indexes: bool = False,
    torch_index_url: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> IndexConfig:
    """Gather the effective index settings (see the module docstring for the precedence)."""
    from envbuild.accelerator import TORCH_INDEX_VARIABLE

    env = os.environ if environ is None else environ
    torch_mirror = None
    if torch_index_url:
        torch_mirror = IndexSetting("torch-index-url", torch_index_url, "command line")
    elif env.get(TORCH_INDEX_VARIABLE):
        torch_mirror = IndexSetting(
            "torch-index-url", env[TORCH_INDEX_VARIABLE], TORCH_INDEX_VARIABLE
        )
    default: list[IndexSetting] = []
    extras: list[IndexSetting] = []
    links: list[IndexSetting] = []
    trusted: list[IndexSetting] = []
    buckets = {
        "index-url": default,
        "extra-index-url": extras,
        "find-links": links,
        "trusted-host": trusted,
    }

    def add(kind: str, value: str, source: str) -> None:
        if kind == "find-links":
            value = _local_path(value)
        buckets[kind].append(IndexSetting(kind, value, source))

    # 1. command line
    if index_url:
        add("index-url", index_url, "command line")
    for value in extra_index_urls:
        add("extra-index-url", value, "command line")
    for value in find_links:
        add("find-links", value, "command line")
    # 2. the model's files, if trusted
    ignored: list[IndexSetting] = []
    for opt in model_options:
        kind = _MODEL_KINDS.get(opt.option)
        if kind is None:
            continue
        if trust_model_indexes:
            add(kind, opt.value, f"model {opt.origin}")
        else:
            ignored.append(IndexSetting(kind, opt.value, f"model {opt.origin}"))
    # 3. uv's variables (set again for uv by child_env) and files (left to uv)
    for var in ("UV_DEFAULT_INDEX", "UV_INDEX_URL"):
        if env.get(var):
            add("index-url", env[var], var)
    for value in _split(env.get("UV_EXTRA_INDEX_URL", "")):
        add("extra-index-url", value, "UV_EXTRA_INDEX_URL")
    for value in _split(env.get("UV_FIND_LINKS", "").replace(",", " ")):
        add("find-links", value, "UV_FIND_LINKS")
    for value in _split(env.get("UV_INSECURE_HOST", "")):
        add("trusted-host", value, "UV_INSECURE_HOST")
    uv_config = read_uv_config(env)
    uv_has_default = any(s.kind == "index-url" for s in uv_config)
    # 4. pip's variables and files
    pip = read_pip_config(env)
    for kind in ("index-url", "extra-index-url", "find-links", "trusted-host"):
        if kind not in pip:
            continue
        value, source = pip[kind]
        if kind == "index-url":
            if not uv_has_default:
                add(kind, value.strip(), source)
            continue
        for item in _split(value):
            add(kind, item, source)

    def unique(items: list[IndexSetting]) -> tuple[IndexSetting, ...]:
        seen: dict[str, IndexSetting] = {}
        for item in items:
            seen.setdefault(item.value.rstrip("/"), item)
        return tuple(seen.values())

    return IndexConfig(
        index_url=default[0] if default else None,
        extra_index_urls=unique(extras),
        find_links=unique(links),
        trusted_hosts=unique(trusted),
        uv_config=tuple(uv_config),
        index_strategy=_strategy([*extras, *links], env),
        ignored=tuple(ignored),
        torch_mirror=torch_mirror,
    )
