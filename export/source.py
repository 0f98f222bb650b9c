"""Resolve what `vitdeploy export MODEL` names into a module plus its description.

MODEL is one of
- a registered zoo name (``t2t_vit_14``),
- ``package.module:function``: a user factory returning an ``nn.Module`` (input size and
  normalisation come from options),
- a saved ``torch.export`` program (``.pt2``).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vitdeploy.core.errors import InputError, UsageError
from vitdeploy.core.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from vitdeploy.export.config import (
    DEFAULT_BATCH,
    BatchRange,
    ExportConfig,
)
from vitdeploy.export.family import family_config
from vitdeploy.core.io import sha256_file

_FACTORY_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass
class ModelSource:
    kind: str  # "zoo" | "factory" | "exported_program"
    name: str
    module: Any  # the plain (reference) module, untouched by export
    family: str | None
    preprocessing: Preprocessing  # all of it known; the manifest gets its to_manifest()
    num_classes: int | None
    checkpoint: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    exported_program: Any = None
    # The batch range the source itself fixes, overriding the default one (a program exported
    # at one batch size); None: the range asked for.
    batch: BatchRange | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.preprocessing.input_size)  # type: ignore[arg-type, return-value]


def _checkpoint_info(path: Path | None, report: Any = None) -> dict[str, Any] | None:
    if path is None:
        return None
    info = {"path": str(path), "sha256": sha256_file(path)}
    if report is not None:
        info.update({k: v for k, v in report.to_dict().items() if k != "path"})
    return info


def _user_preprocessing(pre: Preprocessing, notes: list[str], default_size: tuple[int, int, int] | None) -> Preprocessing:
    """A model outside the zoo: the options, the size its program fixes, ImageNet's defaults for the rest."""
    size = pre.input_size or default_size
    if size is None:
        raise UsageError("a model outside the zoo needs --input-size C,H,W (e.g. 3,224,224)")
    if pre.mean is None or pre.std is None:
        notes.append("mean/std not given: ImageNet defaults assumed; pass --mean/--std if the model was trained otherwise")
    defaults = Preprocessing(tuple(size), IMAGENET_MEAN, IMAGENET_STD, "bicubic", 0.875)  # type: ignore[arg-type]
    return defaults.updated(pre)


def resolve(config: ExportConfig) -> ModelSource:
    """The model ``config.model`` names. Warnings raised while building or loading it (torch's about
    the user's own modules, e.g. nn.TransformerEncoder's nested-tensor notice) become notes, not stderr."""
    with warnings.catch_warnings(record=True) as caught:
        source = _resolve(config)
    for text in dict.fromkeys(_first_line(w.message) for w in caught):  # once each, in order
        source.notes.append(f"warning while loading the model: {text}")
    return source


def _resolve(config: ExportConfig) -> ModelSource:
    target = config.model
    if target.endswith(".pt2") or (Path(target).suffix in (".pt2", ".ep") and Path(target).exists()):
        return _from_exported_program(Path(target), config)
    if _FACTORY_RE.match(target):
        return _from_factory(target, config)
    return _from_zoo(target, config)


def _from_zoo(name: str, config: ExportConfig) -> ModelSource:
    from vitdeploy.models import create_model, get_spec

    spec = get_spec(name)  # raises UnknownModelError
    kwargs = {}
    if config.num_classes is not None:
        kwargs["num_classes"] = config.num_classes
    size = config.preprocessing.input_size
    resized = size is not None and tuple(size) != tuple(spec.input_size)
    if resized:
        kwargs[family_config(spec.family).size_kwarg] = _grid_size(name, spec.input_size, tuple(size))
    try:
        model = create_model(name, checkpoint=config.checkpoint, strict=config.strict_checkpoint, **kwargs)
        if resized:
            _probe(model, name, tuple(size))
    except (UsageError, AssertionError, ValueError, ZeroDivisionError, RuntimeError, IndexError) as exc:
        if not resized:
            raise
        hint = _sizes_that_run(name, spec.family, int(size[1]))
        if isinstance(exc, UsageError):
            raise UsageError(f"{exc}{hint}") from exc
        raise UsageError(f"{name} cannot be built for --input-size {','.join(map(str, size))}: "
                         f"{_first_line(exc)}{hint}") from exc
    report = getattr(model, "vitdeploy_load_report", None)
    notes = list(report.notes) if report is not None else []
    if report is not None and not report.ok:
        notes.append(f"non-strict checkpoint load: {report.summary()}")
    if config.checkpoint is None:
        notes.append("no checkpoint given: random initial weights (parity is still checked; accuracy is meaningless)")
    pre = spec.preprocessing().updated(config.preprocessing)
    if resized:
        notes.append(f"built for input {list(size)} (trained at {list(spec.input_size)}): the token grid is sized "
                     "for it" + (", the checkpoint's position embeddings resampled" if config.checkpoint else "")
                     + "; accuracy at a size the model was not trained at needs checking on real data")
    return ModelSource("zoo", name, model, spec.family, pre, kwargs.get("num_classes", spec.num_classes),
                       _checkpoint_info(config.checkpoint, report), notes)


def _grid_size(name: str, trained: tuple[int, ...], wanted: tuple[int, ...]) -> int:
    """The square image side a zoo model is rebuilt for (UsageError for what no family supports)."""
    if wanted[0] != trained[0] or wanted[1] != wanted[2]:
        raise UsageError(f"{name} takes square {trained[0]}-channel images ({','.join(map(str, trained))}); "
                         f"--input-size {','.join(map(str, wanted))} is not one")
    return int(wanted[1])


