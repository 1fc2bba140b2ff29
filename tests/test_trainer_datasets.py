"""The Trainer over datasets: a streamed map-style dataset read by DataLoader workers trains exactly
like the same examples as an in-memory tensor, resumes bitwise mid-epoch, and every example is read
once per epoch, by exactly one rank."""
import torch

import unnoise
from unnoise.data.memory import TensorDataset
from unnoise.train import EpochSampler, TrainConfig, Trainer, _RankBatches


class Streamed(torch.utils.data.Dataset):
    """A dataset without ``gather``: the Trainer must read it through a DataLoader."""

    def __init__(self, x, labels):
        self.x, self.labels = x, labels

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i].clone(), {"label": self.labels[i].clone()}


def data():
    g = torch.Generator().manual_seed(0)
    x = unnoise.data.toy_dataset("moons", 90, g)  # 90 examples, batch 40: epochs end mid-batch
    return x, (x[:, 0] > 0).long()


def trainer(dataset, run_dir=None, **overrides):
    torch.manual_seed(0)
    net = unnoise.nets.build("mlp", shape=[2], width=16, depth=1, num_classes=2)
    cfg = TrainConfig(**{"steps": 7, "batch_size": 40, "device": "cpu", "log_every": 100, "lr": 3e-3,
                         "cond_dropout": 0.3, "num_workers": 2, **overrides})
    return Trainer(unnoise.Denoiser(net), unnoise.schedules.get("ddpm"), dataset, cfg, run_dir=run_dir)


def weights(t):
    return [p.detach().clone() for p in t.denoiser.parameters()] + [p.detach().clone() for p in t.ema.parameters()]


def test_streamed_dataset_trains_exactly_like_the_tensor():
    x, y = data()
    a = trainer(TensorDataset(x, {"label": y}))
    a.fit(progress=False)
    b = trainer(Streamed(x, y))
    b.fit(progress=False)
    assert all(torch.equal(p, q) for p, q in zip(weights(a), weights(b)))
    seen = []
    c = trainer(Streamed(x, y), steps=1)
    forward = c.denoiser.net.forward
    c.denoiser.net.forward = lambda xin, c_noise, cond: seen.append(cond) or forward(xin, c_noise, cond)
    c.fit(progress=False)
    # condition dropout reached the network: some labels are the null class 2, the rest are real
    labels = seen[0]["label"]
    assert labels.shape == (40,) and (labels == 2).any() and (labels < 2).any()


def test_streamed_dataset_resumes_bitwise_mid_epoch(tmp_path):
    x, y = data()
    whole = trainer(Streamed(x, y), steps=7)
    whole.fit(progress=False)
    run = str(tmp_path / "run")
    first = trainer(Streamed(x, y), run, steps=3)  # stops at example 120 of 180: mid-epoch
    first.fit(progress=False)
    second = trainer(Streamed(x, y), run, steps=7, resume_from=run)
    assert second.step_count == 3
    second.fit(progress=False)
    assert all(torch.equal(p, q) for p, q in zip(weights(whole), weights(second)))


def test_ranks_read_disjoint_shards_covering_each_example_once_per_epoch():
    n, batch, world = 96, 32, 2
    sampler = EpochSampler(n, seed=5)
    per_rank = batch // world
    shards = [_RankBatches(sampler, batch, slice(r * per_rank, (r + 1) * per_rank), start=0) for r in range(world)]
    iters = [iter(s) for s in shards]
    read = [[] for _ in range(world)]
    for _ in range(n // batch):  # one epoch
        for r in range(world):
            read[r] += next(iters[r])
    assert not set(read[0]) & set(read[1])
    assert sorted(read[0] + read[1]) == list(range(n))
