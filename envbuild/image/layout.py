"""The layout of envbuild's images, in one place: the Dockerfile template receives these values,
and the code that runs containers of those images (``envs/container.py``) reads them here.
"""

from __future__ import annotations

ENV_DIR = "/opt/env"  # the environment (a venv, or a conda prefix)
PYTHON = f"{ENV_DIR}/bin/python"
ENVBUILD_DIR = "/opt/envbuild"
RUNTIME_DIR = f"{ENVBUILD_DIR}/runtime"  # envbuild's runtime (standard library only)
RUNNER = f"{RUNTIME_DIR}/runner.py"
LOCK_PATH = f"{ENVBUILD_DIR}/pylock.toml"
MODEL_DIR = "/opt/model"
# a model on a shared environment's image: beside the runtime, so that an image that already
# holds a model (an envbuild image registered as a shared environment) keeps it apart
SHARED_MODEL_DIR = f"{ENVBUILD_DIR}/model"
HOME = "/home/envbuild"
UID = 10001  # the non-root user the image runs as (also its group id)
USER = "envbuild"
PORT = 8080
IO_DIR = "/tmp/envbuild-io"  # predict's input and output inside a throwaway container
ROLE_LABEL = "envbuild.role"  # on containers envbuild starts (predict, info, serve)
LABEL_PREFIX = "envbuild"
REUSE_REPOSITORY = "envbuild"  # envbuild/<model>:<lock12>-<model12>, the --kind docker tag


def ping_command(port: int = PORT, python: str = PYTHON) -> list[str]:
    """The health check: slim images have no curl, so Python asks /ping."""
    probe = (
        f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/ping', timeout=4)"
    )
    return [python, "-c", probe]


def template_values() -> dict[str, str]:
    """What the Dockerfile template is given from this module."""
    import json

    return {
        "env_dir": ENV_DIR,
        "python": PYTHON,
        "envbuild_dir": ENVBUILD_DIR,
        "runtime_dir": RUNTIME_DIR,
        "runner": RUNNER,
        "lock_path": LOCK_PATH,
        "model_dir": MODEL_DIR,
        "home": HOME,
        "uid": str(UID),
        "user": USER,
        "port": str(PORT),
        "healthcheck": json.dumps(ping_command()),
        "entrypoint": json.dumps([PYTHON, RUNNER]),
        "cmd": json.dumps(
            ["serve", "--model", MODEL_DIR, "--host", "0.0.0.0", "--port", str(PORT)]
        ),
    }