def _sizes_that_run(name: str, family: str, side: int) -> str:
    """"; it runs at 96 and 128 px": the nearest multiples of 32 around ``side`` at which the model
    builds and runs (random weights, batch 1), to say what to pass instead; empty when neither does."""
    from vitdeploy.models import create_model

    runs = []
    for s in sorted({max(32, side // 32 * 32), (side // 32 + 1) * 32} - {side}):
        try:
            _probe(create_model(name, **{family_config(family).size_kwarg: s}), name, (3, s, s))
        except (UsageError, AssertionError, ValueError, ZeroDivisionError, RuntimeError, IndexError):
            continue
        runs.append(str(s))
    return f"; it runs at {' and '.join(runs)} px" if runs else ""


def _probe(model, name: str, size: tuple[int, ...]) -> None:
    """One forward at the new size: a family that cannot run there is refused in one line, not by
    a shape error deep in the exporter."""
    import torch

    try:
        with torch.no_grad():
            model(torch.zeros(1, *size))
    except (RuntimeError, ValueError, AssertionError, IndexError) as exc:
        raise UsageError(f"{name} does not run at --input-size {','.join(map(str, size))}: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()  # no terminal colour codes in a one-line error
    return (text.splitlines() or [type(exc).__name__])[0][:200]


def _cwd_importable() -> None:
    """Like `python -m`: the working directory's modules are importable (a user's factory module)."""
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")


def definition_files(model: str) -> list[Path]:
    """The files whose content defines ``model`` beyond vitdeploy itself: a ``.pt2`` program, or the
    source of a ``package.module:function`` factory's module (so a resumed `deploy` notices an edited
    model). Empty for zoo names, and for a module that cannot be found (export then says why)."""
    if model.endswith(".pt2"):
        return [Path(model)]
    if ":" not in model:
        return []
    _cwd_importable()
    try:
        spec = importlib.util.find_spec(model.split(":")[0])
    except (ImportError, ValueError):
        return []
    return [Path(spec.origin)] if spec is not None and spec.origin and Path(spec.origin).is_file() else []


def _from_factory(target: str, config: ExportConfig) -> ModelSource:
    import torch

    module_name, func_name = target.split(":")
    _cwd_importable()
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"cannot import {module_name!r} for {target}: {exc}") from exc
    fn = getattr(module, func_name, None)
    if not callable(fn):
        raise InputError(f"{module_name} has no callable {func_name!r}")
    try:
        model = fn()
    except Exception as exc:  # the user's code failed, not vitdeploy
        raise InputError(f"{target}() raised {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"{target} returned {type(model).__name__}, not a torch.nn.Module")
    notes: list[str] = []
    report = None
    if config.checkpoint is not None:
        from vitdeploy.models.checkpoint import load_checkpoint

        report = load_checkpoint(model, config.checkpoint, strict=config.strict_checkpoint, name=target)
    pre = _user_preprocessing(config.preprocessing, notes, None)
    model.eval()
    return ModelSource("factory", func_name, model, None, pre, config.num_classes,
                       _checkpoint_info(config.checkpoint, report), notes)


def _from_exported_program(path: Path, config: ExportConfig) -> ModelSource:
    import torch

    if not path.is_file():
        raise InputError(f"exported program {path} not found")
    try:
        ep = torch.export.load(str(path))
    except Exception as exc:
        raise InputError(f"cannot load torch.export program {path}: {exc}") from exc
    placeholders = [n for n in ep.graph.nodes if n.op == "placeholder" and n.name in ep.graph_signature.user_inputs]
    default_size = None
    batch = None
    if len(placeholders) == 1 and "val" in placeholders[0].meta:
        shape = placeholders[0].meta["val"].shape
        if len(shape) == 4 and all(isinstance(d, int) for d in shape[1:]):
            default_size = tuple(int(d) for d in shape[1:])
        if len(shape) >= 1:
            batch = _program_batch(path, ep, shape[0], config.batch)
    notes: list[str] = []
    if batch is not None:
        notes.append(f"{path.name} was exported with its batch fixed at {batch.opt}: the ONNX has that static "
                     "batch, not the default 1..8 (export the program with a dynamic batch Dim for a range)")
    pre = _user_preprocessing(config.preprocessing, notes, default_size)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    src = ModelSource("exported_program", path.stem, ep.module(), None, pre, config.num_classes,
                      None, notes, exported_program=ep, batch=batch)
    src.checkpoint = {"path": str(path), "sha256": digest}
    return src


def _program_batch(path: Path, ep: Any, dim: Any, asked: BatchRange | None) -> BatchRange | None:
    """The batch range a program's own batch dimension imposes: its fixed size when nothing was asked
    for (``asked`` None), None when the range asked for (or the default one) fits it; UsageError for a
    range it cannot take."""
    if isinstance(dim, int):
        lo = hi = dim
    else:
        try:
            bounds = ep.range_constraints[dim.node.expr]
        except (AttributeError, KeyError):
            return None  # a batch expression not bounded on its own: the parity check will tell
        lo, hi = int(bounds.lower), (int(bounds.upper) if bounds.upper.is_Integer else None)
    if lo == hi and asked is None:
        return BatchRange(lo, lo, lo)
    asked = asked or DEFAULT_BATCH
    if lo <= asked.min and (hi is None or asked.max <= hi):
        return None
    takes = f"batch {lo} only" if lo == hi else f"batch {lo}..{'' if hi is None else hi}"
    option = f"--batch {asked.opt}" if not asked.dynamic else f"--dynamic-batch {asked}"
    fix = f"pass --batch {lo}" if lo == hi else "pass a --dynamic-batch within it"
    raise UsageError(f"{path.name} takes {takes} (fixed when it was exported), not {option}: {fix}, "
                     "or export the program again with a batch torch.export.Dim")
