"""``--as-of``: the moment a resolution may not look past, as an RFC 3339 UTC string.

A date means midnight UTC at its start (uv's ``--exclude-newer`` semantics, made independent of
the local time zone so that the same command gives the same lock everywhere); ``model`` means the
moment the model was logged (``utc_time_created`` in MLmodel).
"""

from __future__ import annotations

import os
import re
from datetime import date, datetime, time, timezone

from envbuild.errors import ModelError, UsageError
from envbuild.model import ModelSpec

UTC = timezone.utc


def parse_as_of(value: str | date | datetime | None, model: ModelSpec | None = None) -> str | None:
    """``model`` / ``YYYY-MM-DD`` / an RFC 3339 time -> RFC 3339 UTC string (seconds), or None.

    A date means midnight UTC at its start (uv's ``--exclude-newer`` semantics, made independent
    of the local time zone so that the same command gives the same lock everywhere). ``model``
    uses ``utc_time_created`` from MLmodel: the releases that existed when the model was logged.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    elif isinstance(value, date):
        moment = datetime.combine(value, time(0), tzinfo=UTC)
    else:
        text = value.strip()
        if text.lower() == "model":
            created = model.utc_time_created if model is not None else None
            if not created:
                raise ModelError(
                    "--as-of model: MLmodel has no utc_time_created",
                    path=model.mlmodel_path if model is not None else None,
                    field="utc_time_created",
                    hint="pass the date the model was logged: --as-of YYYY-MM-DD",
                )
            moment = _parse_moment(created, field_name="utc_time_created", model=model)
        else:
            moment = _parse_moment(text, field_name="--as-of", model=None)
    moment = moment.astimezone(UTC).replace(microsecond=0)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_moment(text: str, *, field_name: str, model: ModelSpec | None) -> datetime:
    raw = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
            return datetime.combine(date.fromisoformat(raw), time(0), tzinfo=UTC)
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        if model is not None:
            raise ModelError(
                f"not a date and time: {raw!r}", path=model.mlmodel_path, field=field_name
            ) from None
        raise UsageError(
            f"invalid date {raw!r}",
            field=field_name,
            hint="write YYYY-MM-DD, an RFC 3339 time (2024-05-01T12:00:00Z), or 'model'",
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def as_of_from_settings() -> str | None:
    """uv's own ``UV_EXCLUDE_NEWER``, honoured like ``--as-of`` (and recorded in the lock)."""
    value = os.environ.get("UV_EXCLUDE_NEWER")
    return parse_as_of(value) if value else None
