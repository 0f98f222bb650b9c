"""The bench/deploy plot reads: labels that do not overlap, and no ×10ⁿ offset on a flat axis (issue 11)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

pytest.importorskip("matplotlib")

from vitdeploy.bench import plots as R


def _doc(latency: dict[str, list[float]], accuracy: dict[str, dict[str, Any]] | None = None,
         batches: tuple[int, ...] = (1, 8, 32)) -> dict[str, Any]:
    """A minimal bench document: p50 per artifact and batch (p90 10 % above), speedups vs the first."""
    names = list(latency)
    results = []
    for name in names:
        for b, p50 in zip(batches, latency[name]):
            first = latency[names[0]][batches.index(b)]
            results.append({"artifact": name, "batch": b, "precision": name.split(".")[-1], "backend": "ort-cpu",
                            "latency_ms": {"p50": p50, "p90": p50 * 1.1}, "speedup": first / p50})
    doc: dict[str, Any] = {"conditions": {"cpu": {"model": "test cpu"}, "threads": 1}, "results": results,
                           "artifacts": [{"label": n, "precision": n.split(".")[-1], "backend": "ort-cpu"} for n in names]}
    if accuracy:
        doc["accuracy"] = accuracy
    return doc


def _no_offset(fig) -> None:
    fig.canvas.draw()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            assert axis.get_offset_text().get_text() == "", (ax.get_title(), axis.get_offset_text().get_text())
            lo, hi = sorted(axis.get_view_interval())
            assert hi - lo > 1e-9, (ax.get_title(), lo, hi)


def _no_overlap(fig) -> int:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts = [t for ax in fig.axes for t in ax.texts if t.get_text()]
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
    for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2):
        assert not box_a.overlaps(box_b), f"labels {a!r} and {b!r} overlap"
    return len(texts)


def test_equal_values_have_no_offset_and_a_real_range(tmp_path):
    # identical latencies, speedups all 1.0, 1 - cosine at rounding noise (1e-17) for every candidate
    lat = {"m.fp32": [2.0, 2.0, 2.0], "m.fp16": [2.0, 2.0, 2.0], "m.int8": [2.0, 2.0, 2.0]}
    acc = {"m.fp16": {"precision": "fp16", "cosine": 1.0 - 1e-17}, "m.int8": {"precision": "int8", "cosine": 1.0 - 1e-17}}
    doc = _doc(lat, acc)
    fig = R.plot_figure(doc)
    _no_offset(fig)
    _no_overlap(fig)
    assert R.write_plot(doc, tmp_path / "flat.png").stat().st_size > 0


def test_equal_top1_drops(tmp_path):
    lat = {"m.fp32": [1.0, 5.0, 20.0], "m.fp16": [1.0, 5.0, 20.0]}
    doc = _doc(lat, {"m.fp16": {"precision": "fp16", "top1_drop_points": 0.0}})
    fig = R.plot_figure(doc)
    _no_offset(fig)
    lo, hi = fig.axes[1].get_ylim()
    assert lo <= -0.5 and hi >= 0.5  # a range in points a reader can use, not ±1e-16
    R.write_plot(doc, tmp_path / "top1.png")


def test_close_points_labels_do_not_overlap(tmp_path):
    # three artifacts within 1 % of each other at every batch, two accuracy points a hair apart: the latency
    # values are not labelled on several lines (they met on the markers), the accuracy points are
    lat = {"vit.fp32": [1.00, 4.00, 15.0], "vit.fp16": [1.01, 4.02, 15.1], "vit.int8": [0.99, 3.98, 14.9]}
    acc = {"vit.fp16": {"precision": "fp16", "cosine": 0.99999}, "vit.int8": {"precision": "int8", "cosine": 0.999985}}
    doc = _doc(lat, acc)
    fig = R.plot_figure(doc)
    assert _no_overlap(fig) == 2  # every accuracy point still labelled
    _no_offset(fig)
    assert R.write_plot(doc, tmp_path / "close.png").stat().st_size > 0


def test_many_close_accuracy_points(tmp_path):
    lat = {f"vit.{p}": [1.0, 4.0] for p in ("fp32", "fp16", "int8", "int8-ort", "int8-hp")}
    acc = {name: {"precision": name.split(".")[-1][:4], "top1_drop_points": 0.1 * k} for k, name in enumerate(lat)
           if not name.endswith("fp32")}
    fig = R.plot_figure(_doc(lat, acc, batches=(1, 8)))
    assert _no_overlap(fig) == 4  # no value labels beyond three artifacts; four point labels
    _no_offset(fig)
