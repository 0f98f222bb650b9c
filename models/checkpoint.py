"""Reading checkpoints the way the official repositories saved them, safely.

- ``.pth`` / ``.pth.tar`` / ``.pt`` / ``.bin``: ``torch.load(weights_only=True)`` with a short
  allow-list for what real checkpoints carry besides tensors (the argparse ``Namespace`` of
  DeiT-style training scripts, numpy scalars). Arbitrary pickles are never executed.
- ``.safetensors``.
- Wrapped dicts are unwrapped (``state_dict_ema``, ``model_ema``, ``state_dict``, ``model``),
  then wrapper prefixes are stripped (see ``strip_wrapper_prefixes``): DDP/DataParallel
  ``module.``, torch.compile ``_orig_mod.``, Lightning ``model.``, in any nesting and order, or
  any other leading component shared by every key (``net.``, ``backbone.``, ``encoder.``) when
  stripping it makes the keys match the model. Never when the keys already match, and never a
  component that is a first-level name of the model. ``LoadReport.stripped_prefix`` records
  exactly what was stripped (e.g. ``"module._orig_mod.model."``). Then the family's filter runs.
- Keys and shapes are compared with the model before loading; any mismatch raises
  CheckpointError with a one-line summary unless ``strict=False``.
- Even with ``strict=False`` a checkpoint that is mostly not the model is refused: at least
  ``MIN_FOUND_SHARE`` (50%) of the model's state-dict tensors must be in the checkpoint, counted
  both by number of tensors and by number of values (so dropping a classifier head, or a few
  buffers, still loads; a checkpoint of another model, or one holding only norms and biases,
  does not).
- Non-finite (NaN/Inf) weights are refused, naming the tensors.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vitdeploy.core.errors import CheckpointError, InputError

# Preference order when a checkpoint holds several state dicts (the family decides which).
WRAPPER_KEYS_EMA_FIRST = ("state_dict_ema", "model_ema", "state_dict", "model", "net", "params")
WRAPPER_KEYS_RAW_FIRST = ("state_dict", "model", "state_dict_ema", "model_ema", "net", "params")


@dataclass
class LoadReport:
    path: str
    source_key: str | None  # which entry of a wrapped dict was used
    stripped_prefix: str | None
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # key, ckpt shape, model shape
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self, limit: int = 3) -> str:
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing ({_head(self.missing, limit)})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected ({_head(self.unexpected, limit)})")
        if self.mismatched:
            shown = ", ".join(f"{k}: checkpoint {tuple(a)} vs model {tuple(b)}" for k, a, b in self.mismatched[:limit])
            more = f", +{len(self.mismatched) - limit} more" if len(self.mismatched) > limit else ""
            parts.append(f"{len(self.mismatched)} shape mismatch ({shown}{more})")
        return "; ".join(parts) or "all keys match"

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "source_key": self.source_key,
            "stripped_prefix": self.stripped_prefix,
            "missing": self.missing,
            "unexpected": self.unexpected,
            "mismatched": [[k, list(a), list(b)] for k, a, b in self.mismatched],
            "notes": self.notes,
        }


def _head(keys: list[str], limit: int) -> str:
    more = f", +{len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def _safe_globals() -> list[Any]:
    allowed: list[Any] = [argparse.Namespace]
    try:  # numpy scalars/dtypes that training scripts store as metrics
        import numpy as np

        allowed += [np.dtype, type(np.dtype("float64")), type(np.dtype("float32")), type(np.dtype("int64"))]
        try:
            from numpy._core.multiarray import scalar  # numpy >= 2
        except ImportError:  # pragma: no cover - numpy 1.x
            from numpy.core.multiarray import scalar  # type: ignore[no-redef]
        allowed.append(scalar)
    except ImportError:  # pragma: no cover
        pass
    return allowed


def read_checkpoint_file(path: str | os.PathLike) -> Any:
    """Read a checkpoint file without executing arbitrary pickled code."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint {path} not found")
    if path.suffix == ".safetensors":
        from vitdeploy.core.deps import require

        st = require("safetensors.torch", "reading .safetensors checkpoints")
        try:
            return st.load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(f"cannot read {path}: {exc}") from exc
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise _refused(path, exc) from exc


SAFE_WAY = "save the weights alone, torch.save(model.state_dict(), path), and pass that file"
NOT_UNPICKLED = "which vitdeploy does not unpickle (that could run any code)"


def _refused(path: Path, exc: Exception) -> CheckpointError:
    """One line for a file weights-only loading refuses: what was refused, and the safe way on.

    Never torch's own advice ("re-running with weights_only=False will likely succeed"): that
    runs whatever code the file pickles, which vitdeploy does not do for any file.
    """
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            unsafe = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # noqa: BLE001 - not a zip checkpoint, or a damaged one: nothing to list
        unsafe = []
    if any(g.startswith("torch.nn.modules.") for g in unsafe):
        own = [g for g in unsafe if not g.startswith("torch.")] or unsafe
        return CheckpointError(f"cannot read {path} safely: it is a whole pickled model ({_head(own, 2)}), "
                               f"{NOT_UNPICKLED}; where its classes are defined, load it and {SAFE_WAY}")
    if unsafe:
        return CheckpointError(f"cannot read {path} safely: besides tensors it pickles {_head(unsafe, 3)}, "
                               f"{NOT_UNPICKLED}; {SAFE_WAY}")
    text = str(exc).split("WeightsUnpickler error:")[-1]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and "weights_only" not in ln]
    detail = lines[0].split(". Please")[0][:200] if lines else type(exc).__name__
    return CheckpointError(f"cannot read {path} as a torch checkpoint ({detail}); if it is one, {SAFE_WAY}")


