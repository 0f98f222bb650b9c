"""Class folders named by ImageNet-1k WordNet ids score against the standard 1000-class indices, and
labels that cannot be the model's classes are warned about and not used (issue 15; the situation
of shared/cases/wnid-subset-labels: a subset of 3 wnid folders and a 1000-class model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from vitdeploy.data.labels import chance_level, labels_for
from vitdeploy.data.sources import open_dataset
from vitdeploy.data import imagenet
from vitdeploy.validate import ValidateConfig, markdown, validate

# (wnid, ImageNet-1k index in the sorted-wnid order, colour): the shared case's three classes
CLASSES = [("n02085620", 151, (200, 30, 30)), ("n02123045", 281, (30, 200, 30)), ("n04037443", 751, (30, 30, 200))]


def _image_folder(root: Path, names: list[str], per_class: int = 4) -> Path:
    for name, (_, _, col) in zip(names, CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            noise = np.random.default_rng(i).integers(-20, 20, (16, 16, 3))
            Image.fromarray(np.clip(np.array(col)[None, None] + noise, 0, 255).astype(np.uint8)).save(
                root / name / f"img{i}.png")
    return root


def _colour_model(path: Path, num_classes: int = 1000) -> Path:
    """An ONNX classifier with ``num_classes`` logits: the mean colour (normalised with mean/std 0.5)
    times a weight lighting up 151 / 281 / 751 (mod num_classes) for red / green / blue images."""
    w = np.zeros((3, num_classes), np.float32)
    for _, idx, col in CLASSES:
        w[:, idx % num_classes] = np.asarray(col, np.float32) / 255.0 * 4
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["input"], ["m"], axes=[2, 3], keepdims=0),
         helper.make_node("MatMul", ["m", "w"], ["logits"])],
        "colour", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", num_classes])],
        [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    path.with_suffix(".json").write_text(json.dumps({"precision": "fp32", "preprocessing": {
        "input_size": [3, 16, 16], "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bilinear", "crop_pct": 1.0}}))
    return path


def test_imagenet_wnids_are_the_standard_list():
    ids = imagenet.wnids()
    assert len(ids) == 1000 and len(set(ids)) == 1000 and list(ids) == sorted(ids)
    assert [imagenet.class_index(w) for w in ("n01440764", "n02085620", "n02123045", "n04037443")] == [0, 151, 281, 751]
    assert ids[-1] == "n15075141"
    assert imagenet.looks_like_wnid("n99999999") and not imagenet.is_imagenet1k_wnid("n99999999")


def test_wnid_subset_folders_get_imagenet_indices(tmp_path):
    ds = open_dataset(_image_folder(tmp_path / "val", [c[0] for c in CLASSES]))
    assert ds.classes == ["n02085620", "n02123045", "n04037443"] and ds.label_scheme == "imagenet"
    assert sorted(set(ds.labels.tolist())) == [151, 281, 751]
    assert all(int(lab) == dict((w, i) for w, i, _ in CLASSES)[f.parent.name] for f, lab in zip(ds.files, ds.labels))
    m = labels_for(ds, 1000)
    assert m.meaningful and not m.warnings and m.scheme == "imagenet" and np.array_equal(m.labels, ds.labels)


def test_wnid_folders_with_a_model_without_1000_outputs(tmp_path):
    ds = open_dataset(_image_folder(tmp_path / "val", [c[0] for c in CLASSES]))
    m = labels_for(ds, 10)  # 3 wnid folders, 10 outputs: cannot be its classes
    assert not m.meaningful and "not 1000" in m.warnings[0]
    m = labels_for(ds, 3)  # exactly these folders: ImageFolder's sorted order, with a note
    assert m.meaningful and m.scheme == "sorted" and len(m.warnings) == 1
    assert sorted(set(m.labels.tolist())) == [0, 1, 2]


def test_numeric_and_named_folders_keep_their_behaviour(tmp_path):
    ds = open_dataset(_image_folder(tmp_path / "num", ["3", "12", "7"]))
    assert ds.classes == ["3", "7", "12"] and ds.label_scheme == "index"
    assert sorted(set(ds.labels.tolist())) == [3, 7, 12]
    assert labels_for(ds, 1000).meaningful and not labels_for(ds, 1000).warnings
    m = labels_for(ds, 10)  # label 12 of a 10-class model
    assert not m.meaningful and "outside the model's 10 classes" in m.warnings[0]

    ds = open_dataset(_image_folder(tmp_path / "named", ["red", "green", "blue"]))
    assert ds.classes == ["blue", "green", "red"] and ds.label_scheme == "sorted"
    assert sorted(set(ds.labels.tolist())) == [0, 1, 2]
    m = labels_for(ds, 3)
    assert m.meaningful and not m.warnings and np.array_equal(m.labels, ds.labels)
    assert labels_for(ds, 1000).warnings  # 3 sorted folders for 1000 outputs: said, checked at chance later


def test_not_imagenet1k_wnids_cannot_be_1000_class_labels(tmp_path):
    ds = open_dataset(_image_folder(tmp_path / "val", ["n02085620", "n99999999"]))
    assert ds.label_scheme == "sorted" and sorted(set(ds.labels.tolist())) == [0, 1]
    m = labels_for(ds, 1000)
    assert not m.meaningful and "n99999999" in m.warnings[0]


def test_array_labels_out_of_range(tmp_path):
    np.savez(tmp_path / "d.npz", images=np.zeros((4, 3, 16, 16), np.float32), labels=np.array([0, 1, 2, 9]))
    ds = open_dataset(tmp_path / "d.npz")
    assert ds.label_scheme == "array" and labels_for(ds, 10).meaningful
    assert not labels_for(ds, 5).meaningful
    np.save(tmp_path / "u.npy", np.zeros((2, 3, 16, 16), np.float32))
    assert labels_for(open_dataset(tmp_path / "u.npy"), 10).labels is None


def test_chance_level():
    assert chance_level(0.0, 12, 1000) and chance_level(0.0, 256, 1000)
    assert not chance_level(1.0, 12, 1000) and not chance_level(0.9, 300, 10)
    assert chance_level(0.1, 300, 10) and not chance_level(0.3, 300, 10)


def test_validate_scores_wnid_subset_against_imagenet_indices(tmp_path):
    """The shared case: a perfect 1000-class model on 3 wnid folders scores 100 %, not 0 %."""
    model = _colour_model(tmp_path / "colour.onnx")
    data = _image_folder(tmp_path / "val_subset", [c[0] for c in CLASSES])
    doc = validate(ValidateConfig(reference=str(model), candidates=(str(model),), data=data))
    assert doc["data"]["labels"] and doc["data"]["label_scheme"] == "imagenet" and not doc["warnings"]
    assert doc["reference"]["top1"] == 1.0 and doc["candidates"][0]["top1"] == 1.0 and doc["passed"]
    assert "Reference top-1: 100.00%" in markdown(doc)


def test_validate_refuses_labels_at_chance(tmp_path):
    """The same perfect model on folders numbered 0..2 (what vitdeploy did to wnid folders before):
    the reference is at chance, a warning says so, and no top-1 figure or drop is reported or gated."""
    model = _colour_model(tmp_path / "colour.onnx")
    data = _image_folder(tmp_path / "val", ["red", "green", "blue"])
    doc = validate(ValidateConfig(reference=str(model), candidates=(str(model),), data=data))
    assert not doc["data"]["labels"] and doc["data"]["labels_present"]
    assert doc["data"]["unusable_labels"]["reference_top1"] == 0.0
    assert "top1" not in doc["reference"] and "top1_drop_points" not in doc["candidates"][0]
    assert any("not clearly above chance" in w for w in doc["warnings"])
    md = markdown(doc)
    assert "**Warning:**" in md and "Reference top-1" not in md and "cannot be the model's classes" in md


def test_validate_warns_on_wnid_folders_for_a_10_class_model(tmp_path):
    model = _colour_model(tmp_path / "ten.onnx", num_classes=10)
    data = _image_folder(tmp_path / "val", [c[0] for c in CLASSES])
    doc = validate(ValidateConfig(reference=str(model), candidates=(str(model),), data=data))
    assert any("not 1000" in w for w in doc["warnings"])
    assert not doc["data"]["labels"] and doc["data"]["num_classes"] == 10
    assert "top1" not in doc["candidates"][0] and doc["candidates"][0]["passed"]  # agreement/cosine still gate


def test_validate_cli_prints_label_warnings_once(cli, tmp_path):
    model = _colour_model(tmp_path / "colour.onnx")
    data = _image_folder(tmp_path / "val", ["red", "green", "blue"])
    rc, out, err = cli("validate", model, model, "--data", data)
    assert rc == 0, err
    warned = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warned) == len(set(warned)) == 2 and "Warning" not in err  # each once; no Python warning lines
    assert "sorted order" in warned[0] and "not clearly above" in warned[1]


@pytest.mark.parametrize("names, scheme_ok", [([c[0] for c in CLASSES], True), (["red", "green", "blue"], False)])
def test_quantize_uses_the_same_labels(tmp_path, monkeypatch, names, scheme_ok):
    """quantize's held-out top-1: wnid folders score 100% as ImageNet indices; sorted names for a
    1000-output model are warned about and do not count (the gate falls back to cosine)."""
    from vitdeploy.calib.quantize import QuantizeConfig, quantize

    monkeypatch.setenv("VITDEPLOY_CACHE", str(tmp_path / "cache"))
    model = _colour_model(tmp_path / "colour.onnx")
    data = _image_folder(tmp_path / "calib", names, per_class=8)
    m = quantize(QuantizeConfig(model=model, precision="fp16", calib=data, samples=12, holdout=12,
                                output=tmp_path / "c16.onnx")).manifest
    gate = m["accuracy"]["gate"]
    if scheme_ok:
        assert m["accuracy"]["top1_fp32"] == 1.0 and gate["top1_counted"] and not m["warnings"]
    else:
        assert "top1_fp32" not in m["accuracy"] and not gate["top1_counted"]
        assert any("sorted order" in w for w in m["warnings"])
