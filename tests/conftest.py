import os
from pathlib import Path

import pytest
import torch

# Tests must be quick and reproducible on a 2-core CPU.
torch.set_num_threads(min(2, os.cpu_count() or 1))

FSDD = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "fsdd"


@pytest.fixture
def fsdd_root():
    """The shared free-spoken-digit recordings; skip when this checkout has none beside it."""
    rec = FSDD / "recordings"
    if not rec.is_dir():
        pytest.skip(f"{rec} is absent (only developers' machines have ../shared/data/fsdd)")
    return rec
