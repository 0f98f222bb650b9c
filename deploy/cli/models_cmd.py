"""`vitdeploy models`: the model zoo."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer

from vitdeploy.cli import tables
from vitdeploy.cli.console import print_json
from vitdeploy.cli.options import Json
from vitdeploy.core import document as D

if TYPE_CHECKING:
    from vitdeploy.models.spec import Listed

app = typer.Typer(
    help="List the registered models with their parameter counts and preprocessing.\n\n"
    "Examples:\n\n  vitdeploy models --family t2t_vit\n\n  vitdeploy models --json\n\n  vitdeploy models show convit_tiny",
    invoke_without_command=True,
    no_args_is_help=False,
)


def _describe(name: str) -> dict:
    """Every spec field (the families hold the preprocessing, so this imports them and torch) with the
    parameter count from the listing's data; a model registered outside the zoo is built on the meta device.

    No "matches the official count" field: for a zoo variant ``params`` and ``official_params`` are
    the same figure (spec.LISTED; registration copies it), so it could only say True. That the built
    models have exactly that count is what tests/test_models_listing.py checks, building them.
    """
    from vitdeploy.models import get_spec, model_params
    from vitdeploy.models.registry import listed

    spec = get_spec(name)
    row = listed().get(name)
    d = spec.to_dict()
    d["params"] = row.params if row else model_params(name)
    return d


def _listing_table(rows: dict[str, Listed]) -> D.Table:
    table = D.Table([D.Column("model"), D.Column("family")]
                    + [D.Column(h, "right") for h in ("params\nM", "input\npx", "top-1\n%", "GMACs")],
                    title="vitdeploy model zoo",
                    footnotes=[("top-1: ImageNet-1k as reported by the paper or official repository; *_test: "
                                "test-sized, random weights only; all fields (needs torch): --json or `models show NAME`")])
    for name, r in rows.items():
        table.add_row(name, r.family, f"{r.params / 1e6:.2f}", str(r.px),
                      "-" if r.paper_top1 is None else f"{r.paper_top1:.1f}",
                      "-" if r.macs_g is None else f"{r.macs_g:.1f}")
    return table


@app.callback()
def models(
    ctx: typer.Context,
    family: Annotated[Optional[str], typer.Option(help="Only this family (vit, t2t_vit, convit, sret, ceit).")] = None,
    tiny: Annotated[bool, typer.Option("--tiny/--no-tiny", help="Include the test-sized variants.")] = True,
    as_json: Json = False,
) -> None:
    if ctx.invoked_subcommand is not None:
        return
    from vitdeploy.core.errors import UnknownModelError
    from vitdeploy.models.registry import listed

    families = list(dict.fromkeys(r.family for r in listed().values()))
    if family is not None and family not in families:
        raise UnknownModelError(f"unknown family {family!r}; families: {', '.join(families)}")
    rows = listed(family, include_tiny=tiny)
    if as_json:
        print_json([_describe(n) for n in rows])
        return
    tables.print_table(_listing_table(rows))


@app.command("show")
def show(name: Annotated[str, typer.Argument(help="Registered model name.")], as_json: Json = False) -> None:
    """Show one model's spec, parameter count and deploy notes.

    Example: vitdeploy models show t2t_vit_14
    """
    d = _describe(name)
    if as_json:
        print_json(d)
        return
    table = tables.kv_model(name)
    for k, v in d.items():
        if v in (None, "", {}):
            continue
        table.add_row(k, ", ".join(map(str, v)) if isinstance(v, list) else str(v))
    tables.print_kv(table)
