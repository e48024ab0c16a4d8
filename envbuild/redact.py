"""The one place credentials are taken out of text before envbuild shows, logs or writes it.

Index URLs (``https://user:token@host/simple``), direct-URL requirements
(``pkg @ https://user:pass@host/x.whl``), tracking-server URIs and uv's or pip's own output can
all carry credentials. Everything that reaches a terminal, a log file, a lock, an image label or a
report passes through :func:`redact`; userinfo becomes ``***``.
"""

from __future__ import annotations

import re

# scheme://userinfo@ — userinfo runs to the last "@" before the host's first "/" (a password
# with an unencoded "@" is still hidden whole)
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]*(?:@[^/\s@]*)*@")


def redact(text: str) -> str:
    """``text`` with the userinfo of every URL in it replaced by ``***``."""
    if "@" not in text:
        return text
    return _USERINFO.sub(r"\g<scheme>***@", text)


def redact_url(value: str) -> str:
    """One URL (or any text) with its credentials hidden: the same rule as :func:`redact`."""
    return redact(value)
