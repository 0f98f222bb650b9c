"""Which TensorRT is running, and what its Python API has.

Every version-dependent branch in vitdeploy.trt tests one predicate of ``TrtVersion`` (never a
raw version number), and every function that only some versions reach says which with
``@requires("predicate")``. tests/test_trt_api_surface.py reads both statically: each ``trt.X``
attribute (and each method called on a TensorRT object) inside a branch must exist in the
bindings of every served version for which that branch is taken.

The table (FACTS.md, checked against the bindings wheels' symbols in tests/data/trt_api/):

    predicate                     8.5  8.6  10.3  10.16  11.4
    needs_explicit_batch_flag      Y    Y    .     .      .    EXPLICIT_BATCH: needed < 10, no-op 10, removed 11
    has_strongly_typed             .    .    Y     Y      Y    NetworkDefinitionCreationFlag.STRONGLY_TYPED
    strongly_typed_only            .    .    .     .      Y    11: every network is strongly typed
    has_builder_precision_flags    Y    Y    Y     Y      .    BuilderFlag.FP16/INT8, OBEY_PRECISION_CONSTRAINTS, ILayer.precision
    has_int8_calibrator            Y    Y    Y     Y(dep) .    IInt8EntropyCalibrator2, config.int8_calibrator (deprecated 10.12)
    legacy_calibrator_allowed      Y    Y    Y     .      .    vitdeploy's rule: implicit INT8 only where not deprecated (< 10.12)
    has_platform_fast_fp16         Y    Y    Y     Y      .    Builder.platform_has_fast_fp16/int8
    has_progress_monitor           .    .    Y     Y      Y    IProgressMonitor, config.progress_monitor
    has_hardware_compat            .    Y    Y     Y      Y    hardware_compatibility_level (AMPERE_PLUS)
    has_same_cc_compat             .    .    .     Y      Y    HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY
    has_version_compat             .    Y    Y     Y      Y    BuilderFlag.VERSION_COMPATIBLE
    has_builder_optimization_level .    Y    Y     Y      Y    config.builder_optimization_level
    has_parser_node_name           .    .    Y     Y      Y    ParserError.node_name() (8.x: node index only)
    has_device_memory_v2           .    .    Y     Y      Y    ICudaEngine.device_memory_size_v2 (device_memory_size removed in 11)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from vitdeploy.core.errors import CompatibilityError

# The bindings the API-surface test checks (tests/data/trt_api/<version>.txt), i.e. the
# TensorRT releases a Jetson or desktop user meets (FACTS.md): 8.6 stands for JetPack 5's 8.5
# (no 8.5 bindings wheel exists on PyPI), 10.3 JetPack 6, 10.16 and 11.4 JetPack 7.2.
SERVED_VERSIONS: tuple[str, ...] = ("8.6.1", "10.3.0", "10.16.1.11", "11.4.0.106")
MIN_VERSION = (8, 5)  # execute_async_v3 / set_tensor_address / the I/O tensor API arrived in 8.5


@dataclass(frozen=True, order=True)
class TrtVersion:
    major: int
    minor: int
    patch: int = 0
    build: int = 0

    @classmethod
    def parse(cls, text: str) -> TrtVersion:
        """'10.3.0.30' / '8.6.1' / '11.4.0.106' (a suffix such as '.post1' or 'a' is ignored)."""
        m = re.match(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?(?:\.(\d+))?", str(text))
        if not m:
            raise CompatibilityError(f"cannot read the TensorRT version {text!r}")
        return cls(*(int(g) if g else 0 for g in m.groups()))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}" + (f".{self.build}" if self.build else "")

    def at_least(self, major: int, minor: int = 0) -> bool:
        return (self.major, self.minor) >= (major, minor)

    # --- network creation -------------------------------------------------------------------
    @property
    def needs_explicit_batch_flag(self) -> bool:
        return self.major < 10

    @property
    def has_strongly_typed(self) -> bool:
        return self.major >= 10

    @property
    def strongly_typed_only(self) -> bool:
        return self.major >= 11

    # --- precision ----------------------------------------------------------------------------
    @property
    def has_builder_precision_flags(self) -> bool:
        return self.major < 11

    @property
    def has_int8_calibrator(self) -> bool:
        return self.major < 11

    @property
    def int8_calibrator_deprecated(self) -> bool:
        return self.at_least(10, 12)

    @property
    def legacy_calibrator_allowed(self) -> bool:
        return self.has_int8_calibrator and not self.int8_calibrator_deprecated

    @property
    def has_platform_fast_fp16(self) -> bool:
        return self.major < 11

    @property
    def has_layernorm_importer(self) -> bool:
        """The ONNX parser imports LayerNormalization (8.6 EA and newer; 8.5 has no importer)."""
        return self.at_least(8, 6)

    # --- build options ------------------------------------------------------------------------
    @property
    def has_progress_monitor(self) -> bool:
        return self.major >= 10

    @property
    def has_hardware_compat(self) -> bool:
        return self.at_least(8, 6)

    @property
    def has_same_cc_compat(self) -> bool:
        # Present in the 10.16 bindings, absent in 10.3; the release in between that added it is
        # not established here, so 10.4-10.15 are treated as lacking it (refused, never misbuilt).
        return self.at_least(10, 16)

    @property
    def has_version_compat(self) -> bool:
        return self.at_least(8, 6)

    @property
    def has_builder_optimization_level(self) -> bool:
        return self.at_least(8, 6)

    # --- diagnostics --------------------------------------------------------------------------
    @property
    def has_parser_node_name(self) -> bool:
        return self.major >= 10

    @property
    def has_device_memory_v2(self) -> bool:
        return self.at_least(10, 1)


PREDICATES: tuple[str, ...] = tuple(
    name for name, value in vars(TrtVersion).items() if isinstance(value, property)
)

F = TypeVar("F", bound=Callable)


def requires(predicate: str) -> Callable[[F], F]:
    """Mark a function as reached only on versions where ``predicate`` holds.

    Declarative: callers branch on the predicate; the API-surface test reads the marker to know
    which versions' bindings the function's ``trt`` attributes must exist in.
    """
    if predicate not in PREDICATES:
        raise ValueError(f"unknown TrtVersion predicate {predicate!r}")

    def mark(fn: F) -> F:
        fn.__trt_requires__ = predicate  # type: ignore[attr-defined]
        return fn

    return mark


def version_of(trt) -> TrtVersion:
    """The running TensorRT's version, refusing versions without the I/O tensor API."""
    v = TrtVersion.parse(getattr(trt, "__version__", "0"))
    if (v.major, v.minor) < MIN_VERSION:
        raise CompatibilityError(
            f"TensorRT {v} is too old: vitdeploy needs {MIN_VERSION[0]}.{MIN_VERSION[1]} or newer "
            "(execute_async_v3 and the named I/O tensor API; JetPack 5.1 or newer on a Jetson)")
    return v
