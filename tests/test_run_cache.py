"""One run reads its data once (vitdeploy.data.cache), and the one typed preprocessing description."""

import json

import numpy as np
import pytest
from PIL import Image

from vitdeploy.core.errors import UsageError
from vitdeploy.core.preprocessing import Preprocessing
from vitdeploy.data import cache, decode
from vitdeploy.data.batches import iter_batches, load_samples
from vitdeploy.data.sources import fingerprint, open_dataset

PRE = Preprocessing((3, 16, 16), (0.5,) * 3, (0.5,) * 3, "bilinear", 1.0)


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    root.mkdir()
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(root / f"{i}.png")
    (root / "broken.png").write_bytes(b"not a png")
    return root


@pytest.fixture
def decodes(monkeypatch):
    calls = []
    real = decode.decode_image
    monkeypatch.setattr(decode, "decode_image", lambda p: (calls.append(str(p)), real(p))[1])
    return calls


def _all(ds, idx, workers=0):
    return np.concatenate([x for x, _ in iter_batches(ds, PRE, idx, 4, workers=workers)])


def test_a_run_decodes_each_image_once_and_gets_the_same_samples(folder, decodes):
    plain = _all(open_dataset(folder), np.arange(7))
    assert len(decodes) == 7
    decodes.clear()
    with cache.run_scope():
        ds = open_dataset(folder)
        first = _all(ds, np.arange(7), workers=2)
        again = open_dataset(folder)
        second = _all(again, np.arange(7))
        assert len(ds.skipped) == len(again.skipped) == 1  # the undecodable file named on every pass
    assert len(decodes) == 7  # the broken file too: its failure is kept
    assert np.array_equal(first, plain) and np.array_equal(second, plain)
    _all(open_dataset(folder), np.arange(7))  # outside a run: decoded again
    assert len(decodes) == 14


def test_a_calibration_set_is_decoded_once_and_serves_later_passes(folder, decodes):
    with cache.run_scope() as run:
        ds = open_dataset(folder)
        with load_samples(ds, PRE, np.arange(7)) as x:  # a caller closing its set leaves the run's open
            first = x[:]
        ds2 = open_dataset(folder)
        y = load_samples(ds2, PRE, np.arange(7))
        (kept, _), = run.sets.values()
        assert y._read == kept._read and len(y) == 6 and np.array_equal(y[:], first)  # the same spill file, read again
        assert ds2.skipped == ds.skipped and len(ds.skipped) == 1
        held = _all(ds2, y.indices[:3])  # a later pass over some of the same images: the set's rows
        assert np.array_equal(held, first[:3])
    assert len(decodes) == 7
    assert kept._owner.file.closed  # the run's end deleted its spill file


def test_the_byte_cap_falls_back_to_decoding(folder, decodes, monkeypatch):
    monkeypatch.setenv("VITDEPLOY_DECODE_CACHE_MB", "0")
    with cache.run_scope():
        ds = open_dataset(folder)
        _all(ds, np.arange(6))
        _all(ds, np.arange(6))
    assert len(decodes) == 12


def test_a_run_walks_a_folder_once(folder, monkeypatch):
    walks = []
    real = cache._walk
    monkeypatch.setattr(cache, "_walk", lambda p: (walks.append(p), real(p))[1])
    plain = fingerprint(folder)
    with cache.run_scope():
        with cache.run_scope():  # nested: the same run
            assert len(open_dataset(folder)) == 7
        assert fingerprint(folder) == plain
        open_dataset(folder)
    assert len(walks) == 2  # one outside the run, one inside
    open_dataset(folder)
    assert len(walks) == 3


def test_preprocessing_from_each_source():
    from vitdeploy.cli.options import preprocessing_options
    from vitdeploy.models import get_spec

    spec = get_spec("vit_tiny_test").preprocessing()
    # the block export writes, byte for byte as before
    assert json.dumps(spec.to_manifest()) == json.dumps({
        "input_size": [3, 32, 32], "interpolation": "bilinear", "crop_pct": 1.0, "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5], "layout": "NCHW", "channel_order": "RGB"})
    assert Preprocessing.from_manifest({"preprocessing": spec.to_manifest()}) == spec
    opts = preprocessing_options("3x48x48", None, "0.2,0.2,0.2")
    assert opts == Preprocessing(input_size=(3, 48, 48), std=(0.2,) * 3)
    mixed = spec.updated(opts)
    assert (mixed.input_size, mixed.mean, mixed.std, mixed.interpolation) == ((3, 48, 48), (0.5,) * 3, (0.2,) * 3, "bilinear")
    assert Preprocessing(input_size=(3, 8, 8), mean=(0.1,) * 3, std=(0.2,) * 3).for_images().crop_pct == 0.875
    with pytest.raises(UsageError, match="missing mean, std"):
        Preprocessing(input_size=(3, 8, 8)).for_images()
    with pytest.raises(UsageError, match="--mean"):
        preprocessing_options(None, "0.5,0.5", None)
    assert Preprocessing.from_manifest(None) == Preprocessing()
