"""The model folder as an archive of its own, for Spark to ship beside the environment's.

Apart from the environment because they change at different rates: many models (and every
retraining of one) share one locked environment of hundreds of megabytes, while a model is
usually small. Same rules as an image's model layer (``image.context.model_files``): symlinks
inside the folder are followed, symlinks leaving it are refused. Cached by the model's digest.
"""

from __future__ import annotations

from pathlib import Path

from envbuild.pack.archive import write_files_archive


def model_archive(root: Path) -> tuple[Path, str]:
    """``(archive, model digest)``: the model folder as a reproducible ``.tar.gz`` in the cache."""
    from envbuild.cache import publish
    from envbuild.image.context import model_digest, model_files

    digest = model_digest(root)
    key = "model-" + digest.removeprefix("sha256:")[:32]

    def build(tmp: Path) -> dict[str, str]:
        write_files_archive(list(model_files(root)), tmp / "model.tar.gz")
        return {"reference": str(root), "digest": digest}

    entry, _ = publish("packs", key, build)
    from envbuild.cache.usage import record_user

    record_user(entry, str(root))
    return entry / "model.tar.gz", digest
