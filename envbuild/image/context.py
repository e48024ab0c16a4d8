"""The build context of an image: the model's files (and their digest), the Dockerfile, the lock
and the runtime, laid out in a folder of its own (no ``.dockerignore`` needed).

Files get mode 0644/0755 whatever their mode on disk (the image's non-root user must read them);
symlinks inside the model folder are copied as the files they point to, symlinks leaving it are
refused: a model is untrusted input and must not pull a file of this machine into an image.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from envbuild.__about__ import __version__
from envbuild.errors import ModelError, UsageError
from envbuild.image import layout
from envbuild.image.local_sources import FILES_DIR
from envbuild.lock.pylock import PYLOCK_NAME
from envbuild.runtime_files import runtime_files

if TYPE_CHECKING:
    from envbuild.image.plan import ImagePlan


def model_files(root: Path) -> Iterator[tuple[str, Path, bool]]:
    """``(relative posix path, real file, executable)`` for every file of the model, sorted.

    Symlinks are followed when they stay inside the folder (the image gets the file they point
    to) and refused when they leave it: a model is untrusted input and must not pull a file of
    this machine into an image.
    """
    root_real = Path(os.path.realpath(root))
    found: list[tuple[str, Path, bool]] = []
    seen_dirs: set[str] = set()

    def inside(target: Path) -> bool:
        return target == root_real or root_real in target.parents

    def walk(folder: Path, rel: str) -> None:
        real = os.path.realpath(folder)
        if real in seen_dirs:
            return  # a symlink loop inside the model
        seen_dirs.add(real)
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            path = Path(entry.path)
            name = f"{rel}{entry.name}"
            target = Path(os.path.realpath(path))
            if entry.is_symlink() and not inside(target):
                raise ModelError(
                    f"symlink {name} points outside the model folder ({target})",
                    path=root,
                    hint="copy the file into the model folder instead of linking to it",
                )
            if entry.is_symlink() and not target.exists():
                raise ModelError(f"symlink {name} is dangling", path=root)
            if target.is_dir():
                if entry.name == "__pycache__":
                    # bytecode Python wrote when the model's code ran (also in a downloaded,
                    # read-only copy): not the model; MLflow leaves it out when logging code too
                    continue
                walk(path, f"{name}/")
            elif target.is_file():
                mode = target.stat().st_mode
                found.append((name, target, bool(mode & stat.S_IXUSR)))
            # sockets, fifos and devices are not model files: skipped

    walk(root, "")
    yield from found


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_digest(root: Path) -> str:
    """``sha256:`` over the model's files (paths, executable bits, contents): the model's identity
    in an image. Modification times and owners do not count."""
    digest = hashlib.sha256()
    for rel, real, executable in model_files(root):
        digest.update(f"{rel}\0{int(executable)}\0{_file_sha256(real)}\n".encode())
    return "sha256:" + digest.hexdigest()


def dockerfile_text(plan: ImagePlan) -> str:
    from envbuild.image.dockerfile import DockerfileInputs, render_dockerfile

    return render_dockerfile(
        DockerfileInputs(
            base_image=plan.base_image,
            python_minor=plan.python_minor,
            model_name=plan.model.path.name,
            envbuild_version=__version__,
            uv_version=plan.uv_version,
            uv_binary=plan.uv_binary is not None,
            ca_cert=plan.ca_cert is not None,
            network=plan.network,
            build_arg_names=tuple(sorted(plan.build_args)),
            labels=plan.labels,
            local_files=bool(plan.local_files) and not plan.prestaged,
            prestaged=plan.prestaged,
            python_install=plan.python_install,
            python_version=plan.lock.python,
            device=plan.gpu.device if plan.gpu else "cpu",
            cuda=(plan.gpu.cuda if plan.gpu else None) or "",
            base_lock_name=plan.base.lock_file[0] if plan.base is not None else None,
            pip_packages=bool(plan.lock.packages),
        )
    )


def _copy(source: Path, target: Path, executable: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    os.chmod(target, 0o755 if executable else 0o644)


def _readable(root: Path) -> None:
    """Every file of an installed prefix readable (and folders enterable) by the image's user,
    whatever the umask it was installed with; executable bits kept."""
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        wanted = mode | (0o555 if path.is_dir() else 0o444)
        if wanted != mode:
            os.chmod(path, stat.S_IMODE(wanted))


def write_context(
    plan: ImagePlan, folder: Path, *, on_progress: Callable[[str], None] | None = None
) -> Path:
    """Write the complete build context into ``folder`` (absent or empty); returns it.

    With a base lock (conda), its environment is installed into ``env/`` for the image's
    ``/opt/env`` (see ``plan.py``), and its lock file written beside ``pylock.toml``."""
    folder = Path(folder)
    model_root = Path(os.path.realpath(plan.model.path))
    if model_root in (Path(os.path.realpath(folder)), *Path(os.path.realpath(folder)).parents):
        raise UsageError(
            "the context folder is inside the model folder",
            path=folder,
            field="--context",
            hint="write the context somewhere else: it holds a copy of the model",
        )
    if folder.exists() and any(folder.iterdir()):
        raise UsageError(
            "the context folder is not empty",
            path=folder,
            field="--context",
            hint="give a new or empty folder",
        )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Dockerfile").write_text(dockerfile_text(plan), encoding="utf-8")
    (folder / PYLOCK_NAME).write_text(plan.lock.text, encoding="utf-8")
    if plan.base is not None:
        name, text = plan.base.lock_file
        (folder / name).write_text(text, encoding="utf-8")
        os.chmod(folder / name, 0o644)
        if on_progress:
            on_progress(f"installing the {plan.base.name} packages for {layout.ENV_DIR}")
        plan.base.install_for(
            folder / "env", layout.ENV_DIR, offline=plan.offline, on_progress=on_progress
        )
        _readable(folder / "env")
    for name, path in runtime_files():
        _copy(path, folder / "runtime" / name, False)
    (folder / "model").mkdir()
    for rel, real, executable in model_files(plan.model.path):
        _copy(real, folder / "model" / rel, executable)
    build = folder / "build"
    build.mkdir()
    if plan.uv_binary is not None:
        _copy(plan.uv_binary, build / "uv", True)
    if plan.ca_cert is not None:
        _copy(plan.ca_cert, build / "ca.pem", False)
    if plan.prestaged:  # --offline: installed here from uv's cache, copied into the build stage
        from envbuild.image.prestage import SITE_DIR, stage_packages

        stage_packages(plan, build / SITE_DIR)
    elif plan.install_lock is not None:  # local files: installed from build/files, build only
        (build / PYLOCK_NAME).write_text(plan.install_lock, encoding="utf-8")
        os.chmod(build / PYLOCK_NAME, 0o644)
        for item in plan.local_files:
            _copy(item.source, build / FILES_DIR / item.name, False)
    for path in (folder / "Dockerfile", folder / PYLOCK_NAME):
        os.chmod(path, 0o644)
    for path in [folder, *folder.rglob("*")]:  # whatever the umask: COPY keeps these modes
        if path.is_dir() and not path.is_symlink():
            os.chmod(path, 0o755)
    return folder
