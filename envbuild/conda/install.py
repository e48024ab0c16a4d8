"""Installing a conda lock: into a prefix (``install``), or into envbuild's cache (``build_env``).

**Build path = final path.** A conda prefix hard-codes its own path: the installer writes it over
every package's prefix placeholder (scripts, ``_sysconfigdata``, binaries), entry points get it
in their shebang, uv writes it into the pip half's scripts, and link scripts (when asked) run
there. A prefix built in a temporary folder and renamed would point at the temporary folder; one
built elsewhere with rattler's ``alternative_target_prefix`` would be unusable until renamed, so
nothing could run in it during the build (uv, bytecode compilation, link scripts). So
``build_env`` builds *in place*, at ``CACHE/conda/KEY``, under that key's lock
(``cache.publish(..., in_place=True)``): the entry counts as finished only once its marker is
written, atomically and last; a build killed at any point leaves an entry without a marker, which
is never used and is removed by the next build of that key; concurrent builds of one key wait for
the lock and then find the finished entry, so the work is done once. (``install(...,
target_prefix=P)`` is the other way, for a prefix that nothing runs in before it is moved to
``P``: an image's ``/opt/env`` assembled on the host and copied in.)

**Integrity.** Every package file must have the sha256 the lock records: rattler checks what it
downloads, and envbuild checks local (``file://``) packages itself, which rattler does not. A
mismatch is a :class:`BuildError` naming the package (exit 4).

**Offline**: every package must already be in rattler's package cache (whatever its URL); the
first one missing is named in a one-line error. The package cache is rattler's (and pixi's)
shared one (``$RATTLER_CACHE_DIR``, else ``~/.cache/rattler/cache``) unless one is given.

**Link scripts** (``post-link``) are package code; they run only with ``link_scripts=True``.

**Credentials** in a channel's fetch URL are used to download only: conda-meta records the lock's
canonical, credential-free URLs.

The pip half (a ``pylock.toml``) is installed afterwards by uv into the prefix's own Python, with
hashes required, by ``uv pip install`` (not ``sync``: conda's own Python packages in the prefix
must stay).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from envbuild.cache import publish, read_marker
from envbuild.conda import _rattler
from envbuild.conda._rattler import package_cache_dir
from envbuild.conda.activate import activation_env, prefix_python
from envbuild.conda.channels import CondaChannel, redact_url, to_fetch
from envbuild.conda.lockfile import CondaLock, repodata_records
from envbuild.errors import BuildError

if TYPE_CHECKING:
    from rattler import RepoDataRecord

    from envbuild.lock import Lock

LAYOUT = "conda-1"  # bump when the way conda environments are built changes
KIND = "conda"
PIP_LOCK_NAME = "pylock.envbuild.toml"


@dataclass(frozen=True)
class Progress:
    """One step of an install, for a progress display: ``download 3/7 numpy``."""

    stage: str  # "download" or "link"
    done: int
    total: int
    package: str

    def __str__(self) -> str:
        return f"{self.stage} {self.done}/{self.total} {self.package}"


@dataclass(frozen=True)
class InstallStats:
    """What an install did."""

    packages: int
    downloaded: int  # packages that were not in the package cache
    seconds: float


@dataclass(frozen=True)
class CondaEnv:
    """A finished conda environment in envbuild's cache."""

    path: Path  # the prefix
    python: Path  # its interpreter
    key: str
    lock_digest: str  # the conda lock's
    pip_lock_digest: str | None
    python_version: str
    platform: str
    built: bool = False  # built by this call (False: reused from the cache)
    seconds: float = 0.0
    details: dict[str, str] = field(default_factory=dict)

    def run_env(
        self, base: dict[str, str] | None = None, *, run_scripts: bool = False
    ) -> dict[str, str]:
        """Environment variables for a process running in this environment."""
        return activation_env(self.path, base, run_scripts=run_scripts)

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": KIND,
            "path": str(self.path),
            "python": str(self.python),
            "key": self.key,
            "lock_digest": self.lock_digest,
            "pip_lock_digest": self.pip_lock_digest,
            "python_version": self.python_version,
            "platform": self.platform,
            "built": self.built,
            "seconds": round(self.seconds, 3),
            **self.details,
        }


def host_subdir() -> str:
    from rattler import Subdir

    return str(Subdir.current())


def env_key(lock: CondaLock, pip_lock: Lock | None = None, *, link_scripts: bool = False) -> str:
    """The cache key of an environment: both lock halves (the conda one brings the Python), and
    whether the packages' link scripts ran (they may change the prefix)."""
    blob = f"{LAYOUT}\n{lock.digest}\n{pip_lock.digest if pip_lock else '-'}"
    if link_scripts:
        blob += "\nlink-scripts"
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


# ---------------------------------------------------------------------------------------------
# the conda half


