"""Phoneme-to-viseme table and the coarticulated mouth-shape trajectory.

A *viseme* is a mouth shape shared by phonemes that look alike. Each viseme class is five numbers
in [0, 1] that the renderer (:mod:`data_prep.synth.render`) turns into pixels:

==============  =======  =====  ========  =====  ======  ===============================================
class           opening  width  rounding  teeth  tongue  phonemes (eSpeak English mnemonics)
==============  =======  =====  ========  =====  ======  ===============================================
rest            speaker  0.50   0.10      0.00   0.00    pauses ``_`` ``_:`` (lips relaxed, slightly parted)
bilabial        0.00     0.50   0.00      0.00   0.00    p b m — lips pressed together (closure enforced)
labiodental     0.08     0.45   0.00      1.00   0.00    f v — lower lip tucked under the upper teeth
dental          0.22     0.55   0.00      0.90   1.00    T D — tongue tip between the teeth
alveolar        0.30     0.55   0.00      0.80   0.70    t d n l — tongue tip up behind the teeth, visible
sibilant        0.14     0.60   0.00      1.00   0.15    s z — teeth nearly together
postalveolar    0.20     0.35   0.70      0.90   0.15    S Z tS dZ — lips pushed forward
velar           0.45     0.55   0.00      0.50   0.00    k g N — open, tongue back (not visible)
glide_w         0.12     0.15   1.00      0.00   0.00    w — tight rounding
glide_r         0.28     0.35   0.60      0.40   0.00    r
open            1.00     0.60   0.00      0.40   0.10    A: a aa A@ (father, R)
open_mid        0.70     0.65   0.05      0.50   0.10    E e V @ a# 3: (bed, cup)
close_front     0.32     1.00   0.00      1.00   0.20    i: i I j (bee, sit) — spread lips
mid_front       0.50     0.85   0.00      0.80   0.10    eI-onset e@ (day)
open_round      0.75     0.35   0.60      0.30   0.05    0 O: O@ o@ (lot, four)
mid_round       0.50     0.25   0.80      0.20   0.00    oU-offset o (go)
close_round     0.22     0.12   1.00      0.10   0.00    u: U U@ (two, book)
==============  =======  =====  ========  =====  ======  ===============================================

Diphthongs map to two classes (onset, offset), e.g. ``aI`` → open, close_front. ``h`` is
*transparent*: it takes the shape of its neighbours (no keyframe). Stress and length marks
(``'``, ``,``, ``=``) are stripped before the look-up; an unknown mnemonic falls back on its first
character and then on ``open_mid`` (logged once).

Trajectory (:func:`viseme_track`): one keyframe per phoneme at its centre (two for diphthongs at
30 % and 80 %, two for bilabials at 25 % and 75 % so the closure is held), linear interpolation
on a 1 ms grid, a Gaussian coarticulation filter (σ = ``coarticulation_ms``, the speaker's
"sloppiness"), then the mean over each frame's exposure interval (motion blur at the frame rate).
Because a /b/ can be shorter than a frame, smoothing alone would never close the lips, so the
bilabial closure is imposed afterwards: every frame whose centre lies inside a p/b/m — and at
least the frame nearest its midpoint — gets opening 0 (the lips must touch to make the stop).
"""
from __future__ import annotations

import logging

import numpy as np
from scipy.ndimage import gaussian_filter1d

log = logging.getLogger(__name__)

FEATURES = ("opening", "width", "rounding", "teeth", "tongue")

#: viseme class -> (opening, width, rounding, teeth, tongue); "rest" opening is per speaker.
VISEMES: dict[str, tuple[float, float, float, float, float]] = {
    "rest": (0.15, 0.50, 0.10, 0.00, 0.00),
    "bilabial": (0.00, 0.50, 0.00, 0.00, 0.00),
    "labiodental": (0.08, 0.45, 0.00, 1.00, 0.00),
    "dental": (0.22, 0.55, 0.00, 0.90, 1.00),
    "alveolar": (0.30, 0.55, 0.00, 0.80, 0.70),
    "sibilant": (0.14, 0.60, 0.00, 1.00, 0.15),
    "postalveolar": (0.20, 0.35, 0.70, 0.90, 0.15),
    "velar": (0.45, 0.55, 0.00, 0.50, 0.00),
    "glide_w": (0.12, 0.15, 1.00, 0.00, 0.00),
    "glide_r": (0.28, 0.35, 0.60, 0.40, 0.00),
    "open": (1.00, 0.60, 0.00, 0.40, 0.10),
    "open_mid": (0.70, 0.65, 0.05, 0.50, 0.10),
    "close_front": (0.32, 1.00, 0.00, 1.00, 0.20),
    "mid_front": (0.50, 0.85, 0.00, 0.80, 0.10),
    "open_round": (0.75, 0.35, 0.60, 0.30, 0.05),
    "mid_round": (0.50, 0.25, 0.80, 0.20, 0.00),
    "close_round": (0.22, 0.12, 1.00, 0.10, 0.00),
}

TRANSPARENT = ()  # phonemes that take their neighbours' shape

