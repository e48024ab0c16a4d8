"""``envbuild image --offline``: the lock's packages installed on envbuild's machine, from uv's
cache and the lock's local files only, then copied into the build stage, which needs no network.

uv keeps unpacked wheels in its cache, not the wheel files a build could install from again, so an
offline image cannot download them in its build stage, and cannot be given them either; what it
can be given is the installed result. uv installs the locked packages for the image's platform and
Python (``--target``, ``--python-platform``, ``--python-version``; hashes required, as in the build
stage) into the context's ``build/site/``; the build stage copies that into its environment's
``site-packages`` and compiles the bytecode there. Console scripts of the packages are not
installed (the image runs the runner by path). Installing by name through the index when the lock
comes from indexes only, as ``envbuild env`` does, finds what ``env`` already cached.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from envbuild import proc
from envbuild.errors import BuildError
from envbuild.files import temporary_directory
from envbuild.lock.pylock import PYLOCK_NAME

if TYPE_CHECKING:
    from envbuild.image.plan import ImagePlan

SITE_DIR = "site"  # in the context's build/ folder


def stage_packages(plan: ImagePlan, folder: Path) -> Path:
    """Install ``plan``'s lock into ``folder`` (new) for the image, offline; returns it."""
    from envbuild.uv_install import install_env

    lk = plan.lock
    uv = proc.uv_bin()
    with temporary_directory("prestage") as tmp:
        target = ["--target", str(folder), "--python-platform", plan.platform.uv_platform]
        target += ["--python-version", lk.python, "--python", sys.executable, "--offline"]
        if lk.from_indexes_only:
            reqs = tmp / "requirements.txt"
            reqs.write_text(lk.requirements_txt(), encoding="utf-8")
            args = [uv, "pip", "install", *target, "--no-deps", "--require-hashes", "--no-config"]
            args += ["--index-strategy", "unsafe-best-match", "-r", str(reqs)]
        else:
            (tmp / PYLOCK_NAME).write_text(lk.text, encoding="utf-8")
            args = [uv, "pip", "sync", *target, "--require-hashes", "--preview-features", "pylock"]
            args.append(str(tmp / PYLOCK_NAME))
        proc.run(
            args,
            what=f"installing the locked packages offline for {plan.platform.name}",
            error=BuildError,
            env=install_env(lk),
            hint="an --offline image installs from uv's cache and the lock's local files: build "
            "the environment once with network (envbuild env, or the image without --offline)",
        )
    return folder
