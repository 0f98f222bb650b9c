"""The bench result document (schema ``vitdeploy.bench/1``): assembling it, and checking one.

    doc = build_document(config, conditions, artifacts, results, warnings)
    validation_errors(doc)   # [] when it conforms to schemas/bench-1.json, else ['path: message']
    validate_result(doc)     # InputError when it does not

Validation uses fastjsonschema (pure Python, no dependencies): the schema is compiled once, on
first use, into a validator that stops at the first problem, so ``validation_errors`` lists at most
one. The validator never fills in defaults: a document is checked, not changed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Any

from vitdeploy.bench.config import BenchConfig
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
@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    try:
        return json.loads(SCHEMA_FILE.read_text())
    except (OSError, json.JSONDecodeError) as exc:  # a packaging bug: the schema ships with the package
        raise RuntimeError(f"bench schema {SCHEMA_FILE} missing or unreadable: {exc}") from exc


@lru_cache(maxsize=1)
def _validator() -> Callable[[Any], Any]:
    """schemas/bench-1.json compiled by fastjsonschema, once per process."""
    import fastjsonschema

    try:
        return fastjsonschema.compile(load_schema(), use_default=False)
    except fastjsonschema.JsonSchemaDefinitionException as exc:  # a packaging bug, like an unreadable schema
        raise RuntimeError(f"bench schema {SCHEMA_FILE} does not compile: {exc}") from exc


def validation_errors(doc: Any) -> list[str]:
    """How ``doc`` departs from schemas/bench-1.json, as ['path: message'] (the first problem found,
    e.g. 'results/0/latency_ms/p50: must be number'); empty when it conforms."""
    from fastjsonschema import JsonSchemaValueException

    try:
        _validator()(doc)
    except JsonSchemaValueException as exc:
        path = "/".join(map(str, exc.path[1:])) or "(root)"  # exc.path starts with the root's name, "data"
        message = exc.message
        if exc.name and message.startswith(exc.name + " "):
            message = message[len(exc.name) + 1:]
        return [f"{path}: {message}"]
    return []


def validate_result(doc: Any) -> None:
    """Raise InputError when ``doc`` is not a valid vitdeploy.bench/1 document."""
    errs = validation_errors(doc)
    if errs:
        raise InputError(f"not a valid {SCHEMA_ID} document: {errs[0]}")
