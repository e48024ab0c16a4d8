"""``with envbuild.capture(): mlflow.<flavor>.log_model(...)``: the only module touching MLflow's
internals.

MLflow offers no supported extension point that runs after a model is saved: its plugins cover
tracking and artifact stores, the registry, run context, request headers, deployments and project
backends, and ``pip_requirements=`` must be known before the model is saved (capture needs the
saved model: it loads it). So, while a ``capture()`` block is open, two things are patched, the
smallest surface that reaches every flavor:

* ``mlflow.models.Model.log`` (the classmethod every flavor's ``log_model`` calls with its own
  module as ``flavor``; its ``flavor`` argument is documented: "a module with a ``save_model``
  function"). The wrapper passes a stand-in for that module whose ``save_model`` is wrapped, so
  third-party flavors are covered too;
* ``save_model`` of MLflow's flavor modules (``mlflow.sklearn``, ``mlflow.pyfunc``, ...) for direct
  ``save_model`` calls: those already imported when the block opens, and those imported inside it
  (MLflow imports flavors lazily; a meta path finder patches each ``mlflow.<flavor>`` module right
  after it is executed, then puts its loader back).

The wrapped ``save_model`` calls MLflow's, then captures the saved folder (a probe loads it in a
subprocess of this interpreter and predicts on its input example) and writes envbuild's files into
it. Inside ``Model.log`` that folder is the temporary one MLflow uploads next, so the files reach
the run's artifact store. A failure raises envbuild's error from ``log_model``/``save_model``
(``strict=False``: a :class:`CaptureWarning`, and MLflow's own files stay).

Scope and thread-safety: patches are installed when the first block opens and removed when the
last one closes (reference counted under a lock; also on exceptions). Whether a call is captured is
decided per thread and asyncio task (a ``ContextVar``): code outside every block, including other
threads, gets MLflow's behaviour unchanged. Threads started inside a block do not inherit it.
Supported: MLflow 3.x and the last 2.x release (tests/integration/test_capture_hook*.py).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.abc
import inspect
import os
import sys
import threading
import types
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envbuild.errors import UsageError

if TYPE_CHECKING:
    from envbuild.capturing.engine import Capture
    from envbuild.capturing.writer import Written

_ORIGINAL = "__envbuild_original__"


class CaptureWarning(UserWarning):
    """A capture could not be completed (``strict=False``), or something in it needs attention."""


@dataclass(frozen=True)
class Captured:
    """One model saved inside a ``capture()`` block, with what envbuild captured and wrote."""

    path: Path  # the folder MLflow saved (a temporary folder, for log_model)
    capture: Capture
    written: Written


@dataclass
class CaptureSession:
    """What ``with envbuild.capture() as session`` gives: the options and the results."""

    strict: bool = True
    platforms: tuple[str, ...] | None = None
    extra_index_urls: tuple[str, ...] = ()
    offline: bool = False
    captured: list[Captured] = field(default_factory=list)
    failures: list[tuple[Path, BaseException]] = field(default_factory=list)

    def after_save(self, path: Path) -> None:
        """Capture the folder MLflow just saved and write envbuild's files into it."""
        from envbuild.capturing.engine import capture_model
        from envbuild.capturing.writer import write_capture
        from envbuild.model import load_model

        try:
            spec = load_model(path)
            result = capture_model(spec)
            written = write_capture(
                spec,
                result,
                platforms=self.platforms,
                extra_index_urls=self.extra_index_urls,
                offline=self.offline,
            )
        except Exception as exc:
            if self.strict:
                raise
            self.failures.append((path, exc))
            warnings.warn(
                f"envbuild could not capture the model's environment ({exc}); MLflow's own "
                "requirement files are kept",
                CaptureWarning,
                stacklevel=4,
            )
            return
        for message in (*result.warnings, *written.lock.warnings):
            warnings.warn(f"envbuild capture: {message}", CaptureWarning, stacklevel=4)
        self.captured.append(Captured(path, result, written))


_session: ContextVar[CaptureSession | None] = ContextVar("envbuild_capture", default=None)
_busy: ContextVar[bool] = ContextVar("envbuild_capture_busy", default=False)
_state = threading.Lock()
_users = 0
_restore: list[tuple[Any, str, Any]] = []  # (owner, attribute, original value)
_finder: _FlavorFinder | None = None


# ---------------------------------------------------------------------------------------------
# save_model wrapper


def _path_argument(signature: inspect.Signature | None, args: tuple, kwargs: dict) -> Any:
    if "path" in kwargs:
        return kwargs["path"]
    if signature is None:
        return None
    try:
        return signature.bind_partial(*args, **kwargs).arguments.get("path")
    except TypeError:
        return None


def wrap_save_model(original: Callable[..., Any]) -> Callable[..., Any]:
    """``save_model`` that captures the saved folder when called inside a ``capture()`` block."""
    if getattr(original, _ORIGINAL, None) is not None:
        return original
    try:
        signature: inspect.Signature | None = inspect.signature(original)
    except (TypeError, ValueError):
        signature = None

    @functools.wraps(original)
    def save_model(*args: Any, **kwargs: Any) -> Any:
        session = _session.get()
        if session is None or _busy.get():
            return original(*args, **kwargs)
        path = _path_argument(signature, args, kwargs)
        token = _busy.set(True)  # one capture per save, however many wrappers are stacked
        try:
            result = original(*args, **kwargs)
            if path is None:
                warnings.warn(
                    f"envbuild capture: {getattr(original, '__module__', '?')}.save_model was "
                    "called without a path; nothing captured",
                    CaptureWarning,
                    stacklevel=2,
                )
            else:
                session.after_save(Path(os.fspath(path)))
        finally:
            _busy.reset(token)
        return result

    setattr(save_model, _ORIGINAL, original)
    return save_model


