"""`vitdeploy models`: the model zoo."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from vitdeploy.cli.console import console, print_json
from vitdeploy.cli.options import Json

app = typer.Typer(
    help="List the registered models with their parameter counts and preprocessing.\n\n"
    "Examples: vitdeploy models --family t2t_vit;  vitdeploy models --json;  vitdeploy models show convit_tiny",
    invoke_without_command=True,
    no_args_is_help=False,
)


def _describe(name: str) -> dict:
    from vitdeploy.models import get_spec, model_params

    spec = get_spec(name)
    params = model_params(name)
    d = spec.to_dict()
    d["params"] = params
    d["params_match_official"] = (
        None if spec.official_params is None else abs(params - spec.official_params) <= 1e-3 * spec.official_params
    )
    return d


@app.callback()
def models(
    ctx: typer.Context,
    family: Annotated[Optional[str], typer.Option(help="Only this family (vit, t2t_vit, convit, sret, ceit).")] = None,
    tiny: Annotated[bool, typer.Option("--tiny/--no-tiny", help="Include the test-sized variants.")] = True,
    as_json: Json = False,
) -> None:
    if ctx.invoked_subcommand is not None:
        return
    from vitdeploy.errors import UnknownModelError
    from vitdeploy.models import list_families, list_models

    families = [f.name for f in list_families()]
    if family is not None and family not in families:
        raise UnknownModelError(f"unknown family {family!r}; families: {', '.join(families)}")
    rows = [_describe(n) for n in list_models(family, include_tiny=tiny)]
    if as_json:
        print_json(rows)
        return
    table = Table(title="vitdeploy model zoo", header_style="bold")
    for col, just in [("name", "left"), ("family", "left"), ("params", "right"), ("official", "right"),
                      ("input", "right"), ("top-1", "right"), ("GMACs", "right")]:
        table.add_column(col, justify=just, no_wrap=col == "name")
    for r in rows:
        official = "-" if r["official_params"] is None else f"{r['official_params'] / 1e6:.2f}M"
        if r["params_match_official"] is False:
            official = f"[red]{official}[/]"
        table.add_row(
            r["name"] + (" [dim]test[/]" if r["tiny"] else ""), r["family"], f"{r['params'] / 1e6:.2f}M", official,
            "x".join(map(str, r["input_size"][1:])), "-" if r["paper_top1"] is None else f"{r['paper_top1']:.1f}",
            "-" if r["macs_g"] is None else f"{r['macs_g']:.2f}",
        )
    console.print(table)


@app.command("show")
def show(name: Annotated[str, typer.Argument(help="Registered model name.")], as_json: Json = False) -> None:
    """Show one model's spec, parameter count and deploy notes.

    Example: vitdeploy models show t2t_vit_14
    """
    d = _describe(name)
    if as_json:
        print_json(d)
        return
    table = Table(title=name, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for k, v in d.items():
        if v in (None, "", {}):
            continue
        table.add_row(k, ", ".join(map(str, v)) if isinstance(v, list) else str(v))
    console.print(table)
