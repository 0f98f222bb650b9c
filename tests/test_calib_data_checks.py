"""Calibration/evaluation data checks: wrongly scaled .npy/.npz arrays are refused, 16-bit and float
images keep their picture, a preprocessed array needs no preprocessing options (issue 10)."""

from __future__ import annotations

import io
import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from vitdeploy.data.batches import load_samples
from vitdeploy.data.checks import check_array_values, check_shape, value_sample
from vitdeploy.data.decode import to_rgb8
from vitdeploy.core.preprocessing import Preprocessing
from vitdeploy.data.preprocess import preprocess_image, resolve_preprocess
from vitdeploy.data.sources import Dataset, open_dataset
from vitdeploy.core.errors import InputError, UsageError

IMAGENET = Preprocessing((3, 32, 32), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bilinear", 1.0)
HALF = Preprocessing((3, 32, 32), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bilinear", 1.0)


def _pixels(n: int = 48, seed: int = 0) -> np.ndarray:
    """(n, 3, 32, 32) uint8 'images': smooth gradients plus noise, like real pictures."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    base = np.stack([xx, yy, (xx + yy) / 2])[None] * rng.uniform(80, 255, (n, 3, 1, 1))
    return np.clip(base + rng.normal(0, 20, (n, 3, 32, 32)), 0, 255).astype(np.uint8)


def _normalise(raw: np.ndarray, pre: Preprocessing) -> np.ndarray:
    mean, std = np.asarray(pre.mean)[:, None, None], np.asarray(pre.std)[:, None, None]
    return ((raw / 255.0 - mean) / std).astype(np.float32)


def _array_ds(tmp_path, arr: np.ndarray, name: str = "d.npz") -> Dataset:
    if name.endswith(".npy"):
        np.save(tmp_path / name, arr)
    else:
        np.savez(tmp_path / name, images=arr)
    return open_dataset(tmp_path / name)


# -- .npy/.npz values ---------------------------------------------------------------------------

def test_raw_uint8_pixels_refused_with_fix_and_override(tmp_path):
    ds = _array_ds(tmp_path, _pixels())
    assert ds.source_dtype == "uint8" and ds.rows([0]).dtype == np.float32
    for pre in (None, IMAGENET, Preprocessing.for_array((3, 32, 32))):
        with pytest.raises(InputError) as exc:
            check_array_values(ds, pre)
        msg = str(exc.value)
        assert "raw pixels" in msg and "--no-data-check" in msg and "uint8" in msg
        assert "\n" not in msg and len(msg) <= 200


def test_other_integer_dtypes_refused(tmp_path):
    ds = _array_ds(tmp_path, np.zeros((4, 3, 32, 32), np.int16))
    with pytest.raises(InputError, match="int16 array looks like raw pixels"):
        check_array_values(ds, HALF)


@pytest.mark.parametrize("pre", [None, IMAGENET, HALF])
def test_float_0_255_refused(tmp_path, pre):
    ds = _array_ds(tmp_path, _pixels().astype(np.float32))
    with pytest.raises(InputError) as exc:
        check_array_values(ds, pre)
    msg = str(exc.value)
    assert "raw 0-255 pixels" in msg and "divide by 255" in msg and "--no-data-check" in msg
    assert "\n" not in msg and len(msg) <= 200


@pytest.mark.parametrize("pre, low", [(IMAGENET, "-2.12"), (HALF, "-1.00")])
def test_0_1_floats_refused_when_the_model_normalises(tmp_path, pre, low):
    ds = _array_ds(tmp_path, (_pixels() / 255.0).astype(np.float32))
    with pytest.raises(InputError) as exc:
        check_array_values(ds, pre)
    msg = str(exc.value)
    assert "scaled to [0, 1] but not normalised" in msg and f"range {low}.." in msg and "--no-data-check" in msg
    # a model that takes [0, 1] inputs (mean 0, std 1) accepts them; so does the generic check
    check_array_values(ds, Preprocessing((3, 32, 32), (0.0,) * 3, (1.0,) * 3))
    check_array_values(ds, None)


def test_data_normalised_for_another_range_refused(tmp_path):
    """ImageNet-normalised data (about -2.1..2.6) for a model that takes [0, 1] inputs."""
    ds = _array_ds(tmp_path, _normalise(_pixels(), IMAGENET))
    with pytest.raises(InputError, match=r"channel 0 values .* do not fit normalised inputs \(0.00..1.00"):
        check_array_values(ds, Preprocessing((3, 32, 32), (0.0,) * 3, (1.0,) * 3))


def test_shifted_channel_mean_refused(tmp_path):
    arr = _normalise(_pixels(), HALF)
    arr[:, 2] += 1.6  # channel 2 now ~0.6..2.6 (mean > 1.2): outside [-1, 1] on average
    with pytest.raises(InputError, match=r"channel 2 values .*\(mean 1\.\d+\)"):
        check_array_values(_array_ds(tmp_path, arr), HALF)


@pytest.mark.parametrize("made_for", [IMAGENET, HALF])
def test_properly_normalised_and_random_normal_data_accepted(tmp_path, made_for):
    ds = _array_ds(tmp_path, _normalise(_pixels(), made_for))
    for pre in (IMAGENET, HALF, None, Preprocessing.for_array((3, 32, 32))):
        check_array_values(ds, pre)
    normal = _array_ds(tmp_path, np.random.default_rng(0).standard_normal((24, 3, 32, 32)).astype(np.float32), "n.npy")
    zeros = _array_ds(tmp_path, np.zeros((4, 3, 32, 32), np.float32), "z.npy")
    for pre in (IMAGENET, HALF, None):
        check_array_values(normal, pre)
        check_array_values(zeros, pre)


def test_allow_skips_the_check_and_images_are_not_checked(tmp_path):
    check_array_values(_array_ds(tmp_path, _pixels()), HALF, allow=True)
    check_array_values(_array_ds(tmp_path, _pixels().astype(np.float32), "f.npz"), HALF, allow=True)
    (tmp_path / "imgs").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "imgs" / "a.png")
    check_array_values(open_dataset(tmp_path / "imgs"), HALF)


def test_nan_refused_and_generic_limit(tmp_path):
    arr = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    arr[0, 1, 2, 3] = np.nan
    with pytest.raises(InputError, match="NaN or inf"):
        check_array_values(_array_ds(tmp_path, arr), None)
    wide = np.random.default_rng(1).standard_normal((8, 3, 32, 32)).astype(np.float32) * 40  # -100..100
    with pytest.raises(InputError, match="far outside the range of normalised images"):
        check_array_values(_array_ds(tmp_path, wide, "w.npz"), None)


def test_value_sample_is_bounded_and_covers_every_channel():
    arr = np.arange(100 * 3 * 16 * 16, dtype=np.float32).reshape(100, 3, 16, 16)
    s = value_sample(arr, per_channel=500)
    assert s.shape == (500, 3)
    # every sampled row is one position seen in all channels: channel c is channel 0 + c * 256
    assert np.array_equal(s[:, 1] - s[:, 0], np.full(500, 256.0)) and np.array_equal(s[:, 2] - s[:, 0], np.full(500, 512.0))
    assert np.array_equal(s, value_sample(arr, per_channel=500))  # seeded
    small = value_sample(arr[:1, :, :2, :2])
    assert small.shape == (4, 3) and sorted(small[:, 0]) == [0, 1, 16, 17]


# -- Preprocessing for arrays ----------------------------------------------------------------------

def test_preprocess_for_array_and_resolve(tmp_path):
    ds = _array_ds(tmp_path, _normalise(_pixels(4), HALF))
    pre = resolve_preprocess(Preprocessing(), ds)
    assert pre.input_size == (3, 32, 32) and pre.mean is None and pre.std is None and not pre.normalisation_known
    check_shape(ds, pre)
    x = load_samples(ds, pre, np.arange(4))[:]
    assert np.array_equal(x, ds.array)
    assert json.loads(pre.key())[1] is None
    # what is known is used: manifest mean/std without input_size, or overrides
    half = resolve_preprocess(Preprocessing.from_manifest({"preprocessing": {"mean": [0.5] * 3, "std": [0.5] * 3}}), ds)
    assert half.mean == (0.5,) * 3 and half.input_size == (3, 32, 32)
    full = resolve_preprocess(Preprocessing.from_manifest({"preprocessing": {
        "input_size": [3, 32, 32], "mean": [0.5] * 3, "std": [0.5] * 3, "crop_pct": 0.9}}), ds)
    assert full == Preprocessing((3, 32, 32), (0.5,) * 3, (0.5,) * 3, "bicubic", 0.9)
    assert resolve_preprocess(Preprocessing().updated(Preprocessing(input_size=(3, 16, 16))), ds).input_size == (3, 16, 16)
    # a manifest written for array data (mean/std null) reads back as unknown, not as a crash
    nulls = {"preprocessing": {"input_size": [3, 32, 32], "mean": None, "std": None}}
    assert resolve_preprocess(Preprocessing.from_manifest(nulls), ds) == Preprocessing.for_array((3, 32, 32))
    with pytest.raises(UsageError, match="both --mean and --std"):
        Preprocessing.for_array((3, 32, 32), mean=(0.5,) * 3)
    # images still need the full preprocessing
    (tmp_path / "imgs").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "imgs" / "a.png")
    with pytest.raises(UsageError, match="missing input_size, mean, std"):
        resolve_preprocess(Preprocessing(), open_dataset(tmp_path / "imgs"))
    with pytest.raises(UsageError, match="images need the model's mean/std"):
        preprocess_image(Image.new("RGB", (8, 8)), pre)


# -- 16-bit and float images --------------------------------------------------------------------

RAMP16 = np.tile(np.linspace(0, 65535, 64), (64, 1)).astype(np.uint16)  # full 16-bit range, left to right (64x64)


def _preprocess_file(path, pre: Preprocessing = HALF) -> np.ndarray:
    with Image.open(path) as img:
        return preprocess_image(img, pre)


def _assert_ramp(a: np.ndarray, pre: Preprocessing) -> None:
    lo = (0 - np.asarray(pre.mean)) / np.asarray(pre.std)
    hi = (1 - np.asarray(pre.mean)) / np.asarray(pre.std)
    assert a.shape == (3, 32, 32) and a.std() > 0.3
    assert (np.diff(a, axis=2) >= -1e-6).all()  # monotonic along the width
    assert (np.ptp(a, axis=1) <= 1e-6).all()  # constant down the height
    step = 1.0 / 255 / min(pre.std)
    np.testing.assert_allclose(a.min(axis=(1, 2)), lo, atol=10 * step)  # a 64x64 ramp resized to 32x32
    np.testing.assert_allclose(a.max(axis=(1, 2)), hi, atol=10 * step)
    pixels = a * np.asarray(pre.std)[:, None, None] + np.asarray(pre.mean)[:, None, None]
    assert np.allclose(pixels[0], pixels[1], atol=1e-5) and np.allclose(pixels[1], pixels[2], atol=1e-5)  # gray


@pytest.mark.parametrize("pre", [HALF, IMAGENET])
def test_16bit_png_ramp_matches_the_8bit_scene(tmp_path, pre):
    Image.fromarray(RAMP16).save(tmp_path / "g16.png")
    Image.fromarray((RAMP16 >> 8).astype(np.uint8)).save(tmp_path / "g8.png")
    with Image.open(tmp_path / "g16.png") as img:
        assert img.mode == "I;16"
    pre = Preprocessing((3, 32, 32), pre.mean, pre.std, "bicubic", 1.0)
    a16, a8 = _preprocess_file(tmp_path / "g16.png", pre), _preprocess_file(tmp_path / "g8.png", pre)
    _assert_ramp(a16, pre)
    assert np.abs(a16 - a8).max() <= 1.0 / 255 / min(pre.std) + 1e-6


def test_16bit_big_endian_and_int32_images(tmp_path):
    a8 = _preprocess_file_img(Image.fromarray((RAMP16 >> 8).astype(np.uint8)))
    big = Image.frombytes("I;16B", (64, 64), RAMP16.astype(">u2").tobytes())
    assert np.array_equal(_preprocess_file_img(big), a8)
    i32 = Image.fromarray(RAMP16.astype(np.int32))
    assert i32.mode == "I" and np.array_equal(_preprocess_file_img(i32), a8)
    small = Image.fromarray((RAMP16 >> 8).astype(np.int32))  # an "I" image holding 8-bit values: used as is
    assert np.array_equal(_preprocess_file_img(small), a8)


def _preprocess_file_img(img: Image.Image) -> np.ndarray:
    return preprocess_image(img, Preprocessing((3, 32, 32), (0.5,) * 3, (0.5,) * 3, "bicubic", 1.0))


def test_float_tiff_ramp_matches_the_8bit_scene(tmp_path):
    f01 = (RAMP16 / 65535.0).astype(np.float32)
    Image.fromarray(f01).save(tmp_path / "f.tiff")
    Image.fromarray(np.round(f01 * 255).astype(np.uint8)).save(tmp_path / "g8.png")
    with Image.open(tmp_path / "f.tiff") as img:
        assert img.mode == "F"
    pre = Preprocessing((3, 32, 32), (0.5,) * 3, (0.5,) * 3, "bicubic", 1.0)
    a, a8 = _preprocess_file(tmp_path / "f.tiff", pre), _preprocess_file(tmp_path / "g8.png", pre)
    _assert_ramp(a, pre)
    assert np.abs(a - a8).max() <= 1.0 / 255 / 0.5 + 1e-6
    # floats already 0..255 are used as they are; any other range is min-max scaled
    assert np.array_equal(_preprocess_file_img(Image.fromarray(f01 * 255)), a8)
    assert np.abs(_preprocess_file_img(Image.fromarray(f01 * 1000 - 300)) - a8).max() <= 2.0 / 255 / 0.5 + 1e-6


def test_to_rgb8_values():
    ramp = np.tile(np.array([0, 256, 32768, 65535], np.uint16), (2, 1))
    assert np.asarray(to_rgb8(Image.fromarray(ramp)))[0, :, 0].tolist() == [0, 1, 128, 255]
    f = Image.fromarray(np.array([[0.0, 0.5, 1.0, np.nan]], np.float32))
    assert np.asarray(to_rgb8(f))[0, :, 1].tolist() == [0, 128, 255, 0]
    const = Image.fromarray(np.full((2, 2), 1000.0, np.float32))
    assert np.asarray(to_rgb8(const)).max() == 255  # constant out of range: clipped
    # other modes: Pillow's own conversion, as before
    la = Image.fromarray(np.full((2, 2, 2), 77, np.uint8), "LA")
    rgba = Image.new("RGBA", (2, 2), (10, 20, 30, 0))
    p = Image.new("P", (2, 2))
    for img in (la, rgba, p, Image.new("CMYK", (2, 2), (0, 255, 0, 0)), Image.new("L", (2, 2), 9)):
        assert to_rgb8(img).mode == "RGB"
        assert np.array_equal(np.asarray(to_rgb8(img)), np.asarray(img.convert("RGB")))


def _png16(arr: np.ndarray, color_type: int) -> bytes:
    """A 16-bit PNG (color type 0 gray, 2 RGB, 6 RGBA) of an (H, W[, C]) uint16 array."""
    h, w = arr.shape[:2]
    raw = b"".join(b"\0" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_16bit_rgb_png_keeps_its_colours():
    """Pillow opens a 16-bit RGB PNG as 8-bit RGB (high bytes) itself; nothing to fix, but checked."""
    rgb = np.stack([RAMP16, RAMP16 // 2, 65535 - RAMP16], -1)
    with Image.open(io.BytesIO(_png16(rgb, 2))) as img:
        assert img.mode == "RGB"
        out = np.asarray(to_rgb8(img))
    assert np.array_equal(out, (rgb >> 8).astype(np.uint8))


# -- validate -----------------------------------------------------------------------------------

def _bare_onnx(path, size: int = 8) -> None:
    """A tiny classifier (N,3,size,size) -> (N,10) with no manifest beside it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).standard_normal((3 * size * size, 10)).astype(np.float32) * 0.1
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["f"], axis=1), helper.make_node("MatMul", ["f", "w"], ["logits"])],
        "bare", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_validate_bare_onnx_with_preprocessed_npz_needs_no_mean_std(cli, tmp_path):
    _bare_onnx(tmp_path / "a.onnx")
    _bare_onnx(tmp_path / "b.onnx")
    assert not (tmp_path / "a.json").exists()
    x = np.random.default_rng(0).standard_normal((12, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "x.npz", images=x, labels=np.arange(12) % 10)
    rc, out, err = cli("validate", tmp_path / "a.onnx", tmp_path / "b.onnx", "--data", tmp_path / "x.npz", "--json")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["passed"] and doc["data"]["samples"] == 12 and doc["data"]["value_check"] is True
    cand = doc["candidates"][0]["comparison"]
    assert cand["cosine_min"] > 0.99999 and cand["top1_agreement"] == 1.0

    # the same check as quantize: raw pixels refused (exit 3) unless --no-data-check
    np.savez(tmp_path / "raw.npz", images=_pixels(12)[:, :, :8, :8])
    rc, _, err = cli("validate", tmp_path / "a.onnx", tmp_path / "b.onnx", "--data", tmp_path / "raw.npz")
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert rc == 3 and len(errors) == 1 and "raw pixels" in errors[0] and "--no-data-check" in errors[0], err
    rc, out, err = cli("validate", tmp_path / "a.onnx", tmp_path / "b.onnx", "--data", tmp_path / "raw.npz",
                       "--no-data-check", "--json")
    assert rc == 0 and json.loads(out)["data"]["value_check"] is False, err

    # samples that do not fit the bare model: the data is what is wrong (exit 3), read from the model itself
    np.save(tmp_path / "big.npy", np.zeros((4, 3, 16, 16), np.float32))
    rc, _, err = cli("validate", tmp_path / "a.onnx", tmp_path / "b.onnx", "--data", tmp_path / "big.npy")
    assert rc == 3 and "samples are (3, 16, 16) but the model takes (3, 8, 8)" in err, err


def test_validate_core_checks_values_against_the_manifest(tmp_path):
    """With a manifest (mean/std 0.5), 0..1 data is refused by validate's core before any model runs."""
    from vitdeploy.validate import ValidateConfig, validate

    _bare_onnx(tmp_path / "a.onnx")
    (tmp_path / "a.json").write_text(json.dumps({"artifact": "a.onnx", "precision": "fp32", "preprocessing": {
        "input_size": [3, 8, 8], "mean": [0.5] * 3, "std": [0.5] * 3}}))
    np.save(tmp_path / "u.npy", (_pixels(6)[:, :, :8, :8] / 255.0).astype(np.float32))
    with pytest.raises(InputError, match=r"scaled to \[0, 1\] but not normalised"):
        validate(ValidateConfig(str(tmp_path / "a.onnx"), (str(tmp_path / "a.onnx"),), tmp_path / "u.npy"))
    doc = validate(ValidateConfig(str(tmp_path / "a.onnx"), (str(tmp_path / "a.onnx"),), tmp_path / "u.npy",
                                  data_check=False))
    assert doc["passed"] and doc["data"]["samples"] == 6


@pytest.fixture
def vit_onnx(tmp_path_factory):
    from vitdeploy.export import ExportConfig, export

    folder = tmp_path_factory.mktemp("vit")
    return export(ExportConfig("vit_tiny_test", output=folder / "vit.onnx")).onnx_path


def test_quantize_refuses_raw_pixels_in_one_line_and_writes_nothing(cli, vit_onnx, tmp_path, monkeypatch):
    monkeypatch.setenv("VITDEPLOY_CACHE", str(tmp_path / "cache"))
    raw = _pixels(48)
    for name, arr in (("u8.npz", raw), ("f255.npz", raw.astype(np.float32))):
        np.savez(tmp_path / name, images=arr)
        out = tmp_path / f"{name}.int8.onnx"
        rc, _, err = cli("quantize", vit_onnx, "--int8", "--calib", tmp_path / name, "--samples", "32", "-o", out)
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert rc == 3 and len(errors) == 1 and "raw" in errors[0] and "--no-data-check" in errors[0], err
        assert not out.exists() and not out.with_suffix(".json").exists()
    out = tmp_path / "forced.int8.onnx"
    rc, _, err = cli("quantize", vit_onnx, "--int8", "--calib", tmp_path / "u8.npz", "--samples", "32", "-o", out,
                     "--no-data-check", "--no-gate")
    assert rc == 0, err
    assert json.loads(out.with_suffix(".json").read_text())["calibration_data"]["value_check"] is False


def test_quantize_bare_onnx_with_preprocessed_array_needs_no_preprocessing_options(cli, vit_onnx, tmp_path, monkeypatch):
    monkeypatch.setenv("VITDEPLOY_CACHE", str(tmp_path / "cache"))
    bare = tmp_path / "bare.onnx"
    bare.write_bytes(vit_onnx.read_bytes())  # no manifest beside it: a hand-exported ONNX
    np.savez(tmp_path / "x.npz", images=_normalise(_pixels(40), HALF))
    rc, _, err = cli("quantize", bare, "--int8", "--calib", tmp_path / "x.npz", "--samples", "32", "-o", tmp_path / "q.onnx")
    assert rc == 0, err
    m = json.loads((tmp_path / "q.json").read_text())
    assert m["preprocessing"] == {"input_size": [3, 32, 32], "layout": "NCHW"}  # mean/std unknown, not invented
    np.save(tmp_path / "small.npy", np.zeros((8, 3, 16, 16), np.float32))
    rc, _, err = cli("quantize", bare, "--int8", "--calib", tmp_path / "small.npy", "-o", tmp_path / "s.onnx")
    assert rc == 3 and "(3, 32, 32)" in err  # the input size comes from the ONNX


def test_channels_last_array_gets_the_transpose_as_its_fix(tmp_path):
    ds = _array_ds(tmp_path, _normalise(_pixels(4), HALF).transpose(0, 2, 3, 1))
    with pytest.raises(InputError, match=r"channels last .*transpose\(0, 3, 1, 2\)"):
        check_shape(ds, HALF)
