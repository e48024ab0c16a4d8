"""What is installed in an environment, asked of the environment's own interpreter.

Two questions, both answered inside the environment (its packages are never imported into
envbuild's process): the runner's ``info`` (Python, marker values, platform, distributions), and
every distribution's ``Requires-Dist`` (for the conflict rows of a verdict, as ``pip check``
finds them), which ``info`` does not report. The second is a one-line standard-library program
(Python 3.8+) given with ``-c``: short enough to read here, and it needs nothing copied in.
Both run with ``-B``/``PYTHONDONTWRITEBYTECODE`` and without user site-packages, so a registered
environment is not changed by being looked at (no ``.pyc`` written into it).

An image's interpreter is asked in throwaway containers without network: the runtime folder is
copied into the container (``/tmp/envbuild-probe``) before it starts, so any image with a Python
3.8+ can be registered, not only envbuild's.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from envbuild import proc
from envbuild.envs.process import ProcessEnvironment
from envbuild.errors import EnvbuildError
from envbuild.shared.record import Distribution, Installed

# name -> [version, [Requires-Dist...]] for every distribution on sys.path, first one wins
REQUIRES_PROBE = (
    "import json,sys;from importlib import metadata as m;o={};"
    "[o.setdefault(d.metadata.get('Name'),[d.version,list(d.requires or [])]) "
    "for d in m.distributions() if d.metadata.get('Name')];"
    "json.dump(o,sys.stdout)"
)
PROBE_DIR = "/tmp/envbuild-probe"
_PYTHONS = ("python3", "python")  # tried in this order in an image, on its PATH


def installed_from(info: Mapping[str, Any], requires: Mapping[str, Any]) -> Installed:
    """The runner's ``info`` and the probe's answer as one :class:`Installed`."""
    from packaging.utils import canonicalize_name

    reqs = {
        canonicalize_name(str(name)): tuple(map(str, value[1]))
        for name, value in requires.items()
        if isinstance(value, list) and len(value) == 2
    }
    dists: dict[str, Distribution] = {}
    for name, version in dict(info.get("distributions") or {}).items():
        key = canonicalize_name(str(name))
        dists[key] = Distribution(str(name), str(version), reqs.get(key, ()))
    return Installed(
        python_version=str(info.get("python_version", "")),
        implementation=str(info.get("python_implementation", "")),
        executable=str(info.get("executable", "")),
        platform=str(info.get("platform", "")),
        markers={str(k): str(v) for k, v in dict(info.get("markers") or {}).items()},
        distributions=dists,
    )


def _json(text: str | bytes, what: str, error: type[EnvbuildError]) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        raise error(f"{what}: the environment's answer is not JSON") from None
    if not isinstance(data, dict):
        raise error(f"{what}: the environment's answer is not a JSON object")
    return data


def probe_process(environment: ProcessEnvironment, error: type[EnvbuildError]) -> Installed:
    """Ask the interpreter of a prefix (a venv envbuild built, or a registered one)."""
    info = environment.info()
    done = proc.run(
        [str(environment.python), "-B", "-s", "-c", REQUIRES_PROBE],
        what="listing the environment's Requires-Dist",
        error=error,
        env=environment.run_env(),
    )
    return installed_from(info, _json(done.stdout, "Requires-Dist", error))


def _runtime_archive() -> bytes:
    from envbuild.runtime_files import runtime_files

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        folder = tarfile.TarInfo(Path(PROBE_DIR).name)
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(folder)
        for name, path in runtime_files():
            data = path.read_bytes()
            member = tarfile.TarInfo(f"{Path(PROBE_DIR).name}/{name}")
            member.size, member.mode = len(data), 0o644
            tar.addfile(member, io.BytesIO(data))
    return buffer.getvalue()


def _run_in_image(
    image: str, argv: Sequence[str], error: type[EnvbuildError], *, runtime: bool = False
) -> tuple[int, bytes, bytes]:
    """``argv`` in a throwaway container of ``image`` (no network, the image's own user), the
    runtime copied in first when asked; (exit code, stdout, stderr)."""
    import docker

    from envbuild.image import layout
    from envbuild.image.engine import client

    engine = client()
    try:
        container = engine.containers.create(
            image,
            list(argv),
            entrypoint=[],
            network_mode="none",
            labels={layout.ROLE_LABEL: "probe"},
            environment={"PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1"},
        )
    except docker.errors.ImageNotFound:
        raise error(f"the image {image} does not exist on this Docker engine") from None
    try:
        if runtime:
            container.put_archive(str(Path(PROBE_DIR).parent), _runtime_archive())
        container.start()
        code = int(container.wait().get("StatusCode", 1))
        return (
            code,
            container.logs(stdout=True, stderr=False),
            container.logs(stdout=False, stderr=True),
        )
    except docker.errors.APIError as exc:  # no such executable, no /tmp ...
        message = exc.explanation if isinstance(exc.explanation, str) else str(exc)
        return 127, b"", message.encode()
    finally:
        container.remove(force=True)


def probe_image(image: str, error: type[EnvbuildError]) -> Installed:
    """Ask the Python on the image's PATH (``python3``, else ``python``)."""
    tried = []
    for python in _PYTHONS:
        code, out, err = _run_in_image(
            image, [python, "-B", "-s", f"{PROBE_DIR}/runner.py", "info"], error, runtime=True
        )
        if code == 0:
            info = _json(out, "the runner's info", error)
            break
        tail = " ".join(err.decode(errors="replace").split())[-200:]
        tried.append(f"{python}: exit {code}: {tail}")
    else:
        raise error(
            f"the image {image} has no working Python 3.8+ on its PATH ({'; '.join(tried)})",
            hint="register an image whose `python3` or `python` is the environment's interpreter",
        )
    executable = str(info.get("executable") or python)
    code, out, err = _run_in_image(image, [executable, "-B", "-s", "-c", REQUIRES_PROBE], error)
    if code != 0:
        raise error(
            f"listing Requires-Dist in {image} failed (exit {code}): "
            + " ".join(err.decode(errors="replace").split())[-200:]
        )
    return installed_from(info, _json(out, "Requires-Dist", error))
