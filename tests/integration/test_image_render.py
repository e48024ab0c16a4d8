"""What `envbuild image` decides without an engine: the rendered Dockerfile, the model digest and
the model's files (fast; no Docker, no network). The image tests (test_image.py) build them."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from envbuild.errors import BuildError, ModelError, UsageError
from envbuild.image import model_digest, model_files, parse_labels
from envbuild.image.dockerfile import (
    DockerfileInputs,
    label_instruction,
    quote,
    render_dockerfile,
)
from envbuild.templates import render, templates_dir

pytestmark = [pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]


def inputs(**changes) -> DockerfileInputs:
    values = {
        "base_image": "python:3.11-slim",
        "python_minor": "3.11",
        "model_name": "iris",
        "envbuild_version": "0.1.0",
        "uv_version": "0.13.9",
        "uv_binary": True,
        "ca_cert": True,
        "build_arg_names": ("UV_INDEX_URL",),
        "labels": {"envbuild.lock.digest": "sha256:abc"},
    }
    values.update(changes)
    return DockerfileInputs(**values)


def stages(text: str) -> tuple[str, str]:
    _, build, final = re.split(r"^FROM python:3\.11-slim(?: AS build)?$", text, flags=re.M)
    return build, final


def test_templates_are_found_in_the_checkout():
    assert templates_dir() == REPO / "templates"


def test_build_only_inputs_are_in_the_build_stage_only():
    build, final = stages(render_dockerfile(inputs()))
    assert "COPY build/ca.pem" in build and "SSL_CERT_FILE" in build
    assert "ARG UV_INDEX_URL" in build and "COPY build/uv" in build
    assert "uv pip sync --preview-features pylock --require-hashes --compile-bytecode" in build
    assert "model/" not in build.replace("# ", "")  # the model never enters the build stage
    for word in (" build/", "SSL_CERT_FILE", "ARG ", "UV_INDEX_URL"):
        assert word not in final.replace("COPY --from=build", ""), word
    copies = re.findall(r"^COPY .*$", final, flags=re.M)
    assert copies == [
        "COPY --from=build /opt/env /opt/env",
        "COPY pylock.toml /opt/envbuild/pylock.toml",
        "COPY runtime/ /opt/envbuild/runtime/",
        "COPY model/ /opt/model/",
    ]
    assert final.rstrip().splitlines()[-1] == 'LABEL "envbuild.lock.digest"="sha256:abc"'


def test_without_ca_and_without_uv_binary():
    text = render_dockerfile(inputs(ca_cert=False, uv_binary=False, build_arg_names=()))
    assert "ca.pem" not in text and "SSL_CERT_FILE" not in text and "ARG " not in text
    assert 'RUN python -m pip install --quiet "uv==0.13.9"' in text
    assert "COPY build/uv" not in text


def test_template_language_is_strict():
    assert render("a\n{% if x %}\nb\n{% else %}\nc\n{% endif %}\n{{ y }}", {"x": "", "y": "d"}) == (
        "a\nc\nd\n"
    )
    with pytest.raises(BuildError, match="no value"):
        render("{{ nope }}", {})
    with pytest.raises(BuildError, match="not closed"):
        render("{% if x %}\n", {"x": True})
    with pytest.raises(BuildError, match="unknown condition"):
        render("{% if x %}\n{% endif %}", {})
    with pytest.raises(UsageError, match="one line"):
        render_dockerfile(inputs(base_image="python:3.11-slim\nRUN evil"))


def test_label_quoting_and_validation():
    assert quote('say "hi" $HOME \\') == '"say \\"hi\\" \\$HOME \\\\"'
    with pytest.raises(UsageError):
        quote("two\nlines")
    with pytest.raises(UsageError, match="invalid label key"):
        label_instruction({"bad key": "x"})
    assert parse_labels(["team=ml", "note=a=b"]) == {"team": "ml", "note": "a=b"}
    with pytest.raises(UsageError):
        parse_labels(["novalue"])


def test_model_digest_counts_contents_and_modes_not_times(tmp_path):
    model = tmp_path / "m"
    (model / "data").mkdir(parents=True)
    (model / "MLmodel").write_text("flavors: {}\n")
    (model / "data" / "w.bin").write_bytes(b"\x00")
    first = model_digest(model)
    os.utime(model / "MLmodel", (1, 1))
    assert model_digest(model) == first
    os.chmod(model / "data" / "w.bin", 0o755)
    assert model_digest(model) != first
    os.chmod(model / "data" / "w.bin", 0o644)
    (model / "data" / "w.bin").write_bytes(b"\x01")
    assert model_digest(model) != first


def test_model_files_follow_inner_links_and_refuse_outer_ones(tmp_path):
    model = tmp_path / "m"
    (model / "data").mkdir(parents=True)
    (model / "data" / "w.bin").write_bytes(b"\x00")
    (model / "alias.bin").symlink_to("data/w.bin")
    (model / "data" / "loop").symlink_to("..")
    names = [name for name, _, _ in model_files(model)]
    assert names == ["alias.bin", "data/w.bin"]
    (model / "leak").symlink_to(tmp_path)
    with pytest.raises(ModelError, match="outside the model folder"):
        list(model_files(model))


def test_a_conda_prefix_comes_from_the_context_on_a_base_without_python():
    text = render_dockerfile(
        inputs(base_image="debian:bookworm-slim", base_lock_name="pixi.lock", pip_packages=True)
    )
    _, build, final = re.split(r"^FROM debian:bookworm-slim(?: AS build)?$", text, flags=re.M)
    assert "RUN python -c" not in build  # the base's own Python is neither needed nor checked
    assert "uv venv" not in build and "uv pip sync" not in build
    steps = [line for line in build.splitlines() if line.startswith(("COPY", "RUN"))]
    prefix = steps.index("COPY env/ /opt/env/")
    assert steps[prefix + 1].startswith("RUN /opt/env/bin/python -m compileall")
    assert steps[prefix + 2] == "COPY pylock.toml /opt/envbuild-build/pylock.toml"
    assert steps[prefix + 3].startswith("RUN uv pip install --preview-features pylock")
    assert "CONDA_PREFIX=/opt/env" in final and "VIRTUAL_ENV" not in final
    copies = re.findall(r"^COPY .*$", final, flags=re.M)
    assert copies[-4:] == [
        "COPY pylock.toml /opt/envbuild/pylock.toml",
        "COPY pixi.lock /opt/envbuild/pixi.lock",
        "COPY runtime/ /opt/envbuild/runtime/",
        "COPY model/ /opt/model/",  # still the last layer
    ]
    assert re.search(r"^USER 10001:10001$", final, flags=re.M)
    empty = render_dockerfile(inputs(base_lock_name="pixi.lock", pip_packages=False))
    assert "uv pip install" not in empty  # nothing to install on top of conda's packages
