"""Pipeline.restore and ``unnoise restore``: posterior sampling for y = A(x) + noise through a Pipeline."""
import numpy as np
import pytest
import torch
from PIL import Image

import unnoise
from unnoise import inverse
from unnoise.analytic import EmpiricalDenoiser
from unnoise.cli import main
from unnoise.codecs import ImageCodec
from unnoise.pipeline import Pipeline

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits
    return torch.tensor(load_digits().images[:6], dtype=torch.float32)[:, None] / 8 - 1


@pytest.fixture(scope="module")
def pipe(digits):
    # the exact prior of six digits: the posterior of an informative measurement is the true digit
    return Pipeline(EmpiricalDenoiser(digits), unnoise.schedules.get("karras"), "images", SHAPE, codec=ImageCodec())


CASES = [("box:2,2,6,6", "mmps"), ("box:2,2,6,6", "smc"), ("blur:sigma=1", "mmps"), ("blur:sigma=1", "smc"),
         ("downsample:2", "mmps")]


@pytest.mark.parametrize("spec,method", CASES)
def test_restore_is_consistent_with_the_measurement(pipe, digits, spec, method):
    op = inverse.parse_operator(spec, SHAPE)
    g = torch.Generator().manual_seed(0)
    y = op(digits[:2])
    y = y + 0.05 * torch.randn(y.shape, generator=g)
    out = pipe.restore(y, spec, noise_std=0.05, method=method, n=3, steps=30, generator=g)
    assert out.shape == (2, 3, *SHAPE)
    resid = (op(out.reshape(-1, *SHAPE)) - y.repeat_interleave(3, 0)).flatten(1).pow(2).mean(1).sqrt()
    assert float(resid.max()) < 0.05 * 1.5  # the noise level (rms), not more
    assert torch.allclose(out, digits[:2, None].expand_as(out), atol=1e-3)  # the true digit


@pytest.mark.parametrize("method", ["mmps", "smc", "pgdm", "ddnm", "dps"])
def test_noiseless_mask_keeps_known_pixels_and_fills_the_hole(pipe, digits, method):
    keep = torch.ones(SHAPE)
    keep[:, 2:6, 1:7] = 0
    y = torch.where(keep.bool(), digits[2:4], torch.full_like(digits[2:4], float("nan")))
    out = pipe.restore(y, inverse.Mask(keep), method=method, n=2, steps=30,
                       generator=torch.Generator().manual_seed(1))
    known = keep.bool().expand_as(out)
    truth = digits[2:4, None].expand_as(out)
    assert torch.equal(out[known], truth[known])
    if method in ("mmps", "smc", "pgdm"):  # the posterior is the true digit; ddnm and dps (biased) miss it here
        assert float((out - truth).abs().max()) < 1e-3


def test_restore_errors(pipe, digits):
    with pytest.raises(ValueError, match="unknown method"):
        pipe.restore(digits[:1], "blur:1", method="magic")
    with pytest.raises(ValueError, match="unknown operator"):
        pipe.restore(digits[:1], "warp:3")
    with pytest.raises(ValueError, match="noise_std"):
        pipe.restore(digits[:1], "blur:1", noise_std=-1.0)
    with pytest.raises(ValueError, match="y must have shape"):
        pipe.restore(digits[:1], "downsample:2", steps=3)  # a full-size image for a 4x4 measurement
    vec = Pipeline(EmpiricalDenoiser(torch.randn(3, 4)), unnoise.schedules.get("karras"), "vectors", (4,))
    with pytest.raises(ValueError, match="restore needs a run of .*latent images.* not a vectors run"):
        vec.restore(torch.zeros(1, 4), inverse.Matrix(torch.eye(4)))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("restore")
    run = root / "run"
    assert main(["train", "--data", "digits", "--base-channels", "8", "--channel-mult", "1,2", "--steps", "3",
                 "--batch-size", "8", "--checkpoint-every", "0", "--device", "cpu", "--out", str(run)]) == 0
    img = np.zeros((8, 8), np.uint8)
    img[1:7, 3:5] = 255
    Image.fromarray(img).save(root / "digit.png")
    mask = np.zeros((8, 8), np.uint8)
    mask[2:6, 2:6] = 255
    Image.fromarray(mask).save(root / "mask.png")
    return root


@pytest.mark.parametrize("args", [["--operator", "blur:sigma=1", "--noise", "0.05"],
                                  ["--operator", "downsample:2", "--simulate", "--method", "dps"],
                                  ["--operator", "mask:MASK", "--method", "smc", "--option", "particles=4"]])
