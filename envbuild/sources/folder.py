"""The local source: a model folder (or MLmodel file) on this machine, used in place.

Nothing is copied: the folder is the user's, so it stays writable (``lock`` may write its
``pylock.toml`` there, ``capture --write`` may rewrite its files) and its provenance is only the
path as given. It is checked by :func:`envbuild.model.load_model`, exactly as before sources
existed, so a folder's errors and messages are unchanged. The one exception: a folder inside
envbuild's model cache (a download, named by the path envbuild's messages show) stays read-only.
"""

from __future__ import annotations

from envbuild.sources.refs import FolderRef, shown
from envbuild.sources.source import Provenance, Source


def open_folder(ref: FolderRef) -> Source:
    """A plain path or a ``file:`` URI -> a writable :class:`Source` at that path."""
    from envbuild.sources.model_cache import entry_holding

    entry = entry_holding(ref.path)
    return Source(
        path=ref.path,
        provenance=Provenance(uri=shown(ref.text), kind="folder"),
        read_only=entry is not None,
        cache_entry=entry,
    )