#: eSpeak English phoneme mnemonic (stress marks stripped) -> viseme classes
PHONEME_TO_VISEME: dict[str, tuple[str, ...]] = {
    "_": ("rest",), "_:": ("rest",), "_!": ("rest",), "_|": ("rest",), "_^_": ("rest",),
    "p": ("bilabial",), "b": ("bilabial",), "m": ("bilabial",),
    "f": ("labiodental",), "v": ("labiodental",),
    "T": ("dental",), "D": ("dental",),
    "t": ("alveolar",), "d": ("alveolar",), "n": ("alveolar",), "l": ("alveolar",), "t[": ("alveolar",),
    "t#": ("alveolar",), "d#": ("alveolar",), "n-": ("alveolar",), "l/": ("alveolar",), "@L": ("open_mid", "alveolar"),
    "s": ("sibilant",), "z": ("sibilant",),
    "S": ("postalveolar",), "Z": ("postalveolar",), "tS": ("postalveolar",), "dZ": ("postalveolar",),
    "k": ("velar",), "g": ("velar",), "N": ("velar",), "x": ("velar",),
    "w": ("glide_w",), "r": ("glide_r",), "r-": ("glide_r",), "j": ("close_front",),
    "h": TRANSPARENT, "?": TRANSPARENT,
    "A:": ("open",), "a": ("open",), "aa": ("open",), "A@": ("open",), "A": ("open",),
    "E": ("open_mid",), "e": ("open_mid",), "V": ("open_mid",), "@": ("open_mid",), "@2": ("open_mid",),
    "@5": ("open_mid",), "a#": ("open_mid",), "3:": ("open_mid",), "3": ("open_mid",), "@-": ("open_mid",),
    "i:": ("close_front",), "i": ("close_front",), "I": ("close_front",), "I2": ("close_front",),
    "I#": ("close_front",),
    "0": ("open_round",), "O:": ("open_round",), "O@": ("open_round",), "o@": ("open_round",), "O": ("open_round",),
    "o": ("mid_round",), "u:": ("close_round",), "U": ("close_round",), "U@": ("close_round",), "u": ("close_round",),
    # diphthongs: onset, offset
    "eI": ("mid_front", "close_front"), "aI": ("open", "close_front"), "aI2": ("open", "close_front"),
    "aU": ("open", "close_round"), "OI": ("open_round", "close_front"), "oU": ("open_mid", "mid_round"),
    "i@": ("close_front", "open_mid"), "e@": ("mid_front", "open_mid"), "i@3": ("close_front", "open_mid"),
}

_unknown_logged: set = set()


def phoneme_visemes(mnemonic: str) -> tuple[str, ...]:
    """Viseme classes of one eSpeak phoneme mnemonic (stress marks ignored); ``()`` = transparent."""
    name = mnemonic.lstrip("',=%")
    if name in PHONEME_TO_VISEME:
        return PHONEME_TO_VISEME[name]
    if name.startswith("_"):
        return ("rest",)
    for cut in range(len(name) - 1, 0, -1):  # longest known prefix, e.g. "aI3" -> "aI"
        if name[:cut] in PHONEME_TO_VISEME:
            return PHONEME_TO_VISEME[name[:cut]]
    if mnemonic not in _unknown_logged:
        _unknown_logged.add(mnemonic)
        log.warning("no viseme for eSpeak phoneme %r; using open_mid", mnemonic)
    return ("open_mid",)


def is_bilabial(mnemonic: str) -> bool:
    return phoneme_visemes(mnemonic) == ("bilabial",)


def _keyframes(phonemes, duration, rest):
    """Times (s) and targets (K, 5) of the keyframes of a phoneme sequence."""
    times, targets = [0.0], [rest]
    for name, start, end in phonemes:
        classes = phoneme_visemes(name)
        d = max(end - start, 1e-3)
        if not classes:
            continue
        if classes == ("rest",):
            spots = [(start + 0.5 * d, rest)]
        elif len(classes) == 2:
            spots = [(start + 0.3 * d, VISEMES[classes[0]]), (start + 0.8 * d, VISEMES[classes[1]])]
        elif classes == ("bilabial",):
            spots = [(start + 0.25 * d, VISEMES["bilabial"]), (start + 0.75 * d, VISEMES["bilabial"])]
        else:
            spots = [(start + 0.5 * d, VISEMES[classes[0]])]
        for t, v in spots:
            times.append(t)
            targets.append(v)
    times.append(duration)
    targets.append(rest)
    order = np.argsort(np.asarray(times), kind="stable")
    return np.asarray(times)[order], np.asarray(targets, dtype=np.float64)[order]


def viseme_track(phonemes, n_frames: int, fps: float = 25.0, coarticulation_ms: float = 35.0,
                 rest_opening: float = 0.15) -> np.ndarray:
    """Per-frame mouth shape for a timed phoneme sequence.

    Parameters
    ----------
    phonemes : sequence of ``(mnemonic, start_s, end_s)`` in time order (times within the video).
    n_frames : number of video frames T; the video covers ``[0, T / fps)``.
    fps : frame rate.
    coarticulation_ms : standard deviation of the Gaussian coarticulation filter.
    rest_opening : lip opening at rest (pauses), > 0 so that only bilabials close the lips.

    Returns
    -------
    track : float32 array (T, 5), columns :data:`FEATURES`, values in [0, 1].
    """
    if n_frames <= 0:
        raise ValueError(f"n_frames must be positive, got {n_frames}")
    duration = n_frames / fps
    rest = (rest_opening,) + VISEMES["rest"][1:]
    times, targets = _keyframes(phonemes, duration, rest)
    step = 0.001
    per_frame = int(round(1.0 / (fps * step)))
    grid = (np.arange(n_frames * per_frame) + 0.5) * step
    dense = np.stack([np.interp(grid, times, targets[:, j]) for j in range(targets.shape[1])], axis=1)
    dense = gaussian_filter1d(dense, sigma=coarticulation_ms / 1000.0 / step, axis=0, mode="nearest")
    track = dense.reshape(n_frames, per_frame, -1).mean(axis=1)
    centres = (np.arange(n_frames) + 0.5) / fps
    for name, start, end in phonemes:
        if is_bilabial(name):
            closed = (centres >= start) & (centres <= end)
            closed[min(n_frames - 1, int((start + end) / 2 * fps))] = True
            track[closed, 0] = 0.0
    return np.clip(track, 0.0, 1.0).astype(np.float32)
