"""Every command line in the README's ```bash blocks runs (issue 11), in README order, in one tmp dir.

Each line is split on ``&&`` into commands (``#`` comments dropped, ``> FILE`` captures stdout).
``vitdeploy ...`` commands run in-process through ``vitdeploy.cli.run``, so later examples find
the files earlier ones wrote. The README's large models and files are replaced by tiny ones:

==============================================  ==============================================
README                                          what the test uses
==============================================  ==============================================
``deit_tiny_patch16_224``, ``deit_small_...``   ``vit_tiny_test`` (2 blocks, 32 px)
``t2t_vit_14``, ``t2t_vit_7``                   ``t2t_vit_tiny_test``
``mypkg.nets:build``                            ``readme_user_model:build`` (in the tmp dir; the trained weights)
``--input-size 3,224,224``                      ``--input-size 3,32,32``
``deit_tiny.pth``, DeiT-Ti's official file     ``vit_tiny_test`` trained for 40 steps on the images below
``81.5_T2T_ViT_14.pth.tar``                     an official-style checkpoint of ``t2t_vit_tiny_test``
``lightning/epoch=29.ckpt``                     a Lightning checkpoint (``model.`` keys, 10 classes)
``program.pt2``                                 a torch.export program of ``vit_tiny_test``
``val_images/``, ``val/`` and the like          128 generated PNGs, 3 colour classes in folders 0-2
``calib.npz``, ``val.npz``                      128 preprocessed 32 px samples with labels
``--holdout 1000``                              ``--holdout 64`` (at most half of the 128 images)
``deit.*`` (validate examples)                  ``deit_tiny.*`` (the files the examples above wrote)
``deit_tiny.onnx``                              written first: ``export vit_tiny_test -o deit_tiny.onnx``
==============================================  ==============================================

The "Jetson" section runs in a fresh subfolder holding only the checkpoint and the images: it is
the other machine of that walk-through, where the export writes ``deit_tiny.onnx`` anew.

Lines that cannot run here are in ``SKIP`` with the reason (installs, the test suite itself,
downloads, TensorRT engines, Jetson administration, ssh); examples that demonstrate an exit code other than 0
are in ``EXPECTED``. ``test_every_readme_line_is_run_or_skipped`` (fast) checks that the
classification covers every line; the run itself is marked slow (about a minute on 2 cores).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

MODELS = {
    "deit_tiny_patch16_224": "vit_tiny_test",
    "deit_small_patch16_224": "vit_tiny_test",
    "t2t_vit_14": "t2t_vit_tiny_test",
    "t2t_vit_7": "t2t_vit_tiny_test",
    "mypkg.nets:build": "readme_user_model:build",
}
VALUES = {"3,224,224": "3,32,32", "deit_tiny_patch16_224-a1311bcf.pth": "deit_tiny.pth", "val/": "val_images/", "imagenet_val/": "val_images/", "my_images/": "val_images/",
          "val.npz": "calib.npz", "1000": "64"}  # --holdout 1000: half of the 128 images
# (pattern on the README command, reason): matched commands are not run
SKIP: list[tuple[str, str]] = [
    (r"^pip install", "installs packages: the test runs in the environment it was installed in"),
    (r"^python -m pytest", "the test suite itself"),
    (r"^sudo ", "Jetson administration (apt, nvpmodel, jetson_clocks)"),
    (r"^python3 -m venv|^\. ", "creates or activates a virtual environment"),
    (r"^scp ", "copies files to another machine over ssh"),
    (r"^curl |^wget ", "downloads official weights from the internet (the stand-in checkpoint is used)"),
    (r"^vitdeploy build-engine", "builds a TensorRT engine: needs TensorRT and a GPU"),
    (r"\.engine\b", "runs a TensorRT engine: needs TensorRT and a GPU"),
]
# README command -> (exit code, why) for examples that do not exit 0 here
EXPECTED: dict[str, tuple[int, str]] = {}


@dataclass
class Command:
    line: int  # README line number
    section: str  # the "## " heading it is under
    text: str  # as the README writes it (one command of an && chain)
    argv: list[str]


def readme_commands(readme: Path = README) -> list[Command]:
    """Commands of the ```bash blocks, in order: lines split on &&, comments dropped."""
    commands: list[Command] = []
    in_block, section, pending = False, "", ""
    for number, line in enumerate(readme.read_text().splitlines(), 1):
        if in_block and line.rstrip().endswith("\\"):  # continued on the next line
            pending += line.rstrip()[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.startswith("## ") and not in_block:
            section = line[3:].strip()
        if line.startswith("```"):
            in_block = line.strip() == "```bash" if not in_block else False
            continue
        if not in_block:
            continue
        words = shlex.split(line, comments=True)
        while words:
            cut = words.index("&&") if "&&" in words else len(words)
            part, words = words[:cut], words[cut + 1:]
            if part:
                commands.append(Command(number, section, shlex.join(part), part))
    return commands


def skip_reason(cmd: Command) -> str | None:
    return next((why for pattern, why in SKIP if re.search(pattern, cmd.text)), None)


def substitute(argv: list[str]) -> list[str]:
    """The README's command on the tiny models and files above (``vitdeploy models`` keeps its names:
    it only lists data)."""
    if argv[:2] == ["vitdeploy", "models"]:
        return argv
    out = []
    for word in argv:
        word = MODELS.get(word, VALUES.get(word, word))
        if word.startswith("deit.") or word == "deit":
            word = "deit_tiny" + word[4:]
        out.append(word)
    return out