def install(
    lock: CondaLock,
    prefix: Path,
    *,
    package_cache: Path | None = None,
    offline: bool = False,
    link_scripts: bool = False,
    channels: Sequence[CondaChannel] = (),
    progress: Callable[[Progress], None] | None = None,
    target_prefix: Path | None = None,
) -> InstallStats:
    """Link the lock's packages into ``prefix`` (created if missing). Not crash-safe by itself:
    :func:`build_env` makes it so; an image build gets it from its layer.

    ``target_prefix``: write that path, not ``prefix``, over the packages' placeholders, for a
    prefix that will be moved there before anything runs in it (an image's ``/opt/env`` built on
    the host and copied in). Link scripts cannot run then (they would run in the wrong place).
    """
    import rattler
    from rattler.exceptions import InstallerError, LinkError, TransactionError

    started = time.monotonic()
    if target_prefix is not None and link_scripts:
        raise BuildError("link scripts cannot run in a prefix built for another path")
    if lock.platform != "noarch" and lock.platform != host_subdir():
        raise BuildError(
            f"the conda lock is for {lock.platform}; this machine is {host_subdir()}",
            path=lock.path,
            hint="build it on (or in an image for) that platform",
        )
    cache = package_cache or package_cache_dir()
    records = sorted(repodata_records(lock), key=lambda r: r.name.normalized)
    recorded = {r.url: r.url for r in records}
    for record in records:
        fetch = to_fetch(record.url, channels)
        recorded[fetch] = record.url
        record.url = fetch
    index = _rattler.run(rattler.PackageCache(cache).index())
    missing = [r for r in records if not index.contains_record(r)]
    if offline and missing:
        first = missing[0]
        raise BuildError(
            f"--offline: {first.name.normalized}={first.version}={first.build} is not in the "
            f"package cache {cache}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
            path=lock.path,
            hint="install once with network access (or from a local channel), or drop --offline",
        )
    for record in missing:
        _check_local_file(record, lock)
    reporter = _Reporter(progress, len(records), {r.name.normalized for r in missing})
    try:
        _rattler.run(
            rattler.install(
                records,
                prefix,
                cache_dir=cache,
                platform=rattler.Subdir(lock.platform),
                execute_link_scripts=link_scripts,
                show_progress=False,
                reporter=reporter,
                alternative_target_prefix=target_prefix,
            )
        )
    except (InstallerError, LinkError, TransactionError) as exc:
        raise _install_error(exc, lock) from None
    if any(fetch != url for fetch, url in recorded.items()):
        _record_canonical_urls(prefix, recorded)
    return InstallStats(len(records), len(missing), time.monotonic() - started)


class _Reporter:
    """rattler's installer callbacks -> :class:`Progress` values.

    "download" counts the packages that were not in the package cache, when they are in it
    (fetched over the network, or extracted from a local channel); "link" counts every package
    linked into the prefix.
    """

    def __init__(
        self, progress: Callable[[Progress], None] | None, packages: int, missing: set[str]
    ) -> None:
        self.progress = progress
        self.packages = packages
        self.missing = missing
        self.fetching: dict[int, str] = {}
        self.linking: dict[int, str] = {}
        self.fetched = 0
        self.linked = 0
        self.next_token = 0

    def _token(self, table: dict[int, str], name: str) -> int:
        self.next_token += 1
        table[self.next_token] = name
        return self.next_token

    def _emit(self, stage: str, done: int, total: int, name: str) -> None:
        if self.progress is not None:
            self.progress(Progress(stage, done, total, name))

    def on_populate_cache_start(self, operation: int, package_name: str) -> int:
        return self._token(self.fetching, package_name)

    def on_populate_cache_complete(self, cache_entry: int) -> None:
        name = self.fetching.pop(cache_entry, "?")
        if name in self.missing:
            self.fetched += 1
            self._emit("download", self.fetched, len(self.missing), name)

    def on_link_start(self, operation: int, package_name: str) -> int:
        return self._token(self.linking, package_name)

    def on_link_complete(self, index: int) -> None:
        self.linked += 1
        self._emit("link", self.linked, self.packages, self.linking.pop(index, "?"))

    # the other InstallerReporter callbacks (transactions, validation, bytes, scripts): ignored
    def on_transaction_start(self, total_operations: int) -> None: ...
    def on_transaction_operation_start(self, operation: int) -> None: ...
    def on_transaction_operation_complete(self, operation: int) -> None: ...
    def on_transaction_complete(self) -> None: ...
    def on_validate_start(self, cache_entry: int) -> int:
        return 0

    def on_validate_complete(self, validate_idx: int) -> None: ...
    def on_download_start(self, cache_entry: int) -> int:
        return 0

    def on_download_progress(self, download_idx: int, progress: int, total: int | None) -> None: ...
    def on_download_completed(self, download_idx: int) -> None: ...
    def on_unlink_start(self, operation: int, package_name: str) -> int:
        return 0

    def on_unlink_complete(self, index: int) -> None: ...
    def on_post_link_start(self, package_name: str, script_path: str) -> int:
        return 0

    def on_post_link_complete(self, index: int, success: bool) -> None: ...
    def on_pre_unlink_start(self, package_name: str, script_path: str) -> int:
        return 0

    def on_pre_unlink_complete(self, index: int, success: bool) -> None: ...


