"""Typed manifests: the JSON beside every artifact (X.onnx -> X.json, X.engine -> X.json), read in one place.

``read(artifact)`` is the one reading function: vitdeploy.core.io.read_manifest's checks (present,
parseable, the shape vitdeploy writes, describing this artifact), then ``Manifest.from_json``.

Every section is a frozen dataclass with ``from_json`` (tolerant: absent sections are None, a
section that is not an object is None, unknown keys are kept) and ``to_json`` (the dict again:
``Manifest.from_json(d).to_json() == d`` for every manifest vitdeploy writes). Each keeps the
whole JSON it was read from in ``raw`` (read-only, deeply frozen), so nothing written is lost;
``to_json`` starts from ``raw`` and writes over it only the typed fields that were changed
(``dataclasses.replace``). Readers use the typed fields; the JSON itself is ``to_json()``.

One JSON Schema per manifest kind lies in ``vitdeploy/core/schemas/`` (``schema_path(kind)``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

from vitdeploy.core import schema
from vitdeploy.core.precision import QuantHints
from vitdeploy.core.preprocessing import Preprocessing

KINDS = ("onnx", "engine")  # the kinds new_manifest writes, one schema file each
SCHEMA_DIR = Path(__file__).with_name("schemas")
_EMPTY: Mapping[str, Any] = MappingProxyType({})


def schema_path(kind: str) -> Path:
    """The JSON Schema file of manifests of ``kind`` ("onnx" | "engine")."""
    if kind not in KINDS:
        raise ValueError(f"no manifest schema for kind {kind!r}; kinds: {', '.join(KINDS)}")
    return SCHEMA_DIR / f"manifest-{kind}.json"


# ---- plain JSON <-> deeply frozen -------------------------------------------------------------

def freeze(value: Any) -> Any:
    """JSON (dicts, lists) -> read-only (MappingProxyType, tuples), recursively."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """The inverse of ``freeze``: a fresh plain-JSON copy (dicts, lists); sections give their to_json()."""
    if isinstance(value, _Section):
        return value.to_json()
    if isinstance(value, QuantHints):
        return value.to_json()
    if isinstance(value, Preprocessing):
        return value.to_manifest()
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value


# ---- field converters (JSON value -> typed value) ---------------------------------------------

def _strings(v: Any) -> tuple[str, ...]:
    return tuple(str(x) for x in v) if isinstance(v, (list, tuple)) else ()


def _section(cls: type[_Section]) -> Callable[[Any], Any]:
    return lambda v: cls.from_json(v) if isinstance(v, Mapping) else None


def _preprocessing(v: Any) -> Preprocessing | None:
    return Preprocessing.from_manifest({"preprocessing": v}) if isinstance(v, Mapping) else None


def _hints(v: Any) -> QuantHints | None:
    return QuantHints.from_json(dict(v)) if isinstance(v, Mapping) else None


def _f(conv: Callable[[Any], Any] = freeze, default: Any = None, key: str | None = None) -> Any:
    """A typed field: read from JSON key ``key`` (default: the field's name) through ``conv``."""
    return field(default=default, metadata={"conv": conv, "key": key})


@dataclass(frozen=True)
class _Section:
    """Base of every manifest section: typed fields + the raw JSON they came from."""

    raw: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, repr=False, compare=False, kw_only=True)

    @classmethod
    def _typed(cls) -> list[dataclasses.Field]:
        return [f for f in dataclasses.fields(cls) if f.name != "raw"]

    @staticmethod
    def _key(f: dataclasses.Field) -> str:
        return f.metadata.get("key") or f.name

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None):
        data = data if isinstance(data, Mapping) else {}
        raw = freeze(data)
        values = {f.name: f.metadata["conv"](data.get(cls._key(f))) for f in cls._typed()}
        return cls(**values, raw=raw)

    def to_json(self) -> dict[str, Any]:
        """The JSON dict: ``raw`` with the typed fields that differ from it written over it."""
        out = thaw(self.raw)
        for f in self._typed():
            key, value = self._key(f), getattr(self, f.name)
            if value == f.metadata["conv"](self.raw.get(key)):
                continue  # unchanged since read (or both absent): raw keeps the exact JSON
            if value is None and f.default is None:
                out.pop(key, None)
            else:
                out[key] = thaw(value)
        return out


