"""Real images for accuracy tests: scikit-learn's bundled digits (1797 8x8 scans, 10 classes).

Images are upscaled to the model's input size and go through vitdeploy's own preprocessing,
so training, calibration and evaluation see identical inputs.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image

# each family's tiny variant (32 px, 10 classes): the models the accuracy tests train on digits
TINY_VARIANTS = {
    "vit": "vit_tiny_test",
    "t2t_vit": "t2t_vit_tiny_test",
    "convit": "convit_tiny_test",
    "sret": "sret_tiny_test",
    "ceit": "ceit_tiny_test",
}


def digit_images(size: int = 32) -> tuple[list[Image.Image], np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = [Image.fromarray((img / 16.0 * 255).astype(np.uint8)).convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
              for img in d.images]
    return images, d.target.astype(np.int64)


def split(n: int, test_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    k = int(n * test_fraction)
    return np.sort(order[k:]), np.sort(order[:k])


def write_image_folder(root: Path, images: list[Image.Image], labels: np.ndarray, indices: np.ndarray) -> Path:
    for i in indices:
        folder = root / str(int(labels[i]))
        folder.mkdir(parents=True, exist_ok=True)
        images[i].save(folder / f"{i:04d}.png")
    return root


def preprocessed(images: list[Image.Image], pre) -> np.ndarray:
    from vitdeploy.data.preprocess import preprocess_image

    return np.stack([preprocess_image(img, pre) for img in images])


def train(model, x: np.ndarray, y: np.ndarray, seconds: float = 30.0, seed: int = 0, lr: float = 2e-3,
          steps: int | None = None):
    """AdamW training with random-shift augmentation, boxed by ``seconds`` (or exactly ``steps``
    steps when given: deterministic whatever the machine's load); returns the model in eval mode."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    device = next(model.parameters()).device  # trains where the model is (a GPU when it was moved there)
    xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    model.train()
    start, step = time.perf_counter(), 0
    def progress() -> float:
        return step / steps if steps else (time.perf_counter() - start) / seconds

    while progress() < 1.0:
        idx = torch.from_numpy(rng.integers(0, len(xt), 64)).to(device)
        xb = xt[idx]
        dx, dy = (int(v) for v in rng.integers(-2, 3, 2))
        xb = torch.roll(xb, shifts=(dx, dy), dims=(2, 3))
        frac = min(1.0, progress())
        for g in opt.param_groups:
            g["lr"] = lr * (0.5 * (1 + np.cos(np.pi * frac)))
        out = model(xb)
        if isinstance(out, tuple):
            out = out[0]
        loss = torch.nn.functional.cross_entropy(out, yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
    model.eval()
    model.train_steps = step
    return model


def split_digit_data(root: Path, size: int = 32) -> tuple[list[Image.Image], np.ndarray, np.ndarray, np.ndarray, Path]:
    """The digits at ``size`` px, a seeded train/test split, and the train split written as an image
    folder under ``root`` (class subfolders): (images, labels, train_idx, test_idx, train folder)."""
    images, labels = digit_images(size)
    train_idx, test_idx = split(len(images))
    return images, labels, train_idx, test_idx, write_image_folder(root / "train", images, labels, train_idx)
