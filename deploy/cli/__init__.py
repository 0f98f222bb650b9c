"""The `vitdeploy` command line. Thin: parse options into config objects, call core functions.

One error handler for every command: the project's errors become one line on stderr and the
exit code of their type (see vitdeploy.core.errors); a traceback is shown only with --debug.
"""

from __future__ import annotations

import os
import sys

import click
import typer
from rich.markup import escape

from vitdeploy import __version__
from vitdeploy.cli import _state
from vitdeploy.cli.console import err_console
from vitdeploy.core.errors import EXIT_CODES, OutputError, VitdeployError

EPILOG = "Exit codes: " + "; ".join(f"{k} {v.split(' (')[0]}" for k, v in EXIT_CODES.items())

app = typer.Typer(
    name="vitdeploy",
    help="Take a trained PyTorch vision transformer to a validated, benchmarked TensorRT engine.\n\n"
    "Example: vitdeploy export deit_tiny_patch16_224 --checkpoint deit_tiny.pth",
    epilog=EPILOG,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vitdeploy {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    _state.debug = debug or bool(os.environ.get("VITDEPLOY_DEBUG"))


def _register() -> None:
    from vitdeploy.cli import (bench_cmd, deploy_cmd, engine_cmd, env_cmd, export_cmd, models_cmd, quantize_cmd,
                               validate_cmd)

    app.add_typer(models_cmd.app, name="models")
    app.command("env", help=env_cmd.env.__doc__, epilog=env_cmd.EPILOG)(env_cmd.env)
    export_cmd.register(app)
    quantize_cmd.register(app)
    engine_cmd.register(app)
    validate_cmd.register(app)
    bench_cmd.register(app)
    deploy_cmd.register(app)


_register()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app and map errors to exit codes."""
    code = run(argv)
    sys.exit(code)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (used by main and by the tests)."""
    _state.debug = bool(os.environ.get("VITDEPLOY_DEBUG")) or "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        result = app(args=argv, prog_name="vitdeploy", standalone_mode=False)
        code = int(result) if isinstance(result, int) else 0  # typer returns 130 for a KeyboardInterrupt
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.ClickException as exc:  # bad usage found by the parser: one line, not click's usage block
        ctx = getattr(exc, "ctx", None)
        _error(exc.format_message() + (f" (see '{ctx.command_path} --help')" if ctx else ""))
        return 2
    except (KeyboardInterrupt, click.exceptions.Abort):
        code = 130
    except Exception as exc:
        return _report(exc)
    if code == 130:
        err_console.print("[bold red]interrupted[/]")
    return code


def _report(exc: Exception) -> int:
    """One line for an error and its exit code: the project's errors by type, a full disk as exit 5
    whatever raised it, anything else as a bug (exit 1)."""
    from vitdeploy.core.io import cannot_write, disk_full

    if _state.debug:
        err_console.print_exception()
    full = disk_full(exc)
    if full is not None and not isinstance(exc, OutputError):
        exc = cannot_write(None, full)
    if isinstance(exc, VitdeployError):
        _error(str(exc))
        return exc.exit_code
    if not _state.debug:
        err_console.print(f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))} (rerun with --debug for the traceback)",
                          highlight=False, soft_wrap=True)
    return 1


def _error(message: str) -> None:
    # escape: messages carry brackets ("pip install 'vitdeploy[ort]'") that rich would eat as markup
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
