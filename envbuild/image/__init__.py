"""Docker images of a model: a small, layered, non-root image that serves it (``envbuild image``),
and the image the ``docker`` kind runs the model in.

* ``plan.py``: everything one build depends on (lock, base, tag, labels, build-only inputs);
* ``context.py``: the build context (the model's files and digest, the Dockerfile, the lock,
  the runtime); ``dockerfile.py``: the Dockerfile from ``templates/Dockerfile.tmpl``;
* ``layout.py``: the image layout (paths, user, port, health check) in one place;
* ``engine.py``: the Docker engine client and build log; ``build.py``: build or reuse.
"""

from __future__ import annotations

from envbuild.image.build import ImageResult, build_image, ensure_image
from envbuild.image.context import model_digest, model_files, write_context
from envbuild.image.plan import (
    ImageOptions,
    ImagePlan,
    image_target,
    parse_labels,
    plan_image,
    uv_version,
)

__all__ = [
    "ImageOptions",
    "ImagePlan",
    "ImageResult",
    "build_image",
    "ensure_image",
    "image_target",
    "model_digest",
    "model_files",
    "parse_labels",
    "plan_image",
    "uv_version",
    "write_context",
]