@dataclass(frozen=True)
class ModelRef(_Section):
    name: str | None = _f()
    source: str | None = _f()  # "zoo" | "timm" | "checkpoint" ...
    family: str | None = _f()
    target: str | None = _f()
    num_classes: int | None = _f()


@dataclass(frozen=True)
class Batch(_Section):
    min: int | None = _f()
    opt: int | None = _f()
    max: int | None = _f()

    @property
    def complete(self) -> bool:
        return all(isinstance(v, int) and not isinstance(v, bool) for v in (self.min, self.opt, self.max))


@dataclass(frozen=True)
class Checkpoint(_Section):
    path: str | None = _f()
    sha256: str | None = _f()


@dataclass(frozen=True)
class ParentRef(_Section):
    """The artifact this one was made from (quantize: the FP32 ONNX; build-engine: the ONNX built)."""

    artifact: str | None = _f()
    sha256: str | None = _f()
    precision: str | None = _f()


@dataclass(frozen=True)
class Fp16Islands(_Section):
    """What an FP16 (or INT8 + FP16) file keeps in FP32."""

    fp32_ops: tuple[str, ...] = _f(_strings, ())
    fp32_nodes: tuple[str, ...] = _f(_strings, ())
    fp32_overflow_nodes: tuple[str, ...] = _f(_strings, ())
    fp32_range_reasons: Mapping[str, int] | None = _f()
    io: str | None = _f()

    @property
    def kept_nodes(self) -> frozenset[str]:
        """Node names kept FP32: named by the user and those whose calibrated ranges do not suit FP16."""
        return frozenset(self.fp32_nodes) | frozenset(self.fp32_overflow_nodes)


@dataclass(frozen=True)
class Quantization(_Section):
    """The INT8 pass (``quantization`` of an INT8 ONNX)."""

    method: str | None = _f()
    percentile: float | None = _f()
    target: str | None = _f()  # "trt" | "ort-cpu" ...
    high_precision: str | None = _f()  # "fp16" | "fp32" (absent in older manifests: fp32)
    exclude: tuple[str, ...] = _f(_strings, ())
    family_hints: QuantHints | None = _f(_hints)
    fp16: Fp16Islands | None = _f(_section(Fp16Islands))


@dataclass(frozen=True)
class CalibrationData(_Section):
    """The data an FP16/INT8 pass calibrated on."""

    source: str | None = _f()
    fingerprint: str | None = _f()
    kind: str | None = _f()
    synthetic: bool | None = _f()
    available: int | None = _f()
    requested_samples: int | None = _f()
    percentile: float | None = _f()
    calibration_samples: int | None = _f()
    holdout_samples: int | None = _f()
    hash: str | None = _f()
    seed: int | None = _f()


@dataclass(frozen=True)
class Accuracy(_Section):
    """An FP16/INT8 file's accuracy against its FP32 parent (the figures as written)."""

    vs_fp32: Mapping[str, Any] | None = _f()
    samples: int | None = _f()


@dataclass(frozen=True)
class TensorRTInfo(_Section):
    version: str | None = _f()
    strongly_typed: bool | None = _f()
    network_flags: tuple[str, ...] = _f(_strings, ())


@dataclass(frozen=True)
class GpuInfo(_Section):
    name: str | None = _f()
    compute_capability: Any = _f()


@dataclass(frozen=True)
class BuildOptions(_Section):
    version_compatible: bool | None = _f()
    hardware_compat: str | None = _f()


@dataclass(frozen=True)
class EngineCalibration(_Section):
    """An INT8 engine's calibration: the Q/DQ pass's data, or the legacy calibration cache."""

    path: str | None = _f()
    hash: str | None = _f()
    method: str | None = _f()
    samples: int | None = _f()
    cache: str | None = _f()


