"""Turning uv's failed resolution into one line a user can act on.

uv explains a failure in a paragraph tree; envbuild names the package, the model's ``file:line``
that asked for it (from the requirement origins) and what to do, and keeps uv's full output in
the log. Credentials in URLs are redacted before anything is kept.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from packaging.utils import canonicalize_name

from envbuild.envspec import EnvSpec
from envbuild.errors import ResolutionError
from envbuild.redact import redact
from envbuild.requirements import Requirement
from envbuild.target import Platform

_NETWORK_SIGNS = (
    "Failed to fetch",
    "error sending request",
    "Could not connect",
    "dns error",
    "tcp connect error",
    "Connection refused",
    "operation timed out",
    "Request failed after",
    "failed to lookup address",
    "certificate",
)
_NAME_TOKEN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")


def _paragraphs(stderr: str) -> tuple[str, list[str], list[str]]:
    """uv's stderr -> (first error line, cause lines, hint paragraphs), whitespace collapsed."""
    head = ""
    causes: list[str] = []
    hints: list[str] = []
    current: list[str] | None = None
    for raw in stderr.splitlines():
        line = raw.strip()
        if not line:
            current = None
            continue
        if line.startswith("error:") and not head:
            head = line[len("error:") :].strip()
            current = None
        elif line.startswith("cause:"):
            causes.append(line[len("cause:") :].strip())
            current = causes
        elif line.startswith("hint:"):
            hints.append(line[len("hint:") :].strip())
            current = hints
        elif current is not None and current:
            current[-1] += " " + line
    return head, causes, hints


def _mentioned(text: str, env: EnvSpec) -> list[Requirement]:
    """The model's requirements named in ``text``, in order of first mention."""
    by_name: dict[str, list[Requirement]] = {}
    for req in (*env.requirements, *env.constraints):
        by_name.setdefault(req.name, []).append(req)
    found: list[Requirement] = []
    for token in _NAME_TOKEN.findall(text):
        for req in by_name.pop(canonicalize_name(token), []):
            found.append(req)
    return found


def _direct_requirement(url: str, env: EnvSpec) -> Requirement | None:
    """The model's ``name @ URL`` requirement uv failed to fetch, if the failure was one."""

    def bare(text: str) -> str:  # no userinfo, no fragment, no trailing slash
        return re.sub(r"^([a-z+.-]+://)[^/@]*@", r"\1", text, flags=re.I).split("#")[0].rstrip("/")

    wanted = bare(url)
    for req in env.requirements:
        link = req.parsed.url
        if link and wanted and bare(link) == wanted:
            return req
    return None


def _host(url: str) -> str:
    parts = urlsplit(url)
    if not parts.hostname:
        return url
    return parts.hostname + (f":{parts.port}" if parts.port else "")


def _cut(text: str, limit: int = 400) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text


def explain_failure(
    stderr: str,
    *,
    env: EnvSpec,
    python: str,
    python_from_model: bool = True,
    platform: Platform | None = None,
    as_of: str | None = None,
    offline: bool = False,
    index: str = "https://pypi.org/simple",
    log_path: Path | None = None,
) -> ResolutionError:
    """One line (and a hint) a user can act on, from uv's failed ``pip compile`` output.

    Names the package and, from the requirement origins, the file:line(s) of the model that
    asked for it. Credentials in URLs are redacted before anything is kept.
    """
    stderr = redact(stderr)
    head, causes, hints = _paragraphs(stderr)
    reason = _cut(" ".join(causes) or head or "uv failed without a message")
    where = f" for {platform.name}" if platform is not None else ""
    everything = " ".join([head, *causes, *hints])
    involved = _mentioned(" ".join(causes) or head, env)
    first = involved[0] if involved else None
    location: dict[str, Any] = {"log_path": log_path}
    if first is not None:
        location.update(path=env.model_path / first.origin.file, line=first.origin.line)

    def error(message: str, hint: str | None) -> ResolutionError:
        return ResolutionError(message, hint=hint, **location)

    missing = re.search(r"Because (\S+) was not found in the package registry", everything)
    if missing:
        name = missing.group(1)
        return error(
            f"{first.text if first else name}: no package named {name!r} on {index}{where}",
            "check the name; a private package needs --index-url or --extra-index-url",
        )
    cache_miss = re.search(r"Because (\S+) was not found in the cache", everything)
    if cache_miss or (offline and "network was disabled" in everything):
        name = cache_miss.group(1) if cache_miss else "a package"
        return error(
            f"--offline: {name} is not in uv's cache{where}",
            "run the same lock once with network access (it fills uv's cache), or drop --offline",
        )
    if any(sign in everything for sign in _NETWORK_SIGNS) and "No solution found" not in head:
        url = re.search(r"Failed to fetch:? `?(\S+?)`?(?:\s|$)", everything)
        host = _host(url.group(1) if url else index)
        last = _cut(causes[-1] if causes else head, 160)
        direct = _direct_requirement(url.group(1) if url else "", env)
        if direct is not None:
            return ResolutionError(
                f"{direct.text}: cannot download {host}{where}: {last}",
                path=env.model_path / direct.origin.file,
                line=direct.origin.line,
                hint="check the URL, the network and proxy; a private host needs its "
                "credentials (netrc, or in the URL)",
                log_path=log_path,
            )
        return ResolutionError(
            f"cannot reach the package index {host}{where}: {last}",
            hint="check the network and proxy (HTTPS_PROXY, SSL_CERT_FILE); without network, "
            "--offline resolves from uv's cache when it holds every package",
            log_path=log_path,
        )
    if "exclude-newer" in everything or (as_of and "there is no version of" in everything):
        published = re.search(r"published at (\S+?)\.?(?:\s|$)", everything)
        after = f" (published {published.group(1)[:10]})" if published else ""
        subject = first.text if first else "a requirement"
        return error(
            f"{subject}: no matching release before the as-of date {as_of}{after}{where}",
            "use a later --as-of, or drop --as-of to resolve with today's releases",
        )
    python_sign = re.search(r"depends on Python([<>=!~][^\s,]*)", everything)
    if python_sign or "requested Python version" in everything:
        needs = f" (it needs Python{python_sign.group(1).rstrip('.')})" if python_sign else ""
        subject = first.text if first else "the requirements"
        if python_from_model and env.python is not None:
            hint = (
                f"the model asks for Python {env.python.text} ({env.python.origin}); lock for "
                "another Python with --python X.Y, or relax the pin"
            )
        else:
            hint = "choose another --python, or relax the pin"
        return error(f"{subject} does not support Python {python}{needs}{where}", hint)
    if "No solution found" in head:
        if len(involved) >= 2:
            others = ", ".join(f"{r.text} ({r.origin})" for r in involved[1:])
            message = f"{involved[0].text} conflicts with {others}{where}: {_lower_first(reason)}"
        elif first is not None:
            message = f"{first.text} cannot be installed{where}: {_lower_first(reason)}"
        else:
            message = f"the requirements cannot be resolved{where}: {_lower_first(reason)}"
        uv_hint = _cut(hints[0], 300) if hints else None
        return error(
            message, uv_hint or "relax or remove one of these pins in the model's requirements"
        )
    return error(
        f"uv could not resolve the requirements{where}: {_cut(head or reason, 300)}",
        "see the log for uv's full output",
    )
