"""Labels: class folders -> labels, and whether those labels can be a given model's classes.

``open_dataset`` numbers ImageFolder class folders with ``folder_classes``; ``labels_for`` says
whether those labels can be a model's outputs; ``chance_level`` catches a reference that scores
no better than guessing on labels that looked right.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from vitdeploy.data.sources import Dataset

CHANCE_ALPHA = 1e-3  # reference top-1 no better than guessing at this significance: the labels mean nothing


def folder_classes(names: set[str]) -> tuple[list[str], str, dict[str, int]]:
    """(classes, label scheme, folder -> label) for ImageFolder class folders.

    Folders named by class index ("0".."999") keep their numbers, and folders that are all ImageNet-1k
    WordNet ids ("n01440764"..) take their index in the standard 1000-class order (``vitdeploy.data.imagenet``),
    so a subset of classes still scores against the model's outputs; other names are indexed in
    sorted order (torchvision's ImageFolder)."""
    from vitdeploy.data import imagenet

    if all(c.isdigit() for c in names):
        classes = sorted(names, key=int)
        return classes, "index", {c: int(c) for c in classes}
    classes = sorted(names)
    if all(imagenet.is_imagenet1k_wnid(c) for c in classes):
        return classes, "imagenet", {c: imagenet.class_index(c) for c in classes}
    return classes, "sorted", {c: i for i, c in enumerate(classes)}


@dataclass(frozen=True)
class LabelMap:
    """The labels of a dataset for a model with ``num_classes`` outputs (see ``labels_for``)."""

    labels: np.ndarray | None  # one per dataset sample, an index into the model's outputs; None: no labels
    scheme: str | None  # Dataset.label_scheme, or "sorted" where wnid folders fell back to sorted order
    num_classes: int | None
    meaningful: bool  # labels exist and can be the model's classes: accuracy on them means something
    warnings: tuple[str, ...] = ()


def labels_for(ds: Dataset, num_classes: int | None) -> LabelMap:
    """``ds``'s labels for a model with ``num_classes`` outputs, with warnings where they cannot match.

    - folders named by class index and labels of a .npz: as they are;
    - folders named by ImageNet-1k wnids: their standard index (0..999) for a 1000-output model
      (or ``num_classes`` None); for another model, sorted order 0..k-1 (ImageFolder), which can only be
      its classes when it has exactly k outputs (a warning either way; not meaningful otherwise);
    - other names: sorted order; names that look like WordNet ids but are not all ImageNet-1k classes
      cannot be a 1000-output model's indices (not meaningful); fewer or more folders than outputs
      is a warning (sorted order is right only for a model trained on exactly these folders);
    - any label outside 0..num_classes-1: not meaningful.

    Not meaningful means: report no accuracy from these labels (and gate nothing on it). A reference
    that scores at chance on meaningful-looking labels is caught after inference: ``chance_level``.
    """
    from vitdeploy.data import imagenet

    if ds.labels is None:
        return LabelMap(None, None, num_classes, False)
    name = Path(ds.source).name
    labels, scheme, classes = ds.labels, ds.label_scheme, list(ds.classes or [])
    warns: list[str] = []
    ok = True
    if scheme == "imagenet" and num_classes is not None and num_classes != imagenet.NUM_CLASSES:
        folder = {c: i for i, c in enumerate(classes)}
        labels, scheme = np.array([folder[f.parent.name] for f in ds.files], dtype=np.int64), "sorted"
        if len(classes) == num_classes:
            warns.append(f"{name}: class folders are ImageNet-1k WordNet ids but the model has {num_classes} outputs, "
                         f"not 1000: numbered 0..{num_classes - 1} in sorted order, right only for a model trained "
                         "on exactly these folders in that order")
        else:
            ok = False
            warns.append(f"{name}: {len(classes)} class folders are ImageNet-1k WordNet ids but the model has "
                         f"{num_classes} outputs, not 1000: the labels cannot be its classes")
    elif scheme == "sorted" and classes:
        not_1k = [c for c in classes if not imagenet.is_imagenet1k_wnid(c)]
        if num_classes == imagenet.NUM_CLASSES and any(imagenet.looks_like_wnid(c) for c in classes):
            ok = False
            warns.append(f"{name}: class folders look like WordNet ids but {len(not_1k)} of {len(classes)} are not "
                         f"ImageNet-1k classes (e.g. {not_1k[0]}): numbered in sorted order, they cannot be the "
                         "1000-class model's indices")
        elif num_classes is not None and len(classes) != num_classes:
            warns.append(f"{name}: {len(classes)} class folders numbered 0..{len(classes) - 1} in sorted order for a "
                         f"model with {num_classes} outputs: right only if its first classes are these folders in "
                         f"this order; name the folders by class index (0..{num_classes - 1}) or, for ImageNet-1k, "
                         "by WordNet id (n01440764/ ...)")
    if ok and num_classes is not None and labels.size:
        out = (labels < 0) | (labels >= num_classes)
        if out.any():
            ok = False
            warns.append(f"{name}: {int(out.sum())} of {labels.size} labels lie outside the model's {num_classes} "
                         f"classes (e.g. {int(labels[out][0])}): the labels cannot be its classes")
    return LabelMap(labels, scheme, num_classes, ok, tuple(warns))


def chance_level(top1: float, samples: int, num_classes: int, alpha: float = CHANCE_ALPHA) -> bool:
    """Whether a top-1 accuracy of ``top1`` on ``samples`` labelled samples is no better than guessing
    among ``num_classes`` classes: one-sided binomial test, P(hits >= observed | p = 1/num_classes) > alpha.
    A reference model there means labels that do not follow its class order (or untrained weights)."""
    import math

    if samples < 1 or num_classes < 2:
        return False
    hits = int(round(top1 * samples))
    p = 1.0 / num_classes
    lp, lq = math.log(p), math.log1p(-p)
    log_n = math.lgamma(samples + 1)
    tail = math.fsum(math.exp(log_n - math.lgamma(k + 1) - math.lgamma(samples - k + 1) + k * lp + (samples - k) * lq)
                     for k in range(hits, samples + 1))
    return tail > alpha


def chance_warning(top1: float, samples: int, num_classes: int) -> str:
    """The warning for a reference whose top-1 is at chance level (``chance_level``)."""
    return (f"the reference's top-1 {top1:.2%} on {samples} labelled samples is not clearly above chance for "
            f"{num_classes} classes ({1.0 / num_classes:.2%}; one-sided binomial test, p > {CHANCE_ALPHA:g}): "
            "the labels do not follow the model's class order (or the model is untrained); top-1 figures are "
            "not meaningful and not counted")

