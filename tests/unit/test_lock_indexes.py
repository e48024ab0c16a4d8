"""Index settings: pip's and uv's configuration, the command line, the model's (only if trusted)."""

from __future__ import annotations

from pathlib import Path

from envbuild.indexes import configure
from envbuild.requirements import IndexOption, Origin


def isolated(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment whose pip/uv configuration lives only in ``tmp_path``."""
    env = {
        "HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "home" / ".config"),
        "XDG_CONFIG_DIRS": str(tmp_path / "etc"),
        "PIP_CONFIG_FILE": str(tmp_path / "none.conf"),
    }
    env.update(extra)
    return env


def test_nothing_configured_means_pypi(tmp_path: Path) -> None:
    config = configure(environ={"PIP_CONFIG_FILE": "/dev/null", "UV_CONFIG_FILE": "/nonexistent"})
    assert config.index_url is None
    assert config.record() == {"index-url": "https://pypi.org/simple"}
    assert "UV_INDEX_URL" not in config.child_env({})


def test_pip_config_file_and_variables(tmp_path: Path) -> None:
    conf = tmp_path / "pip.conf"
    conf.write_text(
        "[global]\nindex-url = https://mirror.example.org/simple\n"
        "extra-index-url = https://a.example.org/simple\n  https://b.example.org/simple\n"
        "find-links = /opt/wheels\n"
    )
    env = isolated(tmp_path, PIP_CONFIG_FILE=str(conf))
    config = configure(environ=env)
    assert config.index_url is not None and config.index_url.source == str(conf)
    assert [s.value for s in config.extra_index_urls] == [
        "https://a.example.org/simple",
        "https://b.example.org/simple",
    ]
    assert config.record()["find-links"] == ["/opt/wheels"]
    assert [s.value for s in config.local()] == ["/opt/wheels"]
    # pip's semantics for pip's indexes: the best version on any of them, as pip would pick
    assert config.record()["index-strategy"] == "unsafe-best-match"
    assert config.child_env({})["UV_INDEX_STRATEGY"] == "unsafe-best-match"
    assert configure(environ={**env, "UV_INDEX_STRATEGY": "first-index"}).index_strategy is None
    assert "PIP_CONFIG_FILE=/dev/null" in config.local_advice()
    # a PIP_* variable overrides the same option of the files, as in pip
    env["PIP_EXTRA_INDEX_URL"] = "https://c.example.org/simple"
    assert [s.value for s in configure(environ=env).extra_index_urls] == [
        "https://c.example.org/simple"
    ]
    # and PIP_CONFIG_FILE=/dev/null turns every file off, as in pip
    env = isolated(tmp_path, PIP_CONFIG_FILE="/dev/null")
    (tmp_path / "etc" / "pip").mkdir(parents=True)
    (tmp_path / "etc" / "pip" / "pip.conf").write_text("[global]\nindex-url = https://x/simple\n")
    assert configure(environ=env).index_url is None


def test_user_pip_conf_is_read(tmp_path: Path) -> None:
    user = tmp_path / "home" / ".config" / "pip"
    user.mkdir(parents=True)
    (user / "pip.conf").write_text("[install]\nindex_url = https://user.example.org/simple\n")
    config = configure(environ=isolated(tmp_path))
    assert config.index_url is not None
    assert config.index_url.value == "https://user.example.org/simple"


def test_precedence_and_credentials(tmp_path: Path) -> None:
    env = isolated(
        tmp_path,
        PIP_INDEX_URL="https://pip.example.org/simple",
        UV_INDEX_URL="https://uv.example.org/simple",
        UV_EXTRA_INDEX_URL="https://uv-extra.example.org/simple",
    )
    config = configure(environ=env)
    assert config.index_url is not None and config.index_url.source == "UV_INDEX_URL"
    config = configure(index_url="https://me:s3cret@cli.example.org/simple", environ=env)
    assert config.index_url is not None and config.index_url.source == "command line"
    child = config.child_env({"UV_DEFAULT_INDEX": "https://stale/simple", "PATH": "/bin"})
    assert child["UV_INDEX_URL"] == "https://me:s3cret@cli.example.org/simple"  # uv needs them
    assert child["UV_EXTRA_INDEX_URL"] == "https://uv-extra.example.org/simple"
    assert "UV_DEFAULT_INDEX" not in child and child["PATH"] == "/bin"
    assert config.index_strategy is None  # uv's and envbuild's own settings keep uv's default
    recorded = config.record()
    assert recorded["index-url"] == "https://***@cli.example.org/simple"
    assert "s3cret" not in repr(recorded) and "s3cret" not in str(config.index_url)


def test_uv_toml_default_index_beats_pip(tmp_path: Path) -> None:
    uv_toml = tmp_path / "uv.toml"
    uv_toml.write_text(
        '[[index]]\nurl = "https://uvtoml.example.org/simple"\ndefault = true\n'
        '[pip]\nextra-index-url = ["https://uvtoml-extra.example.org/simple"]\n'
    )
    env = isolated(
        tmp_path, UV_CONFIG_FILE=str(uv_toml), PIP_INDEX_URL="https://pip.example.org/simple"
    )
    config = configure(environ=env)
    assert config.index_url is None  # uv applies its own file; pip's index must not override it
    assert config.record() == {
        "index-url": "https://uvtoml.example.org/simple",
        "extra-index-urls": ["https://uvtoml-extra.example.org/simple"],
    }


def test_model_indexes_only_when_trusted(tmp_path: Path) -> None:
    options = (
        IndexOption(
            "--extra-index-url", "https://t:k@model.example.org/simple", Origin("r.txt", 1)
        ),
        IndexOption("--trusted-host", "model.example.org", Origin("r.txt", 2)),
    )
    env = isolated(tmp_path)
    untrusted = configure(model_options=options, environ=env)
    assert untrusted.extra_index_urls == () and len(untrusted.ignored) == 2
    trusted = configure(model_options=options, trust_model_indexes=True, environ=env)
    assert [s.source for s in trusted.extra_index_urls] == ["model r.txt:1"]
    child = trusted.child_env({})
    assert child["UV_INSECURE_HOST"] == "model.example.org"
    assert trusted.record()["extra-index-urls"] == ["https://***@model.example.org/simple"]


def test_relative_find_links_become_absolute(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = configure(find_links=["wheels"], environ=isolated(tmp_path))
    assert config.find_links[0].value == str(tmp_path / "wheels")
