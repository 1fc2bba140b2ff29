"""The ``tokens`` kind: text corpora trained under masked / uniform diffusion through the command line, samples
written one per line, prompts and templates whose given text comes back unchanged, the corpus streamed as windows
of its encoded tokens, and bad input refused in one line."""
import json

import numpy as np
import pytest
import torch

import unnoise
from unnoise.cli import main
from unnoise.data import tokens as tok

TEXT = "the cat sat on the mat.\nthe dog sat on the log.\n" * 30
COMMON = ["--seq-len", "16", "--width", "16", "--depth", "1", "--heads", "2", "--steps", "3", "--batch-size", "8",
          "--checkpoint-every", "0", "--log-every", "1", "--num-workers", "0", "--device", "cpu"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(TEXT)
    return path


@pytest.fixture(scope="module")
def run(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "masked"
    assert main(["train", "--data", str(corpus), "--out", str(out), *COMMON]) == 0
    return str(out)


def _one_line_error(capsys):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_cli_samples_one_line_per_sample_and_the_library_returns_strings(run, tmp_path):
    out = tmp_path / "samples.txt"
    assert main(["sample", "--checkpoint", run, "--n", "5", "--steps", "4", "--out", str(out), "--device", "cpu"]) == 0
    lines = out.read_text().split("\n")
    assert lines[-1] == "" and len(lines) == 6  # five samples, each on its own line (line breaks escaped)
    alphabet = set(TEXT)
    pipe = unnoise.load(run)
    assert pipe.kind == "tokens" and pipe.shape == (16,) and pipe.is_categorical
    x = pipe.sample(4, steps=3, generator=torch.Generator().manual_seed(0))
    assert isinstance(x, list) and len(x) == 4 and all(len(s) == 16 and set(s) <= alphabet for s in x)
    again = pipe.sample(4, steps=3, generator=torch.Generator().manual_seed(0))
    assert x == again


def test_prompts_and_templates_come_back_unchanged(run, tmp_path):
    pipe = unnoise.load(run)
    g = torch.Generator().manual_seed(1)
    done = pipe.complete("the dog", n=3, steps=5, generator=g)
    assert all(s.startswith("the dog") and len(s) == 16 for s in done)
    filled = pipe.infill("the _a_ sat", n=3, steps=5, generator=g)
    for s in filled:
        assert len(s) == 11 and s[:4] == "the " and s[5] == "a" and s[7:] == " sat"
    out = tmp_path / "p.txt"
    assert main(["sample", "--checkpoint", run, "--n", "2", "--steps", "3", "--prompt", "on the", "--out", str(out),
                 "--device", "cpu"]) == 0
    assert all(line.startswith("on the") for line in out.read_text().splitlines())
    assert main(["sample", "--checkpoint", run, "--n", "2", "--steps", "3", "--infill", "c*t s*t", "--placeholder",
                 "*", "--out", str(out), "--device", "cpu"]) == 0
    for line in out.read_text().splitlines():
        assert len(line) == 7 and line[0] == "c" and line[2:5] == "t s" and line[6] == "t"


def test_bad_text_input_is_one_clear_line(run, corpus, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert main(["train", "--data", str(empty), "--out", str(tmp_path / "e"), *COMMON]) == 2
    assert "is empty" in _one_line_error(capsys)
    out = str(tmp_path / "s.txt")
    assert main(["sample", "--checkpoint", run, "--prompt", "the €", "--out", out, "--device", "cpu"]) == 2
    assert "'€' does not occur in the training corpus" in _one_line_error(capsys)
    assert main(["sample", "--checkpoint", run, "--infill", "no placeholder", "--out", out, "--device", "cpu"]) == 2
    assert "has no '_'" in _one_line_error(capsys)
    assert main(["sample", "--checkpoint", run, "--prompt", "the cat sat on the mat", "--out", out,
                 "--device", "cpu"]) == 2
    assert "windows of 16" in _one_line_error(capsys)
    assert main(["train", "--data", str(corpus), "--out", str(tmp_path / "w"), "--window", "8", *COMMON]) == 2
    assert "--window does not apply to text" in _one_line_error(capsys)
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"ab\xff\xfecd")
    assert main(["train", "--data", str(binary), "--out", str(tmp_path / "b"), *COMMON]) == 2
    assert "not UTF-8" in _one_line_error(capsys)


def test_the_corpus_streams_as_windows_of_its_encoded_tokens(tmp_path, monkeypatch):
    text = "héllo wörld, ünïcode ✓\n" * 50
    path = tmp_path / "u.txt"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setattr(tok, "CHUNK", 7)  # many reads, characters split across them
    codec = tok.CharCodec.from_file(str(path))
    assert codec.alphabet == sorted(set(text))
    ids = tok.encode_corpus(str(path), codec)
    assert ids.dtype == np.uint8 and ids.nbytes == len(text) <= path.stat().st_size  # one byte per character
    assert codec.decode(ids) == text
    windows = tok.TokenWindows(ids, 10, stride=4)
    assert len(windows) == (len(ids) - 10) // 4 + 1
    x, cond = windows[3]
    assert cond == {} and x.dtype == torch.long and codec.decode(x) == text[12:22]
    with pytest.raises(ValueError, match="fewer than one window"):
        tok.TokenWindows(ids[:5], 10)


def test_marginal_runs_redraw_from_the_corpus_frequencies_and_a_tokenizer_can_encode(corpus, tmp_path):
    out = tmp_path / "marg"
    assert main(["train", "--data", str(corpus), "--process", "marginal", "--out", str(out), *COMMON]) == 0
    config = json.loads((out / "config.json").read_text())
    codec = tok.CharCodec(list(config["tokens"]["codec"]["alphabet"]))
    counts = np.bincount(codec.encode(TEXT), minlength=codec.vocab_size) + 1.0
    assert np.allclose(config["schedule"]["process"]["marginals"], counts / counts.sum())
    pipe = unnoise.load(str(out))
    assert isinstance(pipe.schedule.forward, unnoise.processes.Marginal)
    assert all(len(s) == 16 for s in pipe.sample(2, steps=3))
    tokenizers = pytest.importorskip("tokenizers")
    bpe = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token="[UNK]"))
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = tokenizers.decoders.ByteLevel()
    bpe.train_from_iterator([TEXT], tokenizers.trainers.BpeTrainer(vocab_size=300, special_tokens=["[UNK]"],
                                                                    show_progress=False))
    bpe.save(str(tmp_path / "tokenizer.json"))
    out = tmp_path / "bpe"
    assert main(["train", "--data", str(corpus), "--tokenizer", str(tmp_path / "tokenizer.json"),
                 "--out", str(out), *COMMON]) == 0
    pipe = unnoise.load(str(out))
    assert pipe.codec.codec.decode(pipe.codec.codec.encode("the dog sat")) == "the dog sat"
    assert pipe.complete("the dog", n=2, steps=3)[0].startswith("the dog")


def test_a_numeric_txt_table_stays_vectors_unless_a_text_option_is_given(tmp_path):
    from types import SimpleNamespace
    claims = unnoise.kinds.get("tokens").train.claims
    table, prose = tmp_path / "points.txt", tmp_path / "prose.txt"
    table.write_text("1.0, 2.0\n3.0 4.0\n")
    prose.write_text("1984 was a year.\n")
    none = dict(seq_len=None, tokenizer=None, process=None)
    assert not claims(SimpleNamespace(data=str(table), **none))
    assert claims(SimpleNamespace(data=str(prose), **none))
    assert claims(SimpleNamespace(data=str(table), **{**none, "process": "masked"}))
    assert not claims(SimpleNamespace(data=str(tmp_path / "x.npy"), **none))
