import os
from pathlib import Path

import pytest
import torch

# The test matrices are tiny: a second intra-op thread only adds synchronisation, and on a busy
# 2-core machine OpenMP barriers stall badly (100x slowdowns seen). One thread also keeps the
# float summation order, hence every number, the same from run to run.
torch.set_num_threads(1)

# ../shared/data beside the checkout; BIMODAL_SHARED_DATA points elsewhere (e.g. from a git worktree).
SHARED_DATA = Path(os.environ.get("BIMODAL_SHARED_DATA", Path(__file__).resolve().parent.parent.parent / "shared" / "data"))
FSDD = SHARED_DATA / "fsdd"
AVLETTERS = SHARED_DATA / "avletters"
GRID_S1 = SHARED_DATA / "grid-s1"


@pytest.fixture
def fsdd_root():
    """The shared free-spoken-digit recordings; skip when this checkout has none beside it."""
    rec = FSDD / "recordings"
    if not rec.is_dir():
        pytest.skip(f"{rec} is absent (only developers' machines have ../shared/data/fsdd)")
    return rec


@pytest.fixture(scope="session")
def grid_root(tmp_path_factory):
    """The four real GRID clips (../shared/data/grid-samples, or $BIMODAL_SHARED_DATA/grid-samples) laid
    out as a folder corpus ROOT/s1/bin/<utt>.mpg by symlinks; skip when the clips are absent."""
    src = SHARED_DATA / "grid-samples"
    clips = sorted(src.glob("*.mpg"))
    if len(clips) != 4:
        pytest.skip(f"{src} does not hold the 4 GRID .mpg clips (only developers' machines have ../shared/data)")
    root = tmp_path_factory.mktemp("grid")
    (root / "s1" / "bin").mkdir(parents=True)
    for c in clips:
        (root / "s1" / "bin" / c.name).symlink_to(c)
    return root


@pytest.fixture
def avletters_root():
    """The shared AVLetters subset (Lips/*.mat + Audio/mfcc/Clean/*.mfcc); skip when absent."""
    if not (AVLETTERS / "Lips").is_dir():
        pytest.skip(f"{AVLETTERS}/Lips is absent (only developers' machines have ../shared/data/avletters)")
    return AVLETTERS


@pytest.fixture
def grid_s1_root():
    """The shared GRID speaker s1 as distributed (s1/*.mkv + alignments/s1/*.align, 700 sentences); skip when absent."""
    if not (GRID_S1 / "s1").is_dir() or not (GRID_S1 / "alignments" / "s1").is_dir():
        pytest.skip(f"{GRID_S1} has no s1/ and alignments/s1/ (only developers' machines have ../shared/data/grid-s1)")
    return GRID_S1
