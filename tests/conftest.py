import os

import pytest
import torch

# matplotlib must never try a display in tests
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def g():
    return torch.Generator().manual_seed(1234)