def test_every_readme_line_is_run_or_skipped():
    commands = readme_commands()
    assert len(commands) > 30
    unknown = [c.text for c in commands if not skip_reason(c) and c.argv[0] != "vitdeploy"]
    assert not unknown, f"README commands neither run nor in SKIP: {unknown}"
    assert all(text in {c.text for c in commands} for text in EXPECTED), "EXPECTED names a line the README lost"


# --- the files the README assumes -----------------------------------------------------------------------

USER_MODEL = '''
from pathlib import Path

import torch

from vitdeploy.models import create_model


def build(num_classes: int = 10):  # vit_tiny_test has 10 classes
    # a user's own model carries its weights: the test's trained vit_tiny_test, head cut to num_classes
    model = create_model("vit_tiny_test", num_classes=num_classes)
    state = torch.load(Path(__file__).with_name("user_weights.pt"))
    state["head.weight"], state["head.bias"] = state["head.weight"][:num_classes], state["head.bias"][:num_classes]
    model.load_state_dict(state)
    return model
'''


IMAGES = 128  # the README's deploy example holds out 64, at most half of the data
COLOURS = [(200, 40, 40), (40, 180, 60), (50, 70, 210)]  # class k: a colour plus noise


def _images(rng, size: int) -> tuple:
    """(uint8 N,H,W,3 images, labels): three classes a model can learn in seconds."""
    import numpy as np

    labels = np.arange(IMAGES) % len(COLOURS)
    base = np.array(COLOURS, dtype=np.float32)[labels][:, None, None, :]
    noise = rng.normal(0, 40, (IMAGES, size, size, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8), labels


def _trained_tiny(x, labels):
    """vit_tiny_test trained on the colour classes: confident predictions, so agreement and top-1
    verdicts mean something (random weights give near-ties that any rounding flips)."""
    import torch
    from vitdeploy.models import create_model

    torch.manual_seed(0)
    model = create_model("vit_tiny_test")
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(labels).long()
    model.train()
    for _ in range(40):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()
    return model.eval()


def _prepare(root: Path, cli) -> None:
    import numpy as np
    import torch
    from helpers import randomize, save_official_checkpoint
    from PIL import Image
    from vitdeploy.models import create_model

    rng = np.random.default_rng(0)
    pixels, labels = _images(rng, 32)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    x = ((pixels / 255.0 - mean) / std).transpose(0, 3, 1, 2).astype(np.float32)
    np.savez(root / "calib.npz", x=x, labels=labels)
    for k, (image, label) in enumerate(zip(_images(rng, 40)[0], labels)):
        folder = root / "val_images" / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{k}.png")
    (root / "readme_user_model.py").write_text(USER_MODEL)
    trained = _trained_tiny(x, labels).state_dict()
    save_official_checkpoint(root / "deit_tiny.pth", trained)
    torch.save(trained, root / "user_weights.pt")
    save_official_checkpoint(root / "81.5_T2T_ViT_14.pth.tar", randomize(create_model("t2t_vit_tiny_test")).state_dict(),
                             wrapper="state_dict_ema", with_args=False)
    ten = randomize(create_model("vit_tiny_test", num_classes=10)).state_dict()
    (root / "lightning").mkdir()
    torch.save({"epoch": 29, "pytorch-lightning_version": "2.4.0",
                "state_dict": {f"model.{k}": v for k, v in ten.items()}}, root / "lightning" / "epoch=29.ckpt")
    model = create_model("vit_tiny_test").eval()
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(model, (torch.randn(2, 3, 32, 32),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(root / "program.pt2"))
    code, _, err = cli("export", "vit_tiny_test", "--checkpoint", root / "deit_tiny.pth", "-o", root / "deit_tiny.onnx")
    assert code == 0, err


@pytest.mark.slow
def test_readme_examples_run(cli, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    monkeypatch.setenv("VITDEPLOY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "120")
    _prepare(tmp_path, cli)
    failures, ran = [], 0
    for cmd in readme_commands():
        if skip_reason(cmd):
            continue
        jetson = tmp_path / "jetson"
        if cmd.section == "Jetson" and not jetson.exists():
            jetson.mkdir()
            (jetson / "deit_tiny.pth").symlink_to(tmp_path / "deit_tiny.pth")
            (jetson / "val_images").symlink_to(tmp_path / "val_images")
        monkeypatch.chdir(jetson if cmd.section == "Jetson" else tmp_path)
        argv = substitute(cmd.argv)
        stdout_to = None
        if ">" in argv:
            stdout_to = argv[argv.index(">") + 1]
            argv = argv[:argv.index(">")]
        code, out, err = cli(*argv[1:])
        ran += 1
        if stdout_to:
            Path(stdout_to).write_text(out)
        want = EXPECTED.get(cmd.text, (0, ""))[0]
        if code != want:
            last = (err.strip().splitlines() or out.strip().splitlines() or [""])[-1]
            failures.append(f"README line {cmd.line}: {cmd.text}\n  ran: {shlex.join(argv)}\n  exit {code} (want {want}): {last}")
    assert ran >= 20
    assert not failures, "\n".join(failures)
