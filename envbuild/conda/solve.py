"""Solving a model's conda specs for a target platform with py-rattler: ``CondaSpec`` -> ``CondaLock``.

The solve is for the *target* (``platform`` and its virtual packages, :mod:`.platforms`), against
exactly the chosen channels in strict priority order (a package comes from the first channel that
has it, as conda's ``channel_priority: strict``); CEP-42 channel relations are not followed, so
nothing outside the listed channels is consulted. ``exclude_newer`` (``--as-of``) drops every
package built or indexed after that instant. The highest versions win; the result depends only
on the inputs and the channels' contents, and is written in the lock's canonical form.

Failures are envbuild errors with one line each:

* a spec that cannot be satisfied: :class:`ResolutionError` naming the ``conda.yaml`` line of the
  spec the solver blames and the solver's reason (exit 3);
* a channel that does not exist, cannot be reached or (``offline``) has no cached repodata:
  :class:`ResolutionError` naming the channel (exit 3);
* a spec py-rattler cannot read: :class:`ModelError` naming its line (exit 2).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from envbuild.conda import _rattler
from envbuild.conda.channels import (
    CondaChannel,
    redact_url,
    resolve_channels,
    select_channels,
    strip_credentials,
    to_canonical,
)
from envbuild.conda.lockfile import CondaLock, lock_from_records
from envbuild.conda.platforms import CondaPlatform, VirtualPackage, conda_platform
from envbuild.conda.spec import CondaSpec
from envbuild.envspec import CondaDependency
from envbuild.errors import ResolutionError

_MENTION_END = re.compile(
    r" (cannot be installed|can be installed|would require|would constrain)\b|, (for )?which "
)
_NO_CANDIDATES = re.compile(r"[Nn]o candidates were found for (?P<spec>.+?)\.?$")
_TREE = re.compile(r"^[\s│├└─]+")
_PREAMBLE = "Cannot solve the request because of:"


def solve(
    spec: CondaSpec,
    platform: str | CondaPlatform = "linux-64",
    *,
    channels: Sequence[CondaChannel] | None = None,
    virtual_packages: Sequence[VirtualPackage] | None = None,
    cuda: str | None = None,
    exclude_newer: datetime | None = None,
    offline: bool = False,
    repodata_cache: Path | None = None,
) -> CondaLock:
    """Solve ``spec`` for ``platform`` and return the lock (nothing is written).

    ``channels`` default to the model's (:func:`select_channels` + :func:`resolve_channels`);
    ``virtual_packages`` replace the platform's defaults, ``cuda`` adds ``__cuda``;
    ``offline`` uses cached repodata only; ``repodata_cache`` defaults to rattler's (``$RATTLER_CACHE_DIR/repodata``).
    """
    import rattler
    from rattler.exceptions import GatewayError, SolverError

    target = (
        platform
        if isinstance(platform, CondaPlatform)
        else conda_platform(platform, cuda=cuda, virtual_packages=virtual_packages)
    )
    chosen = (
        tuple(channels)
        if channels is not None
        else resolve_channels(select_channels(spec.channels), path=_conda_file(spec))
    )
    match_specs = spec.match_specs()
    sources = [rattler.Channel(c.fetch_url) for c in chosen]
    fetch_bases = [s.base_url for s in sources]
    gateway = rattler.Gateway(
        cache_dir=repodata_cache or _rattler.repodata_cache_dir(),
        default_config=rattler.SourceConfig(
            cache_action="force-cache-only" if offline else "cache-or-fetch"
        ),
    )
    try:
        records = _rattler.run(
            rattler.solve(
                sources,
                match_specs,
                gateway=gateway,
                platforms=[rattler.Subdir(target.subdir), rattler.Subdir("noarch")],
                virtual_packages=_rattler.virtual_packages(target.virtual_packages),
                exclude_newer=exclude_newer,
                channel_priority=rattler.ChannelPriority.Strict,
                channel_relations="disabled",
                strategy="highest",
            )
        )
    except SolverError as exc:
        raise _unsatisfiable(spec, target, exc) from None
    except GatewayError as exc:
        raise _channel_error(spec, chosen, fetch_bases, exc, offline=offline) from None
    for record in records:
        record.url = to_canonical(record.url, chosen, fetch_bases)
        channel = next((c for c in chosen if record.url.startswith(c.url)), None)
        record.channel = channel.url if channel else record.url.rsplit("/", 2)[0] + "/"
    return lock_from_records(records, target, chosen)


# ---------------------------------------------------------------------------------------------
# errors


def _conda_file(spec: CondaSpec) -> Path | None:
    for dep in spec.dependencies:
        if dep.origin.file.endswith((".yaml", ".yml")):
            return spec.origin_path(dep)
    return None


def _mentions(reason: str) -> list[tuple[str, bool]]:
    """Specs the solver's reason mentions, in order, each with "is it the failing one"."""
    out: list[tuple[str, bool]] = []
    for raw in reason.splitlines():
        line = _TREE.sub("", raw.replace(_PREAMBLE, "")).strip()
        if not line:
            continue
        found = _NO_CANDIDATES.search(line)
        if found:
            out.append((found["spec"].strip(), True))
            continue
        end = _MENTION_END.search(line)
        if end:
            out.append((line[: end.start()].strip(), "cannot" in end.group(0)))
    return out


