"""Name -> factory registry in the style of timm: ``@register_model(spec fields)`` on a factory.

Families register once with ``register_family`` (checkpoint filter, default tolerances); each
variant's factory is decorated with ``@register_model``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vitdeploy.core.errors import UnknownModelError
from vitdeploy.models.spec import LISTED, Listed, ModelSpec

ModelFactory = Callable[..., Any]
# filter(state_dict, model, notes) -> state_dict; appends a line to notes for each change it makes
CheckpointFilter = Callable[[dict, Any, list], dict]


@dataclass
class FamilyInfo:
    name: str
    title: str
    source: str
    checkpoint_filter: CheckpointFilter | None = None
    # Which weights a training checkpoint holding both should give: the ones the official
    # evaluation reports. DeiT-style scripts (DeiT, ConViT, CeiT) evaluate checkpoint["model"];
    # T2T-ViT's released evaluation loads the EMA weights.
    prefer_ema: bool = False


@dataclass
class Entry:
    spec: ModelSpec
    factory: ModelFactory


_MODELS: dict[str, Entry] = {}
_FAMILIES: dict[str, FamilyInfo] = {}


def register_family(name: str, title: str, source: str, checkpoint_filter: CheckpointFilter | None = None,
                    prefer_ema: bool = False) -> FamilyInfo:
    info = FamilyInfo(name, title, source, checkpoint_filter, prefer_ema)
    _FAMILIES[name] = info
    return info


def register_model(family: str, **spec_fields: Any) -> Callable[[ModelFactory], ModelFactory]:
    """Register a factory under its function name with the given spec fields."""

    def wrap(fn: ModelFactory) -> ModelFactory:
        name = fn.__name__
        if name in _MODELS:
            raise ValueError(f"model {name} registered twice")
        fam = _FAMILIES.get(family)
        fields = dict(spec_fields)
        row = LISTED.get(name)
        if row is not None:  # the reported figures live once, in the listing's data
            fields = {"paper_top1": row.paper_top1, "macs_g": row.macs_g,
                      "official_params": None if row.tiny else row.params, **fields}
        spec = ModelSpec(name=name, family=family, source=fields.pop("source", fam.source if fam else ""), **fields)
        _check_listed(spec)
        _MODELS[name] = Entry(spec, fn)
        fn.spec = spec  # type: ignore[attr-defined]
        return fn

    return wrap


def _check_listed(spec: ModelSpec) -> None:
    """The listing's data (spec.LISTED) must say what the registered spec says of the architecture."""
    row = LISTED.get(spec.name)
    if row is None:
        return  # registered outside the zoo: not in `vitdeploy models`
    differ = [k for k in ("family", "input_size", "tiny")
              if getattr(row, k) != getattr(spec, k)]
    if differ:
        raise ValueError(f"model {spec.name}: spec.LISTED differs from its registration in {', '.join(differ)}")


def listed(family: str | None = None, include_tiny: bool = True) -> dict[str, Listed]:
    """The zoo's variants with the figures `vitdeploy models` shows, without importing a family (or torch)."""
    return {n: r for n, r in LISTED.items() if (family is None or r.family == family) and (include_tiny or not r.tiny)}


def _ensure_loaded() -> None:
    # Importing the families registers them; done lazily so the registry and specs need no torch.
    from vitdeploy.core.deps import require

    require("torch", "the model zoo")
    from vitdeploy.models import ceit, convit, sret, t2t_vit, vit  # noqa: F401


def list_models(family: str | None = None, include_tiny: bool = True) -> list[str]:
    _ensure_loaded()
    return [
        n
        for n, e in _MODELS.items()
        if (family is None or e.spec.family == family) and (include_tiny or not e.spec.tiny)
    ]


def list_families() -> list[FamilyInfo]:
    _ensure_loaded()
    return list(_FAMILIES.values())


def get_entry(name: str) -> Entry:
    _ensure_loaded()
    try:
        return _MODELS[name]
    except KeyError:
        import difflib

        # compare against name heads too, so "deit_tiny" suggests deit_tiny_patch16_224
        query = name.lower()
        lower = {n.lower(): n for n in _MODELS}
        heads = {n[: len(query) + 1]: lower[n] for n in sorted(lower, key=len, reverse=True)}
        close = list(dict.fromkeys(
            [lower[n] for n in lower if n.startswith(query)][:3]
            + [heads[h] for h in difflib.get_close_matches(query, heads, n=3, cutoff=0.75)]
            + [lower[n] for n in difflib.get_close_matches(query, lower, n=3)]))[:3]
        hint = f"; did you mean {', '.join(close)}?" if close else "; see `vitdeploy models`"
        raise UnknownModelError(f"unknown model {name!r}{hint}") from None


def get_spec(name: str) -> ModelSpec:
    return get_entry(name).spec


def get_family(name: str) -> FamilyInfo:
    _ensure_loaded()
    return _FAMILIES[name]
