"""JSON Schema checks of vitdeploy's documents (bench results, manifests), with fastjsonschema.

fastjsonschema is pure Python (nothing to build on a Jetson) and compiles a schema to a function
once; the schemas ship with the package as draft-07 files. Problems are reported as
``'path: message'`` (the first one found), e.g. ``results/0/latency_ms/p50: must be number``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


@functools.lru_cache(maxsize=None)
def load(path: Path) -> dict[str, Any]:
    """A packaged schema file (RuntimeError when missing or unreadable: a packaging bug)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RuntimeError(f"schema {path} missing or unreadable: {exc}") from exc


@functools.lru_cache(maxsize=None)
def _compiled(path: Path) -> Callable[[Any], Any]:
    import fastjsonschema

    try:
        return fastjsonschema.compile(load(path), use_default=False)  # never fills defaults into the document
    except fastjsonschema.JsonSchemaDefinitionException as exc:  # a packaging bug, like an unreadable file
        raise RuntimeError(f"schema {path} does not compile: {exc}") from exc


def errors(doc: Any, path: Path) -> list[str]:
    """How ``doc`` departs from the schema at ``path``: ['path: message'] (the first problem), or []."""
    from fastjsonschema import JsonSchemaValueException

    try:
        _compiled(Path(path))(doc)
    except JsonSchemaValueException as exc:
        where = "/".join(map(str, (exc.path or [])[1:])) or "(root)"  # exc.path starts with the root's name
        message = exc.message
        if exc.name and message.startswith(exc.name + " "):
            message = message[len(exc.name) + 1:]
        return [f"{where}: {message}"]
    return []