class _FlavorProxy(types.ModuleType):
    """A flavor module as ``Model.log`` sees it inside a block: ``save_model`` wrapped."""

    def __init__(self, flavor: Any) -> None:
        super().__init__(
            str(getattr(flavor, "__name__", "custom")), getattr(flavor, "__doc__", None)
        )
        object.__setattr__(self, "_envbuild_flavor", flavor)
        self.save_model = wrap_save_model(flavor.save_model)

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_envbuild_flavor"), name)


# ---------------------------------------------------------------------------------------------
# What is patched


def _is_flavor(name: str, module: Any) -> bool:
    """``mlflow.<name>`` modules with their own ``save_model`` and ``log_model``."""
    if not (name.startswith("mlflow.") and name.count(".") == 1):
        return False
    try:
        namespace = object.__getattribute__(module, "__dict__")  # never loads a LazyLoader
    except AttributeError:
        return False
    return callable(namespace.get("save_model")) and callable(namespace.get("log_model"))


def _patch_flavor(module: types.ModuleType) -> None:
    original = module.__dict__["save_model"]
    if getattr(original, _ORIGINAL, None) is not None:
        return
    _restore.append((module, "save_model", original))
    module.save_model = wrap_save_model(original)  # type: ignore[attr-defined]


def _patch_model_log(model_class: type) -> None:
    original = model_class.__dict__["log"]
    func = original.__func__ if isinstance(original, classmethod) else None
    if func is None:  # not the classmethod MLflow 2.x/3.x have: leave it
        return
    try:
        signature: inspect.Signature | None = inspect.signature(func)
    except (TypeError, ValueError):
        signature = None

    @functools.wraps(func)
    def log(cls: type, *args: Any, **kwargs: Any) -> Any:
        if _session.get() is None or signature is None:
            return func(cls, *args, **kwargs)
        try:
            bound = signature.bind(cls, *args, **kwargs)
        except TypeError:
            return func(cls, *args, **kwargs)  # let MLflow report its own usage error
        flavor = bound.arguments.get("flavor")
        if flavor is not None and hasattr(flavor, "save_model"):
            bound.arguments["flavor"] = _FlavorProxy(flavor)
        return func(*bound.args, **bound.kwargs)

    _restore.append((model_class, "log", original))
    setattr(model_class, "log", classmethod(log))  # noqa: B010 - patched only inside a block


class _PatchingLoader(importlib.abc.Loader):
    """Executes a flavor module with its real loader, then patches its ``save_model`` and puts
    the real loader back on the module (so it looks imported the ordinary way)."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        try:
            self.loader.exec_module(module)
        finally:
            if module.__spec__ is not None:
                module.__spec__.loader = self.loader
            module.__loader__ = self.loader
        with _state:
            if _users and _is_flavor(module.__name__, module):
                _patch_flavor(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)


class _FlavorFinder:
    """Meta path finder for ``mlflow.<flavor>`` modules first imported inside a block."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if not (fullname.startswith("mlflow.") and fullname.count(".") == 1):
            return None
        for finder in list(sys.meta_path):
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _PatchingLoader(spec.loader)
                return spec
        return None


def _install() -> None:
    global _users, _finder
    try:  # imported before taking the lock: an import must never wait on it while holding one
        from mlflow.models import Model
    except ImportError as exc:
        raise UsageError(
            f"envbuild.capture() needs mlflow: {exc}", hint="pip install mlflow"
        ) from None
    with _state:
        if _users == 0:
            _patch_model_log(Model)
            for name, module in list(sys.modules.items()):
                if _is_flavor(name, module):
                    _patch_flavor(module)
            _finder = _FlavorFinder()
            sys.meta_path.insert(0, _finder)
        _users += 1


def _uninstall() -> None:
    global _users, _finder
    with _state:
        _users -= 1
        if _users > 0:
            return
        if _finder is not None:
            with contextlib.suppress(ValueError):
                sys.meta_path.remove(_finder)
            _finder = None
        while _restore:
            owner, name, original = _restore.pop()
            setattr(owner, name, original)


def patched() -> list[str]:
    """What is patched right now, as ``owner.attribute`` (for tests and debugging)."""
    with _state:
        return [f"{getattr(o, '__name__', o)}.{name}" for o, name, _ in _restore]


@contextlib.contextmanager
def capture(
    *,
    strict: bool = True,
    platforms: Iterable[str] | None = None,
    extra_index_urls: Sequence[str] = (),
    offline: bool = False,
) -> Iterator[CaptureSession]:
    """Inside the block, every model MLflow logs or saves gets envbuild's captured requirements,
    ``pylock.toml`` and expected output (in the run's artifact store, for ``log_model``).

    ``strict=False`` turns a failed capture into a :class:`CaptureWarning` (MLflow's own files are
    kept); by default the failure is raised from ``log_model``/``save_model``. ``platforms`` and
    ``extra_index_urls`` are the lock's (default: linux/amd64 and this machine's platform; the
    indexes labelled builds need are added by themselves).
    """
    session = CaptureSession(
        strict=strict,
        platforms=tuple(platforms) if platforms is not None else None,
        extra_index_urls=tuple(extra_index_urls),
        offline=offline,
    )
    _install()
    token = _session.set(session)
    try:
        yield session
    finally:
        _session.reset(token)
        _uninstall()
