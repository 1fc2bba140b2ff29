"""The command line against the bad inputs a user tries: every case ends with the expected exit status
and one line naming the problem (never a traceback), and no file written before is changed."""
import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from unnoise.cli import main

TINY = ["--steps", "2", "--batch-size", "8", "--checkpoint-every", "0", "--log-every", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli_errors")
    vec, img = str(base / "vec"), str(base / "img")
    assert main(["train", "--data", "ring", "--num-points", "64", "--width", "16", "--depth", "1", "--out", vec,
                 *TINY]) == 0
    assert main(["train", "--data", "digits", "--base-channels", "8", "--channel-mult", "1,2", "--out", img,
                 *TINY]) == 0
    prev = base / "prev.npy"
    np.save(prev, np.arange(6.0))
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(base / "digit.png")
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(base / "small_mask.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(base / "black_mask.png")  # black = keep everything
    np.save(base / "loud.npy", np.full((1, 1, 8, 8), 7.0, np.float32))
    (base / "garbage.npy").write_bytes(b"this is not an array")
    (base / "afile").write_text("x")
    ro = base / "readonly"
    ro.mkdir()
    cond = str(base / "cond")
    assert main(["train", "--data", "digits", "--conditional", "--base-channels", "8", "--channel-mult", "1,2",
                 "--out", cond, *TINY]) == 0
    bad_std = base / "bad_std"  # a vectors run whose config.json says std 0
    shutil.copytree(vec, bad_std)
    config = json.loads((bad_std / "config.json").read_text())
    config["data"]["normalization"]["std"][1] = 0.0
    (bad_std / "config.json").write_text(json.dumps(config))
    (base / "points.txt").write_text("1.0 2.0\n3.0 4.0\n5.0 6.0\n")
    for name in ("imgs/a/1.png", "imgs/a/2.png", "imgs/b/1.png", "imgs/stray.png"):  # a stray image beside classes
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(base / name)
    np.save(base / "other.npy", np.random.default_rng(0).normal(size=(64, 2)))
    (base / "demo_out").mkdir()
    shutil.copytree(vec, base / "demo_out" / "run")  # an earlier demo's output
    clf16 = str(base / "clf16")  # a classifier of 16x16 digits, for the 8x8 image run
    assert main(["train-classifier", "--data", "digits", "--image-size", "16", "--width", "8", "--out", clf16,
                 *TINY]) == 0
    return {"base": base, "vec": vec, "img": img, "prev": str(prev), "cond": cond, "clf16": clf16}


def cases(e):
    b = e["base"]
    return [
        # (command, exit status, phrase of the one-line message)
        (["train", "--data", "ring", "--out", e["vec"], *TINY], 2, "already holds a training run"),
        (["train", "--data", "ring", "--out", str(b / "n1"), "--conditional", *TINY], 2, "does not apply to vectors"),
        (["train", "--data", "ring", "--out", str(b / "n2"), "--text", *TINY], 2, "add --latent AUTOENCODER_DIR"),
        (["train", "--data", "digits", "--out", str(b / "n3"), "--image-size", "0", *TINY], 2, "positive"),
        (["train", "--data", "ring", "--out", str(b / "n4"), "--width", "0", *TINY], 2, "positive"),
        (["train", "--data", "digits", "--out", str(b / "n5"), "--channel-mult", "1,2", "--attention-levels", "3",
          *TINY], 2, "attention-levels"),
        (["train", "--data", "ring", "--out", str(b / "n6"), "--grad-clip", "-1", *TINY], 2, "--grad-clip"),
        (["train", "--data", "digits", "--out", str(b / "n7"), "--dropout", "2", *TINY], 2, "--dropout"),
        (["train", "--data", "ring", "--out", str(b / "n8"), "--lr", "nan", *TINY], 2, "--lr must be a finite"),
        (["train", "--data", str(b / "garbage.npy"), "--out", str(b / "n9"), *TINY], 2, "garbage.npy"),
        (["train", "--data", "ring", "--out", str(b / "n10"), *TINY, "--device", "tpu"], 2, "unknown device 'tpu'"),
        (["sample", "--checkpoint", e["vec"], "--out", e["prev"], "--guidance-scale", "nan"], 2, "finite"),
        (["sample", "--checkpoint", e["vec"], "--out", e["prev"], "--guidance-scale", "1e30"], 2, "class-conditional"),
        (["sample", "--checkpoint", e["img"], "--out", e["prev"], "--class-label", "3"], 2, "unconditional"),
        (["sample", "--checkpoint", e["img"], "--out", e["prev"], "--prompt", "a cat"], 2, "text-conditioned"),
        (["sample", "--checkpoint", e["img"], "--out", e["prev"], "--plot", str(b / "p.png")], 2, "--plot applies"),
        (["sample", "--checkpoint", e["vec"], "--out", str(b / "afile" / "x.npy")], 2, "not a directory"),
        (["sample", "--checkpoint", e["vec"], "--out", e["prev"], "--device", "tpu"], 2, "unknown device"),
        (["sample", "--checkpoint", str(b / "nothing"), "--out", e["prev"]], 2, "does not exist"),
        (["inpaint", "--checkpoint", e["img"], "--input", str(b / "digit.png"), "--mask", str(b / "small_mask.png"),
          "--out", str(b / "o.png")], 2, "5x5"),
        (["inpaint", "--checkpoint", e["img"], "--input", str(b / "digit.png"), "--mask", str(b / "black_mask.png"),
          "--out", str(b / "o.png")], 2, "nothing to fill"),
        (["inpaint", "--checkpoint", e["vec"], "--input", str(b / "digit.png"), "--box", "1,1,3,3",
          "--out", str(b / "o.png")], 2, "vectors run"),
        (["img2img", "--checkpoint", e["img"], "--input", str(b / "loud.npy"), "--out", str(b / "o.png")], 2,
         "[-1, 1]"),
        (["img2img", "--checkpoint", e["img"], "--input", str(b / "digit.png"), "--strength", "2",
          "--out", str(b / "o.png")], 2, "--strength"),
        # issue 29: guidance scales are range-checked
        (["sample", "--checkpoint", e["cond"], "--out", e["prev"], "--guidance-scale", "1e6"], 2, "in [0, 100]"),
        (["img2img", "--checkpoint", e["img"], "--input", str(b / "digit.png"), "--guidance-scale", "1e6",
          "--out", str(b / "o.png")], 2, "in [0, 100]"),
        # --resume with options that differ from the run's, or a run already at its last step
        (["train", "--resume", e["vec"], "--lr", "0.1"], 2, "--lr 0.1 (the run has 0.001) differs"),
        (["train", "--resume", e["vec"], "--width", "64", "--steps", "10"], 2, "--width 64 (the run has 16)"),
        (["train", "--resume", e["vec"], "--data", str(b / "other.npy"), "--steps", "10"], 2, "--data"),
        (["train", "--resume", e["vec"], "--steps", "1"], 2, "already at step 2"),
        (["train", "--resume", e["vec"]], 2, "already at step 2"),
        # a damaged normalisation in config.json
        (["sample", "--checkpoint", str(b / "bad_std"), "--out", str(b / "s.npy")], 2, "std must be positive"),
        # runs and caches never written into the data or into folders of other files
        (["train", "--data", str(b / "imgs"), "--out", str(b / "imgs"), *TINY], 2, "is the --data folder"),
        (["train", "--data", str(b / "imgs"), "--out", str(b / "imgs" / "run"), *TINY], 2, "inside the --data"),
        (["train", "--data", "ring", "--out", str(b / "imgs"), *TINY], 2, "not an unnoise run"),
        (["train", "--data", "ring", "--out", str(b / "imgs"), "--overwrite", *TINY], 2, "not an unnoise run"),
        (["train-classifier", "--data", "digits", "--out", str(b / "imgs"), *TINY], 2, "not an unnoise run"),
        (["prepare", "--data", str(b / "imgs"), "--out", str(b / "imgs")], 2, "is the --data folder"),
        (["prepare", "--data", str(b / "imgs"), "--out", e["vec"]], 2, "holds a training run"),
        (["prepare", "--data", str(b / "imgs"), "--out", str(b / "demo_out")], 2, "not a cache"),
        # --out that names an input
        (["inpaint", "--checkpoint", e["img"], "--input", str(b / "digit.png"), "--box", "1,1,3,3",
          "--out", str(b / "digit.png")], 2, "is the --input file"),
        (["inpaint", "--checkpoint", e["img"], "--input", str(b / "digit.png"), "--mask", str(b / "small_mask.png"),
          "--out", str(b / "small_mask.png")], 2, "is the --mask file"),
        (["img2img", "--checkpoint", e["img"], "--input", str(b / "digit.png"), "--out", str(b / "digit.png")], 2,
         "is the --input file"),
        (["restore", "--checkpoint", e["img"], "--input", str(b / "digit.png"), "--operator",
          f"mask:{b / 'black_mask.png'}", "--out", str(b / "black_mask.png")], 2, "is the --operator mask file"),
        (["upscale", "--checkpoint", e["img"], "--input", str(b / "digit.png"), "--out", str(b / "digit.png")], 2,
         "is the --input file"),
        (["sample", "--checkpoint", e["vec"], "--out", e["vec"]], 2, "is the --checkpoint folder"),
        (["compare-samplers", "--checkpoint", e["vec"], "--samplers", "ddim", "--nfe", "2", "--out", e["vec"]], 2,
         "is the --checkpoint folder"),
        (["upscale", "--train", "--data", str(b / "imgs"), "--out", str(b / "imgs"), "--train-steps", "1"], 2,
         "is the --data folder"),
        (["sample", "--checkpoint", e["img"], "--classifier", e["clf16"], "--class-label", "3", "--out",
          str(b / "g.png")], 2, "classifies examples of shape (1, 16, 16)"),
        # a demo run again over its earlier output
        (["demo", "--out", str(b / "demo_out"), "--steps", "2", "--device", "cpu"], 2, "pass --overwrite"),
        # sizes: a PNG grid beyond what image readers accept
        (["sample", "--checkpoint", e["img"], "--n", "200000", "--out", str(b / "big.png")], 2, "write a .npy"),
        # messages that point the right way
        (["train", "--data", str(b / "points.txt"), "--out", str(b / "n11"), *TINY], 2, "comma-separated"),
        (["sample", "--checkpoint", e["prev"], "--out", str(b / "s.npy")], 2, "is a file, not a run directory"),
        (["train", "--data", str(b / "imgs"), "--conditional", "--out", str(b / "n12"), *TINY], 2,
         "stray.png"),
        (["train", "--data", "shapes", "--text", "--out", str(b / "n13"), *TINY], 2, "add --latent"),
    ]


def snapshot(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[p] = fh.read()
    return out


def test_bad_inputs_fail_in_one_line_and_change_nothing(env, capsys):
    torch.set_num_threads(1)
    capsys.readouterr()
    for argv, status, phrase in cases(env):
        before = snapshot(env["base"])
        code = main(argv)
        err = capsys.readouterr().err.strip()
        assert code == status, (argv, code, err)
        lines = [line for line in err.splitlines() if line.strip() and "it/s]" not in line and "%|" not in line]
        assert len(lines) == 1 and phrase in lines[0] and "Traceback" not in err, (argv, err)
        after = snapshot(env["base"])
        changed = [p for p in before if after.get(p) != before[p]]
        assert not changed, (argv, changed)
        new = set(after) - set(before)
        assert not new, (argv, new)