def _check_local_file(record: RepoDataRecord, lock: CondaLock) -> None:
    """A ``file://`` package must match the lock's sha256: rattler does not check local files."""
    url = record.url
    if not url.startswith("file://"):
        return
    path = Path(unquote(urlsplit(url).path))
    expected = record.sha256.hex() if record.sha256 else None
    try:
        actual = _sha256_file(path)
    except OSError as exc:
        raise BuildError(
            f"{path.name}: cannot read the package file: {exc.strerror}", path=lock.path
        ) from None
    if expected is not None and actual != expected:
        raise BuildError(
            f"{path.name}: sha256 mismatch: the lock says {expected}, the file {url} has {actual}",
            path=lock.path,
            hint="the channel's file changed since the lock was made; lock again if that is "
            "expected",
        )


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


_MISMATCH = re.compile(
    r"when extracting (?P<url>\S+) to .*?expected (?P<expected>[0-9a-f]+), got (?P<actual>[0-9a-f]+)",
    re.S,
)


def _install_error(exc: Exception, lock: CondaLock) -> BuildError:
    text = redact_url(str(exc))
    found = _MISMATCH.search(text)
    if found:
        url = found["url"]
        return BuildError(
            f"{url.rsplit('/', 1)[-1]}: sha256 mismatch: the lock says {found['expected']}, the "
            f"file {url} has {found['actual']}",
            path=lock.path,
            hint="the channel's file changed since the lock was made; lock again if that is "
            "expected",
        )
    return BuildError(
        f"installing the conda packages failed: {redact_url(_rattler.first_line(exc))}",
        path=lock.path,
    )


def _record_canonical_urls(prefix: Path, recorded: dict[str, str]) -> None:
    """conda-meta gets the lock's URLs, not the mirror's (which may hold credentials)."""
    for meta in (prefix / "conda-meta").glob("*.json"):
        data = json.loads(meta.read_text(encoding="utf-8"))
        url = data.get("url")
        if isinstance(url, str) and url in recorded and recorded[url] != url:
            canonical = recorded[url]
            data["url"] = canonical
            data["channel"] = canonical.rsplit("/", 2)[0] + "/"
            meta.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# the pip half


def install_pip_half(
    prefix: Path,
    pip_lock: Lock,
    *,
    compile_bytecode: bool = True,
    offline: bool = False,
    on_line: Callable[[str], None] | None = None,
) -> None:
    """Install a ``pylock.toml`` into the prefix's Python with uv, every hash required, keeping
    the conda packages (``envbuild/uv_install.py``; the lock is kept in ``conda-meta/``)."""
    from envbuild.uv_install import install_lock

    folder = prefix / "conda-meta"
    (folder / PIP_LOCK_NAME).write_text(pip_lock.text, encoding="utf-8")
    install_lock(
        prefix_python(prefix),
        pip_lock,
        folder,
        sync=False,
        compile_bytecode=compile_bytecode,
        offline=offline,
        on_line=on_line,
        what="installing the pip packages into the conda environment",
    )


# ---------------------------------------------------------------------------------------------
# both halves, in the cache


def build_env(
    lock: CondaLock,
    *,
    pip_lock: Lock | None = None,
    package_cache: Path | None = None,
    offline: bool = False,
    link_scripts: bool = False,
    channels: Sequence[CondaChannel] = (),
    compile_bytecode: bool = True,
    progress: Callable[[Progress], None] | None = None,
    on_line: Callable[[str], None] | None = None,
    on_wait: Callable[[], None] | None = None,
    root: Path | None = None,
) -> CondaEnv:
    """Materialize (or reuse) the environment of ``lock`` (+ ``pip_lock``) in the cache."""
    if lock.python_version is None:
        raise BuildError(
            "the conda lock has no python package", path=lock.path, hint="add python to conda.yaml"
        )
    key = env_key(lock, pip_lock, link_scripts=link_scripts)
    started = time.monotonic()

    def build(prefix: Path) -> dict[str, object]:
        stats = install(
            lock,
            prefix,
            package_cache=package_cache,
            offline=offline,
            link_scripts=link_scripts,
            channels=channels,
            progress=progress,
        )
        if pip_lock is not None:
            install_pip_half(
                prefix,
                pip_lock,
                compile_bytecode=compile_bytecode,
                offline=offline,
                on_line=on_line,
            )
        return {
            "lock_digest": lock.digest,
            "pip_lock_digest": pip_lock.digest if pip_lock else None,
            "python_version": lock.python_version,
            "platform": lock.platform,
            "packages": stats.packages,
            "downloaded": stats.downloaded,
            "install_seconds": round(stats.seconds, 3),
        }

    path, built = publish(KIND, key, build, on_wait=on_wait, root=root, in_place=True)
    marker = read_marker(path) or {}
    return CondaEnv(
        path=path,
        python=prefix_python(path),
        key=key,
        lock_digest=lock.digest,
        pip_lock_digest=pip_lock.digest if pip_lock else None,
        python_version=str(marker.get("python_version", lock.python_version)),
        platform=lock.platform,
        built=built,
        seconds=time.monotonic() - started,
        details={"packages": str(marker.get("packages", len(lock.records)))},
    )