def extract_state_dict(obj: Any, prefer_ema: bool = True) -> tuple[dict[str, torch.Tensor], str | None]:
    """Unwrap the state dict from a training checkpoint; return it and the key it came from."""
    if isinstance(obj, nn.Module):
        return obj.state_dict(), None
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint holds a {type(obj).__name__}, not a state dict")
    order = WRAPPER_KEYS_EMA_FIRST if prefer_ema else WRAPPER_KEYS_RAW_FIRST
    for key in order:
        inner = obj.get(key)
        if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            return dict(inner), key
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if tensors and len(tensors) == len(obj):
        return tensors, None
    raise CheckpointError(
        f"no state dict found in checkpoint (top-level keys: {', '.join(map(str, list(obj)[:8]))})"
    )


# Leading key components that training wrappers add: DDP/DataParallel, torch.compile, Lightning
# (a LightningModule holding the network as ``self.model``).
KNOWN_WRAPPER_PREFIXES = ("module", "_orig_mod", "model")
MAX_PREFIX_DEPTH = 4
# Share of the model's state-dict tensors (by count and by number of values) a checkpoint must
# hold for any load, strict or not.
MIN_FOUND_SHARE = 0.5


def _shared_first_component(keys: list[str]) -> str | None:
    if not keys or any("." not in k for k in keys):
        return None
    first = {k.split(".", 1)[0] for k in keys}
    return first.pop() if len(first) == 1 else None


def strip_wrapper_prefixes(state_dict: dict[str, torch.Tensor], model_keys) -> tuple[dict[str, torch.Tensor], str | None]:
    """Strip leading components shared by every key when that makes the keys match ``model_keys``.

    Peels up to ``MAX_PREFIX_DEPTH`` shared components, never one that is a first-level name of
    the model, and keeps the depth where most keys match the model (the shallowest on a tie, so
    keys that already match are never touched). When no depth matches anything, only the known
    wrapper components (``module.``, ``_orig_mod.``, ``model.``) are stripped, so messages show
    the inner names. Returns the state dict and the exact prefix stripped (or None).
    """
    model_keys = set(model_keys)
    top_level = {k.split(".", 1)[0] for k in model_keys}
    depths = [(dict(state_dict), "")]
    cur, prefix = state_dict, ""
    for _ in range(MAX_PREFIX_DEPTH):
        if len(model_keys.intersection(cur)) == len(model_keys):
            break  # already matches: nothing more to strip
        comp = _shared_first_component(list(cur))
        if comp is None or comp in top_level:
            break
        cut = len(comp) + 1
        cur = {k[cut:]: v for k, v in cur.items()}
        prefix += comp + "."
        depths.append((cur, prefix))
    hits = [len(model_keys.intersection(sd)) for sd, _ in depths]
    best = max(range(len(depths)), key=lambda i: (hits[i], -i))
    if hits[best] == 0:
        best = 0
        for i, (_, pre) in enumerate(depths[1:], start=1):
            if all(c in KNOWN_WRAPPER_PREFIXES for c in pre.rstrip(".").split(".")):
                best = i
            else:
                break
    sd, pre = depths[best]
    return sd, (pre or None)


