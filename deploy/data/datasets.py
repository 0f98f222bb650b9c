"""Calibration / evaluation data, by the names callers knew from ``calib.data``: a re-export of the
focused modules of ``vitdeploy.data``; new code imports those directly.

- ``sources``: open a folder of images, an image list or a .npy/.npz array; fingerprints, data hash;
- ``labels``: class folders -> labels, whether they can be a model's classes, chance level;
- ``decode``: image files -> 8-bit RGB (16-bit and float images, undecodable files named);
- ``preprocess``: ``Preprocess`` and its builders, the resize / center crop / normalise transform;
- ``checks``: sample shape and layout, values of preprocessed arrays;
- ``sampling``: the seeded subset and the calibration / held-out split (one permutation);
- ``batches``: threaded batch iteration, ``load_samples``, skipped-file warnings.
"""

from __future__ import annotations

from vitdeploy.data.batches import decode_workers, iter_batches, load_samples, no_decodable_image, skipped_warning
from vitdeploy.data.checks import (
    DATA_CHECK_HINT,
    check_array_values,
    check_shape,
    fits,
    value_sample,
)
from vitdeploy.data.decode import ImageDecodeError, decode_image, to_rgb8
from vitdeploy.data.labels import CHANCE_ALPHA, LabelMap, chance_level, chance_warning, labels_for
from vitdeploy.data.preprocess import Preprocess, preprocess_image, resize_size, resolve_preprocess
from vitdeploy.data.sampling import holdout_split, max_holdout, sample_indices, seeded_order
from vitdeploy.data.sources import (
    ARRAY_KEYS,
    IMAGE_SUFFIXES,
    LABEL_KEYS,
    Dataset,
    content_key,
    data_hash,
    fingerprint,
    open_dataset,
    source_fingerprint,
)

__all__ = [
    "ARRAY_KEYS", "CHANCE_ALPHA", "DATA_CHECK_HINT", "IMAGE_SUFFIXES", "LABEL_KEYS", "Dataset", "ImageDecodeError",
    "LabelMap", "Preprocess", "chance_level", "chance_warning", "check_array_values", "check_shape", "content_key",
    "data_hash", "decode_image", "decode_workers", "fingerprint", "fits", "holdout_split", "iter_batches",
    "labels_for", "load_samples", "max_holdout", "no_decodable_image", "open_dataset", "preprocess_image",
    "resize_size", "resolve_preprocess", "sample_indices", "seeded_order", "skipped_warning", "source_fingerprint",
    "to_rgb8", "value_sample",
]
