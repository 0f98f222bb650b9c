"""The result document of `vitdeploy validate`: its header, the labels it may use, each candidate's
entry (its figures judged by ``core.compare.judge``), the bench accuracy block, and how it is shown:
``document`` (validate.md, a ``core.document.Document``) and ``summary_table`` (the console's)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vitdeploy.core.compare import Comparison, judge
from vitdeploy.core.document import Cell, Column, Document, Note, Section, Span, Table, Value, to_markdown
from vitdeploy.core.io import has_random_weights
from vitdeploy.runners.factory import Artifact
from vitdeploy.validate.config import VALIDATE_SCHEMA, ValidateConfig


def new_document(config: ValidateConfig, ref_art: Artifact, backend: str, resumed: bool, ds, kept: np.ndarray) -> dict[str, Any]:
    """The document's header (reference, data, warnings), candidates to come; ``doc["data"]["random_weights"]``
    says whether the reference has random weights (top-1 figures then mean nothing and are not used)."""
    from vitdeploy.data.batches import skipped_warning

    doc: dict[str, Any] = {
        "schema": VALIDATE_SCHEMA,
        "reference": {"artifact": ref_art.label, "kind": ref_art.kind, "precision": ref_art.precision,
                      "backend": backend, "resumed": resumed},
        "data": {"source": ds.source, "samples": len(kept), "labels": False,
                 "skipped": len(ds.skipped), "seed": config.seed, "value_check": config.data_check},
        "candidates": [],
        "warnings": [w for w in [skipped_warning(ds)] if w],
    }
    random_weights = ref_art.kind != "torch" and has_random_weights(ref_art.manifest)  # torch: --checkpoint required
    doc["data"]["random_weights"] = random_weights
    if random_weights:  # near-ties everywhere: which class wins is noise, how close the outputs are is not
        doc["warnings"].append("the reference has random weights (exported without --checkpoint): top-1 agreement "
                               "and accuracy are not meaningful and do not gate; cosine and max abs still do")
    return doc


def candidate_entry(doc: dict[str, Any], art: Artifact, figures: dict[str, Any], config: ValidateConfig,
                     random_weights: bool, labelled: int | None, ds, kept: np.ndarray) -> dict[str, Any]:
    """A candidate's entry of the document: its reduced figures judged against its precision's thresholds
    (``judge``: agreement not counted with random weights; the top-1 drop on ``labelled`` samples)."""
    comparison = Comparison(**figures["comparison"])
    precision = art.precision if art.precision in config.thresholds else "fp32"
    acc = figures["accuracy"] if labelled is not None else None
    drop = None if acc is None else 100.0 * (doc["reference"]["top1"] - acc["top1"])
    verdict = judge(comparison, config.thresholds[precision], agreement=not random_weights, top1_drop=drop,
                    max_top1_drop=config.max_top1_drop.get(precision), labelled=labelled)
    names = [str(ds.files[kept[i]]) if ds.kind == "images" else f"{ds.source}[{int(kept[i])}]" for i in comparison.worst]
    entry: dict[str, Any] = {"artifact": art.label, "kind": art.kind, "backend": figures["backend"], "precision": art.precision,
                             "fp16_emulated": figures["fp16_emulated"], "resumed": bool(figures.get("resumed")),
                             "comparison": comparison.to_dict(), "worst_samples": names,
                             "thresholds": {**verdict.thresholds.__dict__, "max_top1_drop": config.max_top1_drop.get(precision)}}
    if acc is not None:
        entry.update(acc, top1_drop_points=drop)
    if verdict.max_top1_drop is not None:
        entry["thresholds"]["max_top1_drop_effective"] = round(verdict.max_top1_drop, 3)
    entry["passed"] = verdict.passed
    entry["failures"] = list(verdict.failures)
    return entry


def usable_labels(doc: dict[str, Any], ds, kept: np.ndarray, num_classes: int,
                   accuracy: Callable[[np.ndarray], dict[str, float]]) -> tuple[np.ndarray | None, dict[str, float] | None]:
    """The labels of the kept samples for the reference's outputs and the reference's top-1/top-5 on
    them, or (None, None) when there are none or they cannot be its classes (``labels_for``) or the
    reference scores at chance on them; fills ``doc["data"]`` (labels, labels_present, label_scheme,
    num_classes, unusable_labels) and warns. ``accuracy(labels)``: the reference's top-1/top-5 on
    labels of the kept samples (its outputs read once: a label outside them is never a hit, so the
    figures on the labels as given are those on the in-range ones)."""
    from vitdeploy.data.labels import chance_level, chance_warning, labels_for

    lmap = labels_for(ds, num_classes)
    doc["data"].update(labels_present=lmap.labels is not None, label_scheme=lmap.scheme, num_classes=num_classes)
    if lmap.labels is None:
        return None, None
    labels = lmap.labels[kept]
    found = list(lmap.warnings)
    usable = lmap.meaningful
    in_range = (labels >= 0) & (labels < num_classes)
    acc = accuracy(np.where(in_range, labels, -1))
    if usable and chance_level(acc["top1"], len(labels), num_classes):
        usable = False
        found.append(chance_warning(acc["top1"], len(labels), num_classes))
    doc["warnings"].extend(found)
    if not usable:
        doc["data"]["unusable_labels"] = {"reference_top1": acc["top1"], "reference_top5": acc["top5"],
                                          "note": "labels that cannot be the model's classes: not accuracy"}
        return None, None
    doc["data"]["labels"] = True
    return labels, acc


def accuracy_section(doc: dict[str, Any]) -> dict[str, Any]:
    """The per-artifact accuracy block a bench document takes (see vitdeploy.bench)."""
    out = {doc["reference"]["artifact"]: {"precision": doc["reference"]["precision"], "cosine": 1.0, "top1_agreement": 1.0,
                                          "top1": doc["reference"].get("top1"), "top1_drop_points": 0.0 if "top1" in doc["reference"] else None}}
    for c in doc["candidates"]:
        out[c["artifact"]] = {"precision": c["precision"], "cosine": c["comparison"]["cosine_mean"],
                              "top1_agreement": c["comparison"]["top1_agreement"], "top1": c.get("top1"),
                              "top1_drop_points": c.get("top1_drop_points")}
    return out


def document(doc: dict[str, Any]) -> Document:
    """validate.md as a ``Document``: the reference, the data, warnings, one row per candidate, the worst samples."""
    ref, data = doc["reference"], doc["data"]
    labels = data["labels"]
    about = (" with labels" if labels else " (labels that cannot be the model's classes: agreement only)"
             if data.get("labels_present") else " (no labels: agreement only)")
    skipped = f", {data['skipped']} undecodable skipped" if data["skipped"] else ""
    head = Section(notes=[Note(w, "Warning") for w in doc.get("warnings", [])])
    unusable = data.get("unusable_labels")
    if unusable:
        head.notes.append(Note(f"Top-1 not reported and not gated: the reference scores {unusable['reference_top1']:.2%} on "
                               "these labels, a figure about the labels, not the model.", label=None))
    if labels:
        head.paragraphs.append(f"Reference top-1: {ref['top1']:.2%}, top-5: {ref['top5']:.2%}")
    columns = [Column("artifact"), Column("precision"), Column("backend"), Column("cosine (min)", "right"),
               Column("top-1 agree", "right"), Column("max abs", "right")]
    if labels:
        columns += [Column("top-1", "right"), Column("drop (pt)", "right")]
    head.table = Table(columns + [Column("result")])
    for c in doc["candidates"]:
        cmp_ = c["comparison"]
        row: list[Value] = [c["artifact"], c["precision"], c["backend"], f"{cmp_['cosine_mean']:.5f} ({cmp_['cosine_min']:.5f})",
                            f"{cmp_['top1_agreement']:.2%}", f"{cmp_['max_abs']:.3g}"]
        if labels:
            row += [f"{c['top1']:.2%}", f"{c['top1_drop_points']:+.2f}"]
        row.append("pass" if c["passed"] else Cell.of(Span("FAIL", "bad"), f": {'; '.join(c['failures'])}"))
        head.table.add_row(*row)
    sections = [head]
    worst = [c for c in doc["candidates"] if c["worst_samples"]]
    if worst:
        sections.append(Section(paragraphs=["Worst samples (lowest cosine first):"],
                                items=[f"{c['artifact']}: {', '.join(Path(s).name for s in c['worst_samples'][:5])}" for c in worst]))
    return Document(f"Validation against {ref['artifact']} ({ref['precision']}, {ref['backend']})",
                    facts=[("Data", f"{data['source']}, {data['samples']} samples{about}{skipped}")], sections=sections)


def markdown(doc: dict[str, Any]) -> str:
    """validate.md."""
    return to_markdown(document(doc))


def summary_table(doc: dict[str, Any]) -> Table:
    """The console's table (80 columns): a row per candidate, its name over its precision and backend,
    minimum cosine, agreement, max abs (top-1 and its drop with labels), pass or FAIL; the legend below."""
    ref, labels = doc["reference"], doc["data"]["labels"]
    title = f"vs {ref['artifact']} ({ref['backend']}) on {doc['data']['samples']} samples"
    if labels:
        title += f"; reference top-1 {ref['top1']:.2%}"
    names = ["cos min", "agree", "max abs"] + (["top-1", "drop\npt"] if labels else [])
    table = Table([Column("candidate", wrap=True, cut=True), *(Column(n, "right") for n in names), Column("result")],
                  title=title, footnotes=["cos min: minimum cosine over samples; agree: top-1 agreement with the reference"
                                          + ("; drop: top-1 points lost" if labels else "")])
    for c in doc["candidates"]:
        cmp_ = c["comparison"]
        row: list[Value] = [Cell.of(c["artifact"], "\n", Span(f"{c['precision']}, {c['backend']}", "muted")),
                            f"{cmp_['cosine_min']:.5f}", f"{cmp_['top1_agreement']:.1%}", f"{cmp_['max_abs']:.2g}"]
        if labels:
            row += [f"{c['top1']:.2%}", f"{c['top1_drop_points']:+.2f}"]
        row.append(Cell.of(Span("pass", "good")) if c["passed"] else Cell.of(Span("FAIL", "bad")))
        table.add_row(*row)
    return table
