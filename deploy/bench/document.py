"""The bench result document (schema ``vitdeploy.bench/1``): assembling it, and checking one.

    doc = build_document(config, conditions, artifacts, results, warnings)
    validation_errors(doc)   # [] when it conforms to schemas/bench-1.json, else ['path: message']
    validate_result(doc)     # InputError when it does not

Validation uses fastjsonschema (pure Python, no dependencies): the schema is compiled once, on
first use, into a validator that stops at the first problem, so ``validation_errors`` lists at most
one. The validator never fills in defaults: a document is checked, not changed.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from vitdeploy.bench.config import BenchConfig
from vitdeploy.core import schema
from vitdeploy.core.errors import InputError

SCHEMA_ID = "vitdeploy.bench/1"
SCHEMA_FILE = Path(__file__).parent / "schemas" / "bench-1.json"


def build_document(config: BenchConfig, cond: dict[str, Any], artifacts: list[dict[str, Any]],
                   results: list[dict[str, Any]], warnings: list[str]) -> dict[str, Any]:
    """The whole document, its keys in the order the schema lists them."""
    from vitdeploy import __version__

    cfg = asdict(config)
    cfg["artifacts"] = list(config.artifacts)
    cfg["batches"] = list(config.batches)
    cfg["iterations"] = config.planned_iterations
    return {
        "schema": SCHEMA_ID,
        "vitdeploy": __version__,
        "created": cond["finished"],
        "config": cfg,
        "conditions": cond,
        "artifacts": artifacts,
        "results": results,
        "warnings": warnings,
    }


# --------------------------------------------------------------------------------------------
# Schema validation
# --------------------------------------------------------------------------------------------
def load_schema() -> dict[str, Any]:
    return schema.load(SCHEMA_FILE)


def validation_errors(doc: Any) -> list[str]:
    """How ``doc`` departs from schemas/bench-1.json, as ['path: message'] (the first problem found,
    e.g. 'results/0/latency_ms/p50: must be number'); empty when it conforms."""
    return schema.errors(doc, SCHEMA_FILE)


def validate_result(doc: Any) -> None:
    """Raise InputError when ``doc`` is not a valid vitdeploy.bench/1 document."""
    errs = validation_errors(doc)
    if errs:
        raise InputError(f"not a valid {SCHEMA_ID} document: {errs[0]}")
