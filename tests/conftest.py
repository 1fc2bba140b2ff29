import os

import pytest
import torch

import unnoise
from unnoise.analytic import GaussianMixture

# matplotlib must never try a display in tests
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Every test network is tiny: one intra-op thread is as fast, and on a machine shared with other
    jobs two threads can be ten times slower (OpenMP threads wait on each other)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def g():
    return torch.Generator().manual_seed(1234)


@pytest.fixture(scope="module")
def smooth8():
    """A random 8-D mixture with overlapping components: a smooth ODE, so solver orders show cleanly."""
    return GaussianMixture.random(4, 8, spread=1.0, std_range=(0.5, 1.0), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def ode_reference(smooth8):
    """Tight Dormand-Prince solve of the probability-flow ODE from sigma 10 to 0.01, then D."""
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 10
    ref = unnoise.sample(smooth8.denoise, x, torch.tensor([10.0, 0.01, 0.0], dtype=torch.float64), sampler="rk45",
                         rtol=1e-8, atol=1e-8)
    return x, ref