def _prefix_hint(state_dict: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> str | None:
    """A prefix under which enough of the model sits (same names and shapes), when not every key has it."""
    total_values = sum(v.numel() for v in expected.values())
    candidates: set[str] = set()
    for k in state_dict:
        parts = k.split(".")
        for depth in range(1, min(len(parts), MAX_PREFIX_DEPTH + 1)):
            candidates.add(".".join(parts[:depth]) + ".")
    best, best_found = None, []
    for pre in sorted(candidates):
        found = [k[len(pre):] for k, v in state_dict.items() if k.startswith(pre) and k[len(pre):] in expected
                 and tuple(v.shape) == tuple(expected[k[len(pre):]].shape)]
        if len(found) > len(best_found):
            best, best_found = pre, found
    if (best is None or len(best_found) < MIN_FOUND_SHARE * len(expected)
            or sum(expected[k].numel() for k in best_found) < MIN_FOUND_SHARE * total_values):
        return None
    others = sorted({k.split(".", 1)[0] + "." for k in state_dict if not k.startswith(best)})
    return (f"{len(best_found)} of {len(expected)} model tensors are under {best!r}, but other keys are not "
            f"({_head(others, 3)}): save the {best!r} part alone, without the prefix")


def _nonfinite(state_dict: dict[str, torch.Tensor], keys) -> list[str]:
    bad = []
    for k in keys:
        v = state_dict[k]
        if isinstance(v, torch.Tensor) and (v.is_floating_point() or v.is_complex()) and v.numel():
            finite = torch.isfinite(v)
            if not bool(finite.all()):
                n_nan = int(torch.isnan(v).sum())
                n_inf = int((~finite).sum()) - n_nan
                what = ", ".join(x for x in (f"{n_nan} NaN" if n_nan else "", f"{n_inf} Inf" if n_inf else "") if x)
                bad.append(f"{k} ({what})")
    return bad


def _num_classes_hint(model: nn.Module, mismatched: list[tuple[str, tuple, tuple]]) -> str:
    n_model = getattr(model, "num_classes", None)
    if not isinstance(n_model, int):
        return ""
    for _, a, b in mismatched:
        if len(a) == len(b) and len(a) in (1, 2) and b[0] == n_model and a[0] != n_model and tuple(a[1:]) == tuple(b[1:]):
            return (f"; the checkpoint's classifier has {a[0]} classes, the model's {n_model}: "
                    f"pass --num-classes {a[0]} (num_classes={a[0]})")
    return ""


def compare_state_dict(state_dict: dict[str, torch.Tensor], model: nn.Module, report: LoadReport) -> None:
    expected = model.state_dict()
    report.missing = [k for k in expected if k not in state_dict]
    report.unexpected = [k for k in state_dict if k not in expected]
    report.mismatched = [
        (k, tuple(v.shape), tuple(expected[k].shape))
        for k, v in state_dict.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]


def _check_found_share(state_dict: dict[str, torch.Tensor], expected: dict[str, torch.Tensor],
                       original: dict[str, torch.Tensor], label: str, where: str) -> None:
    """Refuse (strict or not) a checkpoint holding under MIN_FOUND_SHARE of the model's tensors."""
    found = [k for k in expected if k in state_dict]
    total_values = sum(v.numel() for v in expected.values())
    found_values = sum(expected[k].numel() for k in found)
    if expected and (len(found) < MIN_FOUND_SHARE * len(expected)
                     or found_values < MIN_FOUND_SHARE * total_values):
        share = 100.0 * found_values / total_values if total_values else 0.0
        hint = _prefix_hint(original, expected)
        if hint is None:
            hint = (f"is it a checkpoint of another model? {label}'s keys look like "
                    f"{', '.join(repr(k) for k in list(expected)[:3])}")
        keys = list(original)
        shown = ", ".join(repr(k) for k in keys[:3]) + ("..." if len(keys) > 3 else "")
        raise CheckpointError(
            f"{where}: {len(found)} of {len(expected)} {label} tensors found in the checkpoint "
            f"({share:.0f}% of the values, under the {MIN_FOUND_SHARE:.0%} minimum): not loading "
            f"(keys look like {shown or 'nothing'}); {hint}")


def load_checkpoint(model: nn.Module, path: str | os.PathLike, *, strict: bool = True, prefer_ema: bool = True,
                    checkpoint_filter=None, name: str | None = None) -> LoadReport:
    """Load ``path`` into ``model``.

    Raises CheckpointError on a shape mismatch, on non-finite weights, when less than
    ``MIN_FOUND_SHARE`` of the model's tensors are in the checkpoint (even with ``strict=False``),
    and on any missing/unexpected key when ``strict``.
    """
    raw = read_checkpoint_file(path)
    state_dict, source_key = extract_state_dict(raw, prefer_ema=prefer_ema)
    expected = model.state_dict()
    original = dict(state_dict)
    state_dict, prefix = strip_wrapper_prefixes(state_dict, expected)
    report = LoadReport(path=str(path), source_key=source_key, stripped_prefix=prefix)
    if prefix:
        report.notes.append(f"stripped the wrapper prefix {prefix!r} from every checkpoint key")
    label = name or type(model).__name__
    where = f"checkpoint {Path(path).name}"
    if checkpoint_filter is not None:
        # filter(state_dict, model, notes) -> state_dict; it appends what it changed to notes
        try:
            state_dict = checkpoint_filter(state_dict, model, report.notes)
        except CheckpointError:
            raise
        except Exception as exc:
            # a filter tripping over a checkpoint that is mostly not the model: say that instead
            _check_found_share(state_dict, expected, original, label, where)
            # the family's code could not fit this checkpoint: a checkpoint problem (exit 4), not a crash
            raise CheckpointError(f"{where} does not fit {label}: {type(exc).__name__}: {exc}") from exc
    compare_state_dict(state_dict, model, report)

    _check_found_share(state_dict, expected, original, label, where)
    found = [k for k in expected if k in state_dict]
    if report.mismatched:
        raise CheckpointError(f"{where} does not match {label}: {report.summary()}"
                              + _num_classes_hint(model, report.mismatched))
    if strict and not report.ok:
        raise CheckpointError(f"{where} does not match {label}: {report.summary()}; pass --non-strict to load anyway")
    bad = _nonfinite(state_dict, found)
    if bad:
        raise CheckpointError(f"{where} has non-finite weights, not loading: {_head(bad, 3)}"
                              " (a diverged training run?)")
    model.load_state_dict(state_dict, strict=False)
    return report
