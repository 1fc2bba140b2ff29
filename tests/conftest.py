import os

import pytest
import torch

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
