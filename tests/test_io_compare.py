import numpy as np
import pytest

from vitdeploy.core.compare import Thresholds, assert_close, compare
from vitdeploy.core.errors import OutputExistsError, ShapeMismatchError, ValueMismatchError
from vitdeploy.core.io import atomic_path, check_output, read_manifest, write_manifest


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "a.onnx"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("disk full")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_replaces_on_success(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert oct(target.stat().st_mode & 0o777) != oct(0o600)


def test_check_output_refuses_existing_without_force(tmp_path):
    p = tmp_path / "x.onnx"
    p.write_bytes(b"1")
    with pytest.raises(OutputExistsError, match="--force"):
        check_output(p)
    assert check_output(p, force=True) == p


def test_manifest_round_trip_and_mismatch(tmp_path):
    art = tmp_path / "m.onnx"
    art.write_bytes(b"onnx")
    write_manifest(art, {"artifact": "m.onnx", "kind": "onnx"})
    m = read_manifest(art)
    assert m["kind"] == "onnx" and len(m["sha256"]) == 64
    other = tmp_path / "m.engine"  # same stem, other artifact: the manifest is not its
    assert read_manifest(other) is None


def test_compare_figures():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((16, 10))
    c = compare(ref, ref + 1e-6)
    assert c.max_abs == pytest.approx(1e-6, rel=1e-3)
    assert c.cosine_min > 0.999999 and c.top1_agreement == 1.0
    swapped = ref.copy()
    swapped[0] = -swapped[0]
    c2 = compare(ref, swapped)
    assert c2.top1_agreement == pytest.approx(15 / 16)
    assert c2.worst[0] == 0 and c2.cosine_min == pytest.approx(-1.0)


def test_compare_nan_never_passes():
    ref = np.ones((2, 4))
    cand = ref.copy()
    cand[1, 2] = np.nan
    with pytest.raises(ValueMismatchError):
        assert_close(ref, cand, Thresholds(max_abs=None, cosine_min=0.9, top1_agreement=None), "nan")


def test_assert_close_reports_figures_and_shape_errors():
    ref = np.zeros((2, 3))
    ref[:, 0] = 1
    with pytest.raises(ValueMismatchError) as e:
        assert_close(ref, ref + 0.5, Thresholds(max_abs=1e-4), "planted")
    assert "max_abs 0.5" in str(e.value) and e.value.figures["max_abs"] == pytest.approx(0.5)
    with pytest.raises(ShapeMismatchError):
        compare(ref, ref[:, :2])


def test_judge_is_the_one_verdict():
    """validate and quantize judge with ``judge``: agreement relaxed to what the samples resolve (or off),
    the top-1 drop limit widened the same way, the failures in the order checked."""
    from vitdeploy.core.compare import PRECISION_THRESHOLDS, judge

    ref = np.eye(10, dtype=np.float32)[np.arange(40) % 10]
    c = compare(ref, np.roll(ref, 1, axis=1))  # every sample's top class moved: cosine 0, agreement 0
    limits = PRECISION_THRESHOLDS["int8"]
    v = judge(c, limits)
    assert not v.passed and v.thresholds.top1_agreement == 0.95 and v.max_top1_drop is None
    assert [f.split()[0] for f in v.failures] == ["cosine", "top-1"]
    v = judge(c, limits, agreement=False, top1_drop=4.0, max_top1_drop=1.5)
    assert v.thresholds.top1_agreement is None and v.max_top1_drop == 5.0  # 2 of 40 samples: 5 points
    assert v.failures == (f"cosine {c.cosine_min:.6f} < 0.98",)
    v = judge(compare(np.eye(8, 4), np.eye(8, 4)), limits, top1_drop=30.0, max_top1_drop=1.5, labelled=8)
    assert v.thresholds.top1_agreement == 0.75 and v.failures == ("top-1 drop 30.00 points > 25.00",)


def test_agreement_is_topk_accuracy_against_the_reference_top1():
    """Tied outputs: the first largest is the top-1 on both sides, so a model agrees with itself."""
    from vitdeploy.core.compare import TopKAccuracy

    x = np.zeros((3, 20), dtype=np.float32)
    x[:, [2, 7, 11]] = 1.0
    assert compare(x, x).top1_agreement == 1.0 and compare(x, x).top5_agreement == 1.0
    acc = TopKAccuracy()
    acc.update(x, np.array([2, 7, -1]))
    assert acc.result() == {"top1": 1 / 3, "top5": 2 / 3}