def test_restore_command_writes_the_grid(run_dir, args, capsys):
    out = run_dir / "restored.png"
    args = [a.replace("MASK", str(run_dir / "mask.png")) for a in args]
    assert main(["restore", "--checkpoint", str(run_dir / "run"), "--input", str(run_dir / "digit.png"),
                 "--steps", "3", "--n", "2", "--out", str(out), "--device", "cpu", *args]) == 0
    grid = np.asarray(Image.open(out))
    assert grid.shape[1] > grid.shape[0] * 2  # one row: the measurement and two restorations
    out.unlink()
    npy = run_dir / "restored.npy"
    assert main(["restore", "--checkpoint", str(run_dir / "run"), "--input", str(run_dir / "digit.png"),
                 "--steps", "3", "--n", "2", "--out", str(npy), "--device", "cpu", *args]) == 0
    assert np.load(npy).shape == (1, 2, *SHAPE)
    npy.unlink()


def test_inpaint_routes_posterior_methods_to_restore(run_dir):
    out = run_dir / "filled.npy"
    assert main(["inpaint", "--checkpoint", str(run_dir / "run"), "--input", str(run_dir / "digit.png"),
                 "--box", "2,2,6,6", "--method", "mmps", "--steps", "3", "--n", "2", "--out", str(out),
                 "--device", "cpu"]) == 0
    filled = torch.from_numpy(np.load(out))
    inputs = torch.from_numpy(np.asarray(Image.open(run_dir / "digit.png"), np.float32) / 127.5 - 1)
    assert filled.shape == (1, 2, *SHAPE)
    assert torch.equal(filled[0, :, 0, :2], inputs[:2].expand(2, 2, 8))  # known rows exactly


BAD = [(["--operator", "warp:3"], "unknown operator"),
       (["--operator", "blur:sigma=x"], "blur needs a number"),
       (["--operator", "downsample:3"], "must divide"),
       (["--operator", "gray"], "gray needs RGB"),
       (["--operator", "box:0,0,9,9"], "outside"),
       (["--operator", "mask:missing.png"], "does not exist"),
       (["--operator", "blur:1", "--noise", "-0.1"], "--noise"),
       (["--operator", "blur:1", "--noise", "nan"], "--noise"),
       (["--operator", "blur:1", "--method", "magic"], "unknown --method"),
       (["--operator", "blur:1", "--method", "dps", "--option", "iterations=3"], "no option"),
       (["--operator", "blur:1", "--option", "iterations=0"], "iterations"),
       (["--operator", "blur:1", "--option", "bad"], "KEY=VALUE"),
       (["--operator", "blur:1", "--n", "0"], "--n"),
       (["--operator", "blur:1", "--steps", "0"], "--steps"),
       (["--operator", "blur:1", "--out", "x.gif"], "--out"),
       (["--operator", "blur:1", "--input", "none.png"], "does not exist"),
       (["--operator", "blur:1", "--class-label", "3"], "class-conditional")]


@pytest.mark.parametrize("extra,message", BAD)
def test_restore_command_rejects_bad_inputs(run_dir, extra, message, capsys):
    args = {"--checkpoint": str(run_dir / "run"), "--input": str(run_dir / "digit.png"),
            "--out": str(run_dir / "bad.png"), "--steps": "2", "--device": "cpu"}
    rest = []
    it = iter(extra)
    for a in it:
        if a in args and a not in ("--operator",):
            args[a] = next(it)
        else:
            rest.append(a)
    argv = ["restore"] + [v for kv in args.items() for v in kv] + rest
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (run_dir / "bad.png").exists()


def test_latent_run_restores_through_the_decoder_or_the_latent_mask():
    from unnoise.data.shapes import make_shapes
    from unnoise.latent import LatentCodec
    from unnoise.nets.autoencoder import Autoencoder, estimate_latent_scale
    torch.manual_seed(0)
    ae = Autoencoder(in_channels=3, latent_channels=2, downsample=4, channels=8).eval()
    images = make_shapes(32, 16, torch.Generator().manual_seed(0))[0]
    codec = LatentCodec(ae, *estimate_latent_scale(ae, images))
    pipe = Pipeline(EmpiricalDenoiser(codec.encode(images)), unnoise.schedules.get("ddpm"), "latent_images",
                    (3, 16, 16), model_shape=codec.latent_shape((3, 16, 16)), codec=codec)
    g = torch.Generator().manual_seed(0)
    out = pipe.restore(inverse.Blur(1.0)(images[:2]), "blur:sigma=1", noise_std=0.05, method="dps", n=2, steps=5,
                       generator=g)
    assert out.shape == (2, 2, 3, 16, 16) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="use method 'dps'"):
        pipe.restore(images[:1], "blur:sigma=1", noise_std=0.05, method="mmps")
    keep = torch.ones(3, 16, 16)
    keep[:, 4:12, 4:12] = 0
    out = pipe.restore(images[:2], inverse.Mask(keep), method="smc", n=2, steps=5, generator=g, particles=4)
    known = keep.bool().expand_as(out)
    assert torch.equal(out[known], images[:2, None].expand_as(out)[known])
