"""Speaker-independent splits: train/test utterance indices with no speaker on both sides.

Used by the experiments' outer folds and by the inner cross-validation that picks C
(:func:`bimodal.classifiers.select_C`).
"""
from __future__ import annotations

import re

import numpy as np

from .errors import ConfigError, DataError, ShapeError


def _speaker_number(name, position: int) -> int:
    """The last integer in a speaker name (``"s07"`` → 7), else the 1-based position in sorted order."""
    m = re.findall(r"\d+", str(name))
    return int(m[-1]) if m else position + 1


def speaker_folds(speakers, n_folds=5, seed=0, split="kfold"):
    """Train/test index pairs with no speaker on both sides.

    Parameters
    ----------
    speakers : (U,) speaker of each utterance (any sortable values, e.g. str).
    n_folds : number of folds for ``split="kfold"``.
    seed : shuffles the speakers before they are dealt to folds (same seed ⇒ same folds).
    split :
        * ``"kfold"`` — speakers shuffled by ``seed`` and dealt round-robin into ``n_folds``
          groups; fold ``f`` tests group ``f``. Every utterance is tested exactly once.
        * ``"loso"`` — leave one speaker out (one fold per speaker, in sorted speaker order).
        * ``"even_odd"`` — the paper's CUAVE-style fixed split, one fold: speakers with an even
          number train, odd ones test. The number is the last integer in the speaker name
          (``"s04"`` → 4), or, for names without digits, the 1-based position in sorted order.

    Returns
    -------
    list of ``(train_idx, test_idx)`` int64 numpy arrays (sorted utterance indices).
    """
    speakers = np.asarray(speakers)
    if speakers.ndim != 1 or speakers.shape[0] == 0:
        raise ShapeError(f"expected a non-empty 1-d speaker array, got shape {speakers.shape}", field="speakers")
    uniq, inv = np.unique(speakers, return_inverse=True)
    idx = np.arange(len(speakers))
    if split == "even_odd":
        numbers = np.array([_speaker_number(s, i) for i, s in enumerate(uniq)])
        is_train = (numbers % 2 == 0)[inv]
        if is_train.all() or not is_train.any():
            raise DataError(f"even/odd split needs both even- and odd-numbered speakers, got {uniq.tolist()}",
                            field="speakers")
        return [(idx[is_train], idx[~is_train])]
    if split == "loso":
        fold_of_speaker = np.arange(len(uniq))
        n_folds = len(uniq)
    elif split == "kfold":
        n_folds = int(n_folds)
        if not 2 <= n_folds <= len(uniq):
            raise ConfigError(f"n_folds must be between 2 and the number of speakers ({len(uniq)}), got {n_folds}")
        perm = np.random.default_rng(seed).permutation(len(uniq))
        fold_of_speaker = np.empty(len(uniq), dtype=np.int64)
        fold_of_speaker[perm] = np.arange(len(uniq)) % n_folds
    else:
        raise ConfigError(f"split must be 'kfold', 'loso' or 'even_odd', got {split!r}")
    fold = fold_of_speaker[inv]
    return [(idx[fold != f], idx[fold == f]) for f in range(n_folds)]
