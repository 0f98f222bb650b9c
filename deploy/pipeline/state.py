"""The resume state of `vitdeploy deploy`: OUT/deploy-state.json.

Each step records the hash of its inputs (``digest``) and the hashes of its outputs; a step whose
inputs did not change and whose outputs are still there with the same hash is fresh and not redone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vitdeploy.core.io import sha256_file, write_json_atomic
from vitdeploy.data.sources import fingerprint

STATE_FILE = "deploy-state.json"


@dataclass
class StepState:
    inputs: str
    outputs: dict[str, str] = field(default_factory=dict)  # path -> sha256


class State:
    """The resumability record: step name -> hash of its inputs and its outputs' hashes."""

    def __init__(self, path: Path, reset: bool):
        self.path = path
        self.steps: dict[str, StepState] = {}
        if path.exists() and not reset:
            try:
                self.steps = {k: StepState(**v) for k, v in json.loads(path.read_text()).get("steps", {}).items()}
            except (json.JSONDecodeError, TypeError):
                self.steps = {}

    def fresh(self, name: str, inputs: str) -> bool:
        s = self.steps.get(name)
        return bool(s and s.inputs == inputs and s.outputs and all(
            Path(p).exists() and sha256_file(p) == h for p, h in s.outputs.items()))

    def record(self, name: str, inputs: str, outputs: list[Path]) -> None:
        self.steps[name] = StepState(inputs, {str(p): sha256_file(p) for p in outputs if Path(p).exists()})
        write_json_atomic(self.path, {"steps": {k: asdict(v) for k, v in self.steps.items()}})


def digest(*parts: Any) -> str:
    """A step's inputs hashed: a file by its content, a folder by its fingerprint (its files' names,
    sizes and mtimes: vitdeploy.data.sources.fingerprint, the run's one walk), anything else by its JSON."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, Path) and p.is_file():
            h.update(sha256_file(p).encode())
        elif isinstance(p, Path) and p.is_dir():
            h.update(fingerprint(p).encode())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()
