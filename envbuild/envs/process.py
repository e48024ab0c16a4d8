"""Environments whose interpreter runs on this machine (venv, local, conda, shared): the runner
(``envbuild/runtime/runner.py``) is executed *by path* with the environment's interpreter, so the
model's code never runs in envbuild's process and envbuild never installs itself into the model's
environment.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from envbuild import proc
from envbuild.envs.base import Environment, Streams
from envbuild.errors import InputDataError, ModelRunError, UsageError
from envbuild.runtime_files import RUNNER, RUNNER_BAD_INPUT, RUNNER_MODEL_FAILED, mlmodel_variables

if TYPE_CHECKING:
    from envbuild.inputs import ModelInput
    from envbuild.model import ModelSpec

# what a parent's environment must not pass on into a model's environment
_LEAKY = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE")


def runner_exit(code: int) -> int:
    """The runner printed its own one-line error; map its exit code onto envbuild's."""
    if code == 0:
        return 0
    if code == RUNNER_BAD_INPUT:
        return int(InputDataError.exit_code)
    if code == RUNNER_MODEL_FAILED:
        return int(ModelRunError.exit_code)
    raise ModelRunError(f"the runner stopped with exit code {code}")


def runner_error(
    code: int, stderr: str, log_path: Path | None = None
) -> InputDataError | ModelRunError:
    """The runner's last stderr line as the error of the step that ran it."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    message = lines[-1].removeprefix("error: ") if lines else f"exit {code}"
    error = InputDataError if code == RUNNER_BAD_INPUT else ModelRunError
    return error(message, log_path=log_path)


def predict_args(
    model_dir: str,
    data: ModelInput,
    output: str | None,
    chunk_rows: int | None,
    input_name: str | None = None,
) -> list[str]:
    """The runner's ``predict`` arguments (shared by processes and containers)."""
    args = ["--model", model_dir, "--input", input_name or str(data.path)]
    if output is not None:
        args += ["--output", output]
    if data.content_type:
        args += ["--content-type", data.content_type]
    if chunk_rows:
        args += ["--chunk-rows", str(chunk_rows)]
    return args


@dataclass(frozen=True)
class ProcessEnvironment(Environment):
    """An environment whose interpreter runs here, with the variables its activation would set."""

    variables: Mapping[str, str] = field(default_factory=dict)  # VIRTUAL_ENV, CONDA_PREFIX ...
    path_entries: tuple[str, ...] = ()  # prepended to PATH
    write_bytecode: bool = True  # let the first run write .pyc for what it imports

    def run_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment variables for a process running inside this environment."""
        env = dict(os.environ if base is None else base)
        for key in _LEAKY:
            env.pop(key, None)
        env["PYTHONNOUSERSITE"] = "1"
        if self.write_bytecode:
            # an environment built without compiling gets its .pyc written on first use, for
            # what is really imported (atomic writes: concurrent first runs are safe)
            env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.update(self.variables)
        if self.path_entries:
            env["PATH"] = os.pathsep.join([*self.path_entries, env.get("PATH", "")])
        return env

    def runner_argv(self, command: str, *args: str) -> list[str]:
        return [str(self.python), str(RUNNER), command, *args]

    def predict(
        self,
        model: ModelSpec,
        data: ModelInput,
        *,
        output_path: Path | None,
        chunk_rows: int | None = None,
        streams: Streams | None = None,
    ) -> int:
        args = predict_args(
            str(model.path),
            data,
            str(output_path) if output_path else None,
            data.chunk_rows(chunk_rows),
        )
        env = self.run_env() | mlmodel_variables(model)
        return runner_exit(proc.call(self.runner_argv("predict", *args), env=env))

    def predict_to_file(self, model: ModelSpec, data: ModelInput, output: Path) -> None:
        done = proc.run(
            self.runner_argv("predict", *predict_args(str(model.path), data, str(output), None)),
            what="predicting",
            error=ModelRunError,
            env=self.run_env() | mlmodel_variables(model),
            check=False,
        )
        if done.returncode != 0:
            raise runner_error(done.returncode, done.stderr, done.log_path)

    def info(self, model: ModelSpec | None = None) -> dict[str, Any]:
        done = proc.run(
            self.runner_argv("info"),
            what="listing the environment's distributions",
            error=ModelRunError,
            env=self.run_env() | (mlmodel_variables(model) if model else {}),
        )
        try:
            data = json.loads(done.stdout)
        except ValueError:
            raise ModelRunError(
                "the runner's info output is not JSON", log_path=done.log_path
            ) from None
        return data if isinstance(data, dict) else {}

    def serve(
        self,
        model: ModelSpec,
        host: str,
        port: int,
        workers: int | None,
        streams: Streams | None = None,
    ) -> NoReturn:
        args = ["--model", str(model.path), "--host", host, "--port", str(port)]
        if workers:
            args += ["--workers", str(workers)]
        proc.replace_process(
            self.runner_argv("serve", *args), env=self.run_env() | mlmodel_variables(model)
        )
        raise AssertionError("unreachable")  # pragma: no cover

    def exec(self, command: list[str]) -> NoReturn:
        """``envbuild run MODEL -- CMD``: CMD resolved on the environment's PATH first."""
        if not command:
            raise UsageError("no command given: envbuild run MODEL -- COMMAND [ARGS...]")
        env = self.run_env()
        found = shutil.which(command[0], path=env.get("PATH"))
        if found is None:
            raise UsageError(f"command not found in the model's environment: {command[0]}")
        proc.replace_process([found, *command[1:]], env=env)
        raise AssertionError("unreachable")  # pragma: no cover
