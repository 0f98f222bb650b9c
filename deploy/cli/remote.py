"""CLI glue for ``--remote``: the command's options, as the user gave them, re-issued on the device.

build-engine, bench and validate call these instead of their local core function; what comes
back (a BuildResult, a bench or validate document) is what a local run gives, so the command
draws the same table. The transport and its errors are vitdeploy.pipeline.ssh's, the job and its
upload vitdeploy.pipeline.remote's and vitdeploy.pipeline.upload's.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from vitdeploy.cli.console import err_console, given
from vitdeploy.pipeline.remote import (
    RemoteConfig,
    RemoteRun,
    Upload,
    check_fetched,
    conditions,
    run_remote,
)

# options that stay on this machine: where results go, how they are shown, the remote itself
LOCAL_ONLY = {"remote", "remote_python", "output", "force", "as_json", "report", "accuracy"}


def local_file(value: Any) -> Any:
    """A value naming an existing local file or folder becomes an Upload; anything else (a zoo name) stays."""
    return Upload(Path(value)) if Path(str(value)).exists() else value


def command_argv(convert: dict[str, Callable[[Any], Any]]) -> list[str | Upload]:
    """The current command's name, its arguments and the options given on the command line (defaults left to
    the device), LOCAL_ONLY dropped, values of the parameters in ``convert`` passed through it."""
    ctx = click.get_current_context()
    argv: list[str | Upload] = [ctx.info_name or ctx.command.name or ""]
    for param in ctx.command.params:
        name = param.name or ""
        if name in LOCAL_ONLY:
            continue
        value = ctx.params.get(name)
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        values = [convert[name](v) if name in convert else str(v) for v in values]
        if isinstance(param, click.Argument):
            argv += values
            continue
        if not given(name):
            continue
        assert isinstance(param, click.Option)
        if param.is_flag and not param.count:
            flag = param.opts[0] if value else (param.secondary_opts or [None])[0]
            argv += [flag] if flag else []
            continue
        for v in values:  # the one option that parses a given value to None is `--samples all`
            argv += [param.opts[0], "all" if v == "None" else v]
    return argv


def _run(host: str, python: str | None, argv: list[str | Upload], **kwargs: Any) -> RemoteRun:
    """Run ``argv`` on the device; TensorRT is required there when an engine is among the files sent."""
    kwargs.setdefault("need_tensorrt", any(isinstance(a, Upload) and _is_engine(a.path) for a in argv))
    config = RemoteConfig.create(host, python)
    run = run_remote(config, argv, on_send=lambda name: err_console.print(f"sending {escape(name)} to {escape(host)}",
                                                                          highlight=False), **kwargs)
    err_console.print(f"[dim]{escape(conditions(host, run.env))}; sent {len(run.sent)}, already there {len(run.reused)}[/]",
                      highlight=False, soft_wrap=True)
    return run


def _is_engine(value: Any) -> bool:
    from vitdeploy.runners.factory import ENGINE_SUFFIXES

    return str(value).lower().endswith(ENGINE_SUFFIXES)


def build_remote(host: str, python: str | None, config: Any) -> Any:
    """build-engine on the device for an EngineConfig: checked here first (options, output path),
    then the engine and its manifest come back to the local output, their hash checked. Returns the
    BuildResult a local build gives."""
    from vitdeploy.core.errors import UsageError
    from vitdeploy.core.io import check_artifact_output, manifest_path
    from vitdeploy.engine.build import BuildResult
    from vitdeploy.core.onnx_info import inspect_onnx
    from vitdeploy.engine.config import check_output_name, default_output, resolve

    if config.timing_cache is not None:
        raise UsageError("--timing-cache cannot be used with --remote: a timing cache belongs to the device")
    request = resolve(config, inspect_onnx(Path(config.model)))
    out = Path(config.output) if config.output else default_output(Path(config.model), request.precision)
    check_output_name(out, Path(config.model))
    check_artifact_output(out, config.force)
    argv = command_argv({"model": local_file, "calib": local_file}) + ["-o", out.name]
    _run(host, python, argv, need_tensorrt=True, outputs=[(out.name, out), (manifest_path(out).name, manifest_path(out))])
    return BuildResult(engine_path=out, manifest_path=manifest_path(out), manifest=check_fetched(out, host).to_json())


def bench_remote(host: str, python: str | None) -> dict[str, Any]:
    """bench on the device, with the artifacts given (files sent, zoo names as they are): its bench document."""
    return _run(host, python, command_argv({"artifacts": local_file})).doc


def validate_remote(host: str, python: str | None) -> dict[str, Any]:
    """validate on the device: its validate document (exit 6 is decided here, from the document).
    ``--data HOST:/path`` names data already on the device; other data is sent."""
    from vitdeploy.core.errors import UsageError

    def data(value: Any) -> Any:
        text = str(value)
        if not text.startswith(host + ":"):
            return Upload(Path(text))
        where = text.split(":", 1)[1]
        if not where.startswith("/"):  # the command runs in a job folder, not in the home folder
            raise UsageError(f"--data {text}: give the device's absolute path (e.g. {host}:/home/me/{where})")
        return where

    def thresholds(value: Any) -> Any:  # a preset name stays a name; a JSON file is sent
        return Upload(Path(value)) if Path(str(value)).is_file() else value

    argv = command_argv({"reference": local_file, "candidates": local_file, "checkpoint": local_file, "data": data,
                         "thresholds": thresholds})
    return _run(host, python, argv, ok_codes=(0, 6)).doc
