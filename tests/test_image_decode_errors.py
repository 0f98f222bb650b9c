"""Every per-image failure, whatever the decoder raises, is skipped, counted and named, or stops with
exit 3 under --on-error fail: never exit 1, never a traceback (issue 15). Odd but valid modes decode.
Also: a channels-last (N,H,W,C) model given N,C,H,W data is refused in one line before ONNX Runtime runs."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitdeploy.data import decode
from vitdeploy.data.batches import load_samples, skipped_warning
from vitdeploy.data.checks import check_shape
from vitdeploy.data.decode import ImageDecodeError
from vitdeploy.core.preprocessing import Preprocessing
from vitdeploy.data.sources import Dataset, open_dataset
from vitdeploy.core.errors import InputError

PRE = Preprocessing((3, 8, 8), (0.5,) * 3, (0.5,) * 3, "bicubic", 0.875)


def _scene(w: int = 40, h: int = 30) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([255 * xx / w, 255 * yy / h, 128 + 100 * np.sin(xx / 3.0)], -1).astype(np.uint8)


def _png_bytes(img: Image.Image, **kw) -> bytes:
    b = io.BytesIO()
    img.save(b, "PNG", **kw)
    return b.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _bomb_png() -> bytes:
    """A valid PNG header claiming 20000 x 20000 pixels (over twice Pillow's limit) and a tiny body."""
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    body = _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def _bad_files(folder: Path) -> dict[str, str]:
    """Write one file per kind of decode failure; name -> a word the skip reason must contain."""
    good = Image.fromarray(_scene())
    png = _png_bytes(good)
    jpg = io.BytesIO()
    good.save(jpg, "JPEG")
    flipped = bytearray(png)
    flipped[png.index(b"IDAT") + 10] ^= 0xFF  # corrupt compressed data (the CRC no longer matches)
    files = {"zero.png": b"", "truncated.png": png[: len(png) // 2], "truncated.jpg": jpg.getvalue()[:300],
             "text.jpg": b"not an image at all\n", "bomb.png": _bomb_png(), "flipped.png": bytes(flipped)}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return {"zero.png": "cannot identify", "truncated.png": "truncated", "truncated.jpg": "truncated",
            "text.jpg": "cannot identify", "bomb.png": "exceeds limit", "flipped.png": ""}


def _odd_mode_files(folder: Path) -> list[str]:
    """Valid images in modes that are not 8-bit RGB: they must decode, silently."""
    scene = _scene()
    gray16 = (scene[..., 0].astype(np.uint16) * 257).astype(">u2")
    Image.frombytes("I;16B", (40, 30), gray16.tobytes()).save(folder / "i16b.tiff")
    Image.fromarray(scene).convert("LA").save(folder / "la.png")
    pal = Image.fromarray(scene).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.save(folder / "p_trns.png", transparency=bytes(range(0, 256, 16)))  # per-entry alpha: bytes
    Image.fromarray(scene).convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray(scene[..., 0].astype(np.float32) / 255).save(folder / "f.tiff")
    frames = [Image.fromarray(np.roll(scene, k, axis=1)).convert("P") for k in range(3)]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    Image.fromarray(scene).convert("1").save(folder / "bilevel.png")
    Image.fromarray(scene).convert("RGBA").save(folder / "rgba.webp")
    with Image.open(folder / "i16b.tiff") as im, Image.open(folder / "p_trns.png") as p:
        assert im.mode == "I;16B" and isinstance(p.info.get("transparency"), bytes)
    return ["i16b.tiff", "la.png", "p_trns.png", "cmyk.jpg", "f.tiff", "anim.gif", "bilevel.png", "rgba.webp"]


def _listed(folder: Path, names: list[str]) -> Dataset:
    (folder / "list.txt").write_text("\n".join(names) + "\n")
    return open_dataset(folder / "list.txt")


def test_every_decode_failure_is_skipped_counted_and_named(tmp_path, capfd):
    reasons = _bad_files(tmp_path)
    (tmp_path / "folder.png").mkdir()  # a directory named like an image
    odd = _odd_mode_files(tmp_path)
    names = [*reasons, "folder.png", "missing.jpg", *odd]
    ds = _listed(tmp_path, names)
    s = load_samples(ds, PRE, np.arange(len(names)))
    x, kept = s[:], s.indices
    assert [names[i] for i in kept] == odd and x.shape == (len(odd), 3, 8, 8) and np.isfinite(x).all()
    skipped = {Path(f).name: why for f, why in ds.skipped}
    assert list(skipped) == [*reasons, "folder.png", "missing.jpg"]
    for name, word in reasons.items():
        assert word.lower() in skipped[name].lower() and "\n" not in skipped[name], (name, skipped[name])
    assert "directory" in skipped["folder.png"] and "No such file" in skipped["missing.jpg"]
    line = skipped_warning(ds)
    assert line.startswith(f"{len(skipped)} undecodable image(s) skipped: ") and "zero.png (" in line
    assert "and 5 more" in line and "\n" not in line
    assert capfd.readouterr().err == ""  # no Pillow warnings (palette transparency, bomb size) on stderr


@pytest.mark.parametrize("name", ["zero.png", "truncated.png", "truncated.jpg", "text.jpg", "bomb.png", "flipped.png"])
def test_on_error_fail_stops_with_exit_3_naming_the_file(tmp_path, name):
    _bad_files(tmp_path)
    Image.fromarray(_scene()).save(tmp_path / "ok.png")
    ds = _listed(tmp_path, ["ok.png", name])
    with pytest.raises(ImageDecodeError) as exc:
        load_samples(ds, PRE, np.arange(2), on_error="fail")
    assert exc.value.exit_code == 3 and name in str(exc.value) and "\n" not in str(exc.value)


def test_permission_denied_is_a_decode_failure(tmp_path, monkeypatch):
    Image.fromarray(_scene()).save(tmp_path / "ok.png")
    Image.fromarray(_scene()).save(tmp_path / "locked.png")
    real_open = Image.open

    def guarded(fp, *a, **k):  # root reads any file: refuse this one as the OS would
        if Path(fp).name == "locked.png":
            raise PermissionError(13, "Permission denied", str(fp))
        return real_open(fp, *a, **k)

    monkeypatch.setattr(Image, "open", guarded)
    ds = _listed(tmp_path, ["ok.png", "locked.png"])
    x = load_samples(ds, PRE, np.arange(2))
    assert len(x) == 1 and "Permission denied" in ds.skipped[0][1]


def test_a_vitdeploy_bug_is_not_hidden_as_a_skip(tmp_path, monkeypatch):
    Image.fromarray(_scene()).save(tmp_path / "ok.png")
    monkeypatch.setattr(decode, "to_rgb8", lambda img: img.undefined_attribute)
    with pytest.raises(AttributeError):
        load_samples(_listed(tmp_path, ["ok.png"]), PRE, np.arange(1))


# -- through the CLI ----------------------------------------------------------------------------

def _onnx(path: Path, channels_last: bool = False, size: int = 8) -> None:
    """A tiny classifier taking (N,3,size,size), or (N,size,size,3) put through a Transpose, with a
    manifest beside it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).standard_normal((3 * size * size, 10)).astype(np.float32) * 0.1
    dims = ["N", size, size, 3] if channels_last else ["N", 3, size, size]
    nodes = [helper.make_node("Flatten", ["t" if channels_last else "x"], ["f"], axis=1),
             helper.make_node("MatMul", ["f", "w"], ["logits"])]
    if channels_last:
        nodes.insert(0, helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]))
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _manifest(onnx_path: Path, input_size: list[int]) -> None:
    onnx_path.with_suffix(".json").write_text(json.dumps({"artifact": onnx_path.name, "precision": "fp32",
        "preprocessing": {"input_size": input_size, "mean": [0.5] * 3, "std": [0.5] * 3, "crop_pct": 0.875}}))


def _image_folder(folder: Path, n_good: int = 12) -> None:
    folder.mkdir()
    for i in range(n_good):
        Image.fromarray(np.roll(_scene(), 3 * i, axis=1)).save(folder / f"ok{i:02d}.png")
    _bad_files(folder)


def _check_one_error(rc: int, err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 3 and len(lines) <= 3 and "Traceback" not in err, err
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1, err
    return errors[0]


def test_cli_validate_skips_bad_images_and_refuses_none_decodable(cli, tmp_path):
    model = tmp_path / "m.onnx"
    _onnx(model)
    _manifest(model, [3, 8, 8])
    _image_folder(tmp_path / "imgs")
    rc, out, err = cli("validate", model, model, "--data", tmp_path / "imgs", "--json")
    assert rc == 0, err
    assert json.loads(out)["data"]["skipped"] == 6 and json.loads(out)["data"]["samples"] == 12
    rc, _, err = cli("validate", model, model, "--data", tmp_path / "imgs")
    assert rc == 0 and "6 undecodable image(s) skipped: " in err and "and 3 more" in err, err
    rc, _, err = cli("validate", model, model, "--data", tmp_path / "imgs", "--on-error", "fail")
    assert "cannot decode" in _check_one_error(rc, err)
    # a folder with nothing decodable is exit 3, naming an example
    (tmp_path / "bad").mkdir()
    _bad_files(tmp_path / "bad")
    rc, _, err = cli("validate", model, model, "--data", tmp_path / "bad")
    assert "no decodable image" in _check_one_error(rc, err) and "6 failed" in err


def test_cli_quantize_on_error_fail_exit_3_and_writes_nothing(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("VITDEPLOY_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "m.onnx"
    _onnx(model)
    _manifest(model, [3, 8, 8])
    _image_folder(tmp_path / "imgs")
    out = tmp_path / "q.onnx"
    rc, _, err = cli("quantize", model, "--int8", "--calib", tmp_path / "imgs", "--on-error", "fail", "-o", out)
    assert "cannot decode" in _check_one_error(rc, err) and not out.exists()


# -- layout: a channels-last model ------------------------------------------------------------------

def test_nhwc_model_with_nchw_data_is_named_before_onnxruntime_runs(cli, tmp_path, monkeypatch):
    import onnxruntime

    monkeypatch.setenv("VITDEPLOY_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "nhwc.onnx"  # no manifest: the input size comes from the ONNX, (8, 8, 3)
    _onnx(model, channels_last=True)
    x = np.random.default_rng(0).standard_normal((16, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "nchw.npy", x)

    def no_session(*a, **k):
        raise AssertionError("ONNX Runtime was called")

    monkeypatch.setattr(onnxruntime, "InferenceSession", no_session)
    out = tmp_path / "q.onnx"
    rc, _, err = cli("quantize", model, "--int8", "--calib", tmp_path / "nchw.npy", "-o", out)
    line = _check_one_error(rc, err)
    assert "channels-last N,H,W,C input (8, 8, 3)" in line and "N,C,H,W (3, 8, 8)" in line, err
    assert not out.exists()

    # images are always fed N,C,H,W: the same model with images is refused the same way
    _image_folder(tmp_path / "imgs", n_good=4)
    rc, _, err = cli("quantize", model, "--int8", "--calib", tmp_path / "imgs", "--mean", "0.5,0.5,0.5",
                     "--std", "0.5,0.5,0.5", "-o", out)
    assert "channels-last N,H,W,C input (8, 8, 3)" in _check_one_error(rc, err)
    # validate reads the layout from the reference's session and says so before running it
    monkeypatch.undo()
    rc, _, err = cli("validate", model, model, "--data", tmp_path / "nchw.npy")
    assert "channels-last N,H,W,C input (8, 8, 3)" in _check_one_error(rc, err)


def test_layout_checks_in_check_shape(tmp_path):
    pre = Preprocessing((3, 8, 8), (0.5,) * 3, (0.5,) * 3, "bicubic", 1.0)
    np.save(tmp_path / "nchw.npy", np.zeros((2, 3, 8, 8), np.float32))
    np.save(tmp_path / "nhwc.npy", np.zeros((2, 8, 8, 3), np.float32))
    nchw, nhwc = open_dataset(tmp_path / "nchw.npy"), open_dataset(tmp_path / "nhwc.npy")
    check_shape(nchw, pre)
    check_shape(nchw, pre, (3, -1, -1))  # dynamic H, W read from a model
    check_shape(nhwc, pre, (-1, -1, 3))  # channels-last data for a channels-last model: consistent
    with pytest.raises(InputError, match=r"channels last \(N,H,W,C\).*transpose\(0, 3, 1, 2\)"):
        check_shape(nhwc, pre, (3, -1, -1))
    with pytest.raises(InputError, match=r"channels-last N,H,W,C input \(-1, -1, 3\).*transpose\(0, 2, 3, 1\)"):
        check_shape(nchw, pre, (-1, -1, 3))
    Image.fromarray(_scene()).save(tmp_path / "a.png")
    with pytest.raises(InputError, match="images are preprocessed to N,C,H,W"):
        check_shape(open_dataset(tmp_path), pre, (8, 8, 3))