def blame(spec: CondaSpec, reason: str) -> CondaDependency | None:
    """The dependency of ``spec`` that the solver's ``reason`` names as unsatisfiable, if any."""
    from rattler import MatchSpec

    shown: dict[str, CondaDependency] = {}
    for dep in spec.dependencies:
        try:
            shown.setdefault(str(MatchSpec(dep.spec, strict=False)), dep)
        except Exception:  # match_specs() already refused anything unreadable
            continue
    mentions = _mentions(reason)
    for wanted_failing in (True, False):
        for text, failing in mentions:
            if failing == wanted_failing and text in shown:
                return shown[text]
    for text, _failing in mentions:
        name = text.split()[0].lower() if text.split() else ""
        for dep in spec.dependencies:
            if dep.name.lower() == name:
                return dep
    return None


def _one_line(reason: str) -> str:
    lines = [_TREE.sub("", line).strip() for line in reason.replace(_PREAMBLE, "").splitlines()]
    return " ".join(line for line in lines if line)


def _unsatisfiable(spec: CondaSpec, target: CondaPlatform, exc: Exception) -> ResolutionError:
    reason = str(exc)
    dep = blame(spec, reason)
    why = _one_line(reason)
    hint = "relax or remove that spec, or add a channel that has the package"
    if "__" in why:
        provided = ", ".join(str(v) for v in target.virtual_packages)
        hint = (
            f"the target {target.subdir} provides {provided}; another target (--platform) or "
            "a GPU (--cuda VERSION) may be what the model needs"
        )
    if dep is None:
        return ResolutionError(
            f"the conda packages cannot be solved for {target.subdir}: {why}",
            path=_conda_file(spec),
            field="dependencies",
            hint=hint,
        )
    return ResolutionError(
        f"{dep.spec} cannot be solved for {target.subdir}: {why}",
        path=spec.origin_path(dep) if dep.origin.file != "--python" else None,
        field="dependencies" if dep.origin.file != "--python" else "--python",
        line=dep.origin.line,
        hint=hint,
    )


def _channel_error(
    spec: CondaSpec,
    channels: Sequence[CondaChannel],
    fetch_bases: Sequence[str],
    exc: Exception,
    *,
    offline: bool,
) -> ResolutionError:
    text = str(exc)
    channel = next(
        (
            c
            for c, base in zip(channels, fetch_bases, strict=True)
            if base in text or strip_credentials(base) in text or c.url in text
        ),
        None,
    )
    detail = redact_url(_rattler.first_line(exc))
    if offline and "cache" in text:
        what = "no cached repodata (--offline)"
        hint = "solve once with network access, or drop --offline"
    elif "404" in text or "No such file" in text or "could not find subdir" in text:
        what = "not found"
        hint = "check the channel's name or URL (ENVBUILD_CONDA_CHANNEL_ALIAS sets a mirror)"
    else:
        what = "cannot be reached"
        hint = "check the network, or set ENVBUILD_CONDA_CHANNEL_ALIAS to a reachable mirror"
    if channel is None:
        names = ", ".join(c.name for c in channels)
        return ResolutionError(f"{names}: {what}: {detail}", field="channels", hint=hint)
    from_model = channel.name in spec.channels or (
        channel.name == "defaults" and "defaults" in spec.channels
    )
    return ResolutionError(
        f"channel {channel.name} ({channel.url}): {what}: {detail}",
        path=_conda_file(spec) if from_model else None,
        field="channels" if from_model else "--channel",
        hint=hint,
    )
