"""The Docker test infrastructure itself: a real engine and the local python:X.Y-slim stand-ins.

These behave like Docker Hub's images where envbuild relies on it: ``python``/``python3``/
``pythonX.Y``/``pip`` on PATH from /usr/local, no PEP 668 marker, a working ``venv``, the
stdlib's C modules, usable by a non-root user, and PyPI reachable from a classic-builder build
with host networking once the proxy's CA bundle is copied in.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from tests.integration import docker_images
from tests.integration.docker_images import (
    BASE_IMAGES_SCRIPT,
    DEFAULT_PYTHON_MINORS,
    DOCKER_ENGINE_SCRIPT,
    STANDIN_LABEL,
    add_host_ca,
    build_image,
    remove_image,
    run_in_image,
)

# The helper's session fixtures, made visible to this module.
docker_engine = docker_images.docker_engine
python_slim_images = docker_images.python_slim_images

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.slow]

MINORS = pytest.mark.parametrize("minor", DEFAULT_PYTHON_MINORS)


@MINORS
def test_standin_image_exists_and_is_labelled(python_slim_images, docker_engine, minor):
    tag = python_slim_images[minor]
    assert tag == f"envbuild-test/python:{minor}-slim"  # a test-only name, never Docker Hub's
    image = docker_engine.images.get(tag)
    assert image.labels.get(STANDIN_LABEL) == "1"
    assert image.labels.get(f"{STANDIN_LABEL}.python", "").startswith(f"{minor}.")
    config = image.attrs["Config"]
    path = next(e for e in config["Env"] if e.startswith("PATH="))
    assert path.startswith("PATH=/usr/local/bin:")
    assert config["Cmd"] == ["python3"]


@MINORS
def test_python_on_path_at_expected_version(python_slim_images, minor):
    script = (
        "import shutil, sys; "
        "print(sys.version_info[0], sys.version_info[1], sys.prefix); "
        "print(*[shutil.which(n) for n in ('python', 'python3', 'python%s' % sys.argv[1], 'pip')])"
    )
    out = run_in_image(python_slim_images[minor], ["python", "-c", script, minor])
    first, second = out.strip().splitlines()[-2:]
    major, min_, prefix = first.split()
    assert f"{major}.{min_}" == minor
    assert prefix == "/usr/local"
    assert second.split() == [
        "/usr/local/bin/python",
        "/usr/local/bin/python3",
        f"/usr/local/bin/python{minor}",
        "/usr/local/bin/pip",
    ]


@MINORS
def test_not_externally_managed(python_slim_images, minor):
    tag = python_slim_images[minor]
    out = run_in_image(
        tag,
        [
            "python",
            "-c",
            "import glob, sysconfig; "
            "print(glob.glob(sysconfig.get_path('stdlib') + '/EXTERNALLY-MANAGED')"
            " + glob.glob('/usr/lib/python3*/EXTERNALLY-MANAGED'))",
        ],
    )
    assert out.strip() == "[]"
    # What PEP 668 would refuse: a system-wide pip install (offline; pip is already there).
    out = run_in_image(tag, ["pip", "install", "--no-index", "pip"])
    assert "Requirement already satisfied: pip" in out
    assert "externally-managed" not in out


@MINORS
def test_stdlib_venv_and_shared_libraries(python_slim_images, minor):
    tag = python_slim_images[minor]
    out = run_in_image(
        tag,
        [
            "python",
            "-c",
            "import ssl, sqlite3, ctypes, venv, zlib, bz2, lzma, hashlib, uuid, readline, "
            "decimal, curses, pyexpat; print('ok', ssl.OPENSSL_VERSION)",
        ],
    )
    assert out.startswith("ok OpenSSL 3")
    out = run_in_image(
        tag,
        [
            "sh",
            "-c",
            f"ldd /usr/local/bin/python{minor} /usr/local/lib/python{minor}/lib-dynload/*.so"
            " | grep -c 'not found' || true",
        ],
    )
    assert out.strip() == "0"
    out = run_in_image(
        tag,
        [
            "sh",
            "-c",
            "python -m venv /tmp/v && /tmp/v/bin/python -c 'import sys; print(sys.prefix)'"
            " && /tmp/v/bin/pip --version",
        ],
    )
    assert out.splitlines()[0] == "/tmp/v"
    assert "/tmp/v/lib/" in out


def test_usable_by_a_non_root_user(python_slim_images):
    out = run_in_image(
        python_slim_images["3.11"],
        ["python", "-c", "import ssl, sqlite3, pip; print('ok')"],
        user="1000:1000",
    )
    assert out.strip().splitlines()[-1] == "ok"


@pytest.mark.network
def test_pypi_reachable_from_build_with_host_ca(python_slim_images, tmp_path: Path):
    """The proxy case: HTTPS from inside a build works once the host's CA bundle is copied in
    and SSL_CERT_FILE/PIP_CERT name it; the build needs host networking."""
    ca_lines = add_host_ca(tmp_path)
    dockerfile = (
        f"FROM {python_slim_images['3.11']}\n"
        f"{ca_lines}"
        "ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore\n"
        "RUN pip install six==1.16.0\n"
        'RUN python -c "import urllib.request as u; '
        "print('pypi', u.urlopen('https://pypi.org/simple/six/', timeout=60).status)\"\n"
    )
    tag = f"envbuild-test/ca-check:{uuid.uuid4().hex[:12]}"
    try:
        _, log = build_image(tmp_path, tag, dockerfile=dockerfile)
        assert "Successfully installed six-1.16.0" in log
        assert "pypi 200" in log
        out = run_in_image(tag, ["python", "-c", "import six; print(six.__version__)"])
        assert out.strip() == "1.16.0"
    finally:
        remove_image(tag)


def test_scripts_are_idempotent_when_ready(python_slim_images, docker_engine):
    """A second run builds nothing: the same images (by id), and no build step ran."""
    before = {tag: docker_engine.images.get(tag).id for tag in python_slim_images.values()}
    subprocess.run([str(DOCKER_ENGINE_SCRIPT)], check=True, stdin=subprocess.DEVNULL)
    proc = subprocess.run(
        [str(BASE_IMAGES_SCRIPT), *DEFAULT_PYTHON_MINORS],
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    assert proc.stdout.split() == [python_slim_images[m] for m in DEFAULT_PYTHON_MINORS]
    assert "building" not in proc.stderr
    after = {tag: docker_engine.images.get(tag).id for tag in python_slim_images.values()}
    assert after == before
