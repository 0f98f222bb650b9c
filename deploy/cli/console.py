"""Rich consoles: results to stdout, progress and messages to stderr (so --json output stays clean)."""

from __future__ import annotations

import json
from typing import Any, TypeVar

import click

from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, SpinnerColumn, Task,
                           TextColumn, TimeElapsedColumn, TimeRemainingColumn)
from rich.text import Text

console = Console()
err_console = Console(stderr=True)

T = TypeVar("T")


def prose(text: str) -> str:
    """A command's help text with its prose paragraphs unwrapped, so that rich wraps them at the terminal's
    width (typer unwraps only the first paragraph: hard-wrapped lines came out ragged at 80 columns).
    Paragraphs with an indented line (examples, lists) keep their lines."""
    paragraphs = text.strip("\n").split("\n\n")
    return "\n\n".join(p if any(line[:1].isspace() for line in p.splitlines()) else " ".join(p.split("\n"))
                       for p in paragraphs)


def given(name: str) -> bool:
    """Whether the running command's parameter ``name`` was given (command line or environment), not defaulted."""
    from click.core import ParameterSource

    ctx = click.get_current_context(silent=True)
    return ctx is not None and ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)


def renamed(new: str, value: T, old: str, old_value: T | None) -> T:
    """The value of an option renamed from ``old`` to ``new``, the old spelling kept as a hidden alias
    (``hidden=True``, default None): the old one's value when given, after one deprecation line on
    stderr, else the new one's. Both given on the command line is a usage error (exit 2)."""
    if old_value is None or old_value == [] or old_value == ():
        return value
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        names = [p.name for p in ctx.command.params if new in getattr(p, "opts", ())]
        if any(given(n) for n in names):
            raise click.UsageError(f"{old} is the deprecated spelling of {new}: give only {new}", ctx=ctx)
    err_console.print(f"[yellow]warning:[/] {old} is deprecated; use {new}", highlight=False, soft_wrap=True)
    return old_value


def print_json(obj: Any) -> None:
    from vitdeploy.core.io import json_default

    # plain print: rich would re-wrap long lines and break the JSON for pipes
    print(json.dumps(obj, indent=2, default=json_default))


class RateColumn(ProgressColumn):
    """Items per second (rich's own speed estimate), blank until known."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:.0f}/s" if task.speed else "", style="progress.data.speed")


def progress(transient: bool = False) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=transient,
    )


def print_step(record) -> None:  # noqa: ANN001 - a vitdeploy.core.steps.StepRecord
    """One line per finished step: a tick or a cross, the name, the seconds, the detail (not for a
    step an error ended: its message comes once, as the error line)."""
    mark = "[green]✓[/]" if record.status == "ok" else "[red]✗[/]"
    detail = f" [dim]({escape(record.detail)})[/]" if record.detail and not record.raised else ""
    err_console.print(f"  {mark} {escape(record.name)} [dim]{record.seconds:.2f}s[/]{detail}")


class Tracker:
    """A ``progress(kind, total) -> advance(n)`` callback drawing tasks on ``bar``. ``log_finished``: also
    one line per finished task (count, seconds, rate, as the bar counted them), for logs, where no bar is
    drawn (not a terminal). A task counts as finished when the next one starts or ``close()`` is called
    (its work is done then: a pass advances as its samples are decoded, before the last batch has run)."""

    def __init__(self, bar: Progress, log_finished: bool = False) -> None:
        self.bar, self.log_finished = bar, log_finished
        self.open = None  # the task to log when it ends

    def __call__(self, kind: str, total):  # noqa: ANN001
        self.close()
        task = self.bar.add_task(kind, total=total)
        if self.log_finished:
            self.open = task
        return lambda n: self.bar.advance(task, n)

    def close(self) -> None:
        """Log the open task (``log_finished``)."""
        if self.open is not None:
            task = next(t for t in self.bar.tasks if t.id == self.open)
            self.open = None
            seconds = task.elapsed or 0.0
            err_console.print(f"  [green]✓[/] {escape(task.description)}: {task.completed:g} in {seconds:.1f}s "
                              f"({task.completed / max(seconds, 1e-9):.1f}/s)", highlight=False)
