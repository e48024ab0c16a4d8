"""A private index behind basic auth, and a find-links folder, as a corporate machine has them:
the installer gets the resolver's credentials (never on a command line, in a lock or a log), and a
lock that installs from local files says so on every command that uses it."""

from __future__ import annotations

import base64
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_cli, write_model

pytestmark = [pytest.mark.integration, pytest.mark.network]

USER, SECRET = "ci-bot", "pa55-w0rd-9183"
STDLIB_LOADER = """\
import six


class Echo:
    def predict(self, model_input, params=None):
        return [len(row) for row in model_input]


def _load_pyfunc(path):
    assert six.PY3
    return Echo()
"""


def model_needing_six(root: Path) -> Path:
    return write_model(
        root,
        {
            "MLmodel": "flavors:\n  python_function:\n    loader_module: echo\n    code: code\n"
            "    python_version: '3.11'\n",
            "requirements.txt": "six==1.16.0\n",
            "code/echo.py": STDLIB_LOADER,
            "serving_input_example.json": json.dumps(
                {"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]]}}
            ),
        },
    )


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """six's wheel, downloaded once from PyPI by pip."""
    folder = tmp_path_factory.mktemp("wheels")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "-q",
            "-d",
            str(folder),
            "--isolated",
            "six==1.16.0",
        ],
        check=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
        | {"PIP_CERT": os.environ.get("PIP_CERT", "")},
    )
    return folder


@pytest.fixture(scope="module")
def private_index(wheels: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PEP 503 index on loopback that answers only with the right basic-auth credentials."""
    root = tmp_path_factory.mktemp("index")
    (root / "simple" / "six").mkdir(parents=True)
    (root / "files").mkdir()
    links = []
    for wheel in wheels.iterdir():
        shutil.copy(wheel, root / "files" / wheel.name)
        import hashlib

        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        links.append(f'<a href="/files/{wheel.name}#sha256={digest}">{wheel.name}</a>')
    (root / "simple" / "six" / "index.html").write_text(
        "<html><body>" + "".join(links) + "</body></html>"
    )
    expected = "Basic " + base64.b64encode(f"{USER}:{SECRET}".encode()).decode()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self) -> None:
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="private"')
                self.end_headers()
                return
            super().do_GET()

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple"
    finally:
        server.shutdown()


def env_for(tmp: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_INDEX", "UV_EXTRA"))
    }
    return env | {"PIP_CONFIG_FILE": os.devnull, "ENVBUILD_CACHE_DIR": str(tmp / "cache")} | extra


def test_credentialed_pip_index_reaches_the_installer_and_nothing_else(
    private_index: str, tmp_path: Path
) -> None:
    host = private_index.split("//", 1)[1]
    env = env_for(tmp_path, PIP_INDEX_URL=f"http://{USER}:{SECRET}@{host}", UV_NO_CACHE="1")
    model = model_needing_six(tmp_path / "m")
    outputs = []
    for argv in (["lock", str(model)], ["predict", str(model)], ["env", str(model), "--json"]):
        proc = run_cli(*argv, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        outputs.append(proc.stdout + proc.stderr)
    assert json.loads(outputs[1].splitlines()[0]) == {"predictions": [2]}
    lock = (model / "pylock.toml").read_text()
    assert "***@" in lock or host in lock
    leaks = [
        p
        for p in (tmp_path / "cache").rglob("*")
        if p.is_file() and SECRET.encode() in p.read_bytes()
    ]
    assert SECRET not in "".join(outputs) + lock and leaks == []


def local_wheel(folder: Path, name: str = "envbuild_localonly", version: str = "0.1") -> Path:
    """A pure-Python wheel that no index has (as a corporate build leaves in a find-links folder)."""
    import zipfile

    folder.mkdir(parents=True, exist_ok=True)
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": "VALUE = 42\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{dist}/RECORD"] = "".join(f"{n},,\n" for n in files) + f"{dist}/RECORD,,\n"
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in files.items():
            archive.writestr(member, text)
    return path


def test_a_lock_from_local_files_says_so_wherever_it_is_used(tmp_path: Path) -> None:
    links = tmp_path / "links"
    local_wheel(links)
    env = env_for(tmp_path, PIP_FIND_LINKS=str(links))
    model = model_needing_six(tmp_path / "m")
    (model / "requirements.txt").write_text("six==1.16.0\nenvbuild-localonly==0.1\n")
    for argv in (["lock", str(model)], ["env", str(model)], ["predict", str(model)]):
        proc = run_cli(*argv, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "the lock refers to local files for envbuild-localonly" in proc.stderr, (
            argv,
            proc.stderr,
        )
        assert "PIP_FIND_LINKS" in proc.stderr