@dataclass(frozen=True, eq=False)
class Manifest(_Section):
    """The manifest of one artifact (``kind`` "onnx": export and quantize; "engine": build-engine)."""

    schema: str | None = _f()
    kind: str | None = _f()
    artifact: str | None = _f()
    sha256: str | None = _f()  # of the artifact (write_manifest adds it)
    precision: str | None = _f()
    created: str | None = _f()
    vitdeploy: str | None = _f()  # the vitdeploy version that wrote it
    model: ModelRef | None = _f(_section(ModelRef))
    batch: Batch | None = _f(_section(Batch))
    preprocessing: Preprocessing | None = _f(_preprocessing)  # the one preprocessing type (core.preprocessing)
    checkpoint: Checkpoint | None = _f(_section(Checkpoint))
    parent: ParentRef | None = _f(_section(ParentRef))
    quantization: Quantization | None = _f(_section(Quantization))
    fp16: Fp16Islands | None = _f(_section(Fp16Islands))
    calibration_data: CalibrationData | None = _f(_section(CalibrationData))
    accuracy: Accuracy | None = _f(_section(Accuracy))
    quantization_hints: QuantHints | None = _f(_hints)
    warnings: tuple[str, ...] = _f(_strings, ())
    notes: tuple[str, ...] = _f(_strings, ())
    # engines
    tensorrt: TensorRTInfo | None = _f(_section(TensorRTInfo))
    gpu: GpuInfo | None = _f(_section(GpuInfo))
    build_options: BuildOptions | None = _f(_section(BuildOptions))
    calibration: EngineCalibration | None = _f(_section(EngineCalibration))
    source_onnx: str | None = _f()

    # fields of a parent ONNX's manifest that a derived artifact's manifest carries over
    INHERITED: ClassVar[tuple[str, ...]] = ("model", "input", "output", "preprocessing", "checkpoint", "deploy_form")

    @classmethod
    def coerce(cls, value: Manifest | Mapping[str, Any] | None) -> Manifest | None:
        """A Manifest from a Manifest, a JSON dict, or None."""
        if value is None or isinstance(value, Manifest):
            return value
        return cls.from_json(value)

    @property
    def fp16_islands(self) -> Fp16Islands | None:
        """What stays FP32: an FP16 file's ``fp16``, or an INT8 + FP16 file's ``quantization.fp16``."""
        return self.fp16 or (self.quantization.fp16 if self.quantization else None)

    @property
    def random_weights(self) -> bool:
        """A zoo model exported without a checkpoint: a random network."""
        return bool(self.model and self.model.source == "zoo" and not self.raw.get("checkpoint"))

    def inherited(self, keys: tuple[str, ...] | None = None) -> dict[str, Any]:
        """The sections (``keys``, default INHERITED) a derived artifact's manifest carries over, as
        plain JSON."""
        return {k: thaw(self.raw[k]) for k in (self.INHERITED if keys is None else keys) if k in self.raw}

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Manifest):
            return self.to_json() == other.to_json()
        if isinstance(other, Mapping):
            return self.to_json() == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


def validation_errors(data: Manifest | Mapping[str, Any]) -> list[str]:
    """How a manifest departs from the schema of its kind, as ['path: message'] (the first problem
    found; vitdeploy.core.schema); empty when it conforms."""
    doc = data.to_json() if isinstance(data, Manifest) else thaw(data)
    kind = doc.get("kind") if isinstance(doc, dict) else None
    if kind not in KINDS:
        return [f"kind: {kind!r} is not one of {', '.join(KINDS)}"]
    return schema.errors(doc, schema_path(kind))


def read(artifact: str | os.PathLike, required: bool = False) -> Manifest | None:
    """The manifest beside ``artifact`` (vitdeploy.core.io.read_manifest's checks), typed; None when
    there is none (InputError when ``required``, or when it is unreadable or malformed)."""
    from vitdeploy.core.io import read_manifest

    data = read_manifest(artifact, required)
    return None if data is None else Manifest.from_json(data)
