from pathlib import Path

import pytest
import torch

# The test matrices are tiny: a second intra-op thread only adds synchronisation, and on a busy
# 2-core machine OpenMP barriers stall badly (100x slowdowns seen). One thread also keeps the
# float summation order, hence every number, the same from run to run.
torch.set_num_threads(1)

FSDD = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "fsdd"


@pytest.fixture
def fsdd_root():
    """The shared free-spoken-digit recordings; skip when this checkout has none beside it."""
    rec = FSDD / "recordings"
    if not rec.is_dir():
        pytest.skip(f"{rec} is absent (only developers' machines have ../shared/data/fsdd)")
    return rec
