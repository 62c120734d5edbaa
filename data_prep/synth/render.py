"""Render mouth-region frames (60 x 80 grayscale) from a viseme track, and write them as .avi.

The picture is a frontal mouth crop like the ROI of AVLetters / CUAVE after mouth tracking:
skin with an illumination gradient, upper and lower lips (half ellipses whose thickness grows with
protrusion), the dark mouth interior (an ellipse whose height is the lip opening), the upper and
lower teeth and the tongue tip, both clipped to the interior. Closed lips leave only a thin seam in
lip colour, so a closed mouth has no dark interior pixels. Drawing happens at 4x resolution and is
averaged down (anti-aliasing); then the speaker's camera blur and sensor noise are applied.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from bimodal.errors import DataError

HEIGHT, WIDTH = 60, 80
FPS = 25.0
_SS = 4  # supersampling factor


@dataclass(frozen=True)
class Appearance:
    """How one speaker's mouth looks on camera (all lengths in output pixels).

    skin, lip, interior, teeth, tongue : grey levels (0..255).
    half_width : lip half-width at neutral width.  max_open : interior half-height at opening 1.
    upper_lip, lower_lip : lip thickness.  centre_x, centre_y : mouth centre.
    light_angle (rad), light_strength (relative, 0..~0.2) : linear illumination gradient.
    head_motion : amplitude of the slow head sway (px).  head_hz : its frequency.
    blur_sigma : camera blur.  noise_sigma : sensor noise (grey levels).
    """

    skin: float = 175.0
    lip: float = 120.0
    interior: float = 25.0
    teeth: float = 215.0
    tongue: float = 130.0
    half_width: float = 24.0
    max_open: float = 13.0
    upper_lip: float = 4.5
    lower_lip: float = 5.5
    centre_x: float = 40.0
    centre_y: float = 31.0
    light_angle: float = 0.0
    light_strength: float = 0.1
    head_motion: float = 1.0
    head_hz: float = 0.7
    blur_sigma: float = 0.6
    noise_sigma: float = 2.0

    @classmethod
    def random(cls, rng: np.random.Generator) -> "Appearance":
        skin = rng.uniform(150, 205)
        return cls(
            skin=skin, lip=skin * rng.uniform(0.6, 0.82), interior=rng.uniform(10, 35),
            teeth=min(245.0, skin * rng.uniform(1.05, 1.25)), tongue=skin * rng.uniform(0.6, 0.75),
            half_width=rng.uniform(24, 31), max_open=rng.uniform(11, 15),
            upper_lip=rng.uniform(3.0, 6.0), lower_lip=rng.uniform(4.0, 7.5),
            centre_x=40 + rng.uniform(-3, 3), centre_y=31 + rng.uniform(-3, 3),
            light_angle=rng.uniform(0, 2 * np.pi), light_strength=rng.uniform(0.03, 0.15),
            head_motion=rng.uniform(0.3, 1.5), head_hz=rng.uniform(0.3, 1.2),
            blur_sigma=rng.uniform(0.4, 0.9), noise_sigma=rng.uniform(1.0, 3.5),
        )

    def to_dict(self) -> dict:
        return {k: float(v) for k, v in asdict(self).items()}


def _illumination(app: Appearance) -> np.ndarray:
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    u = ((x - WIDTH / 2) * np.cos(app.light_angle) + (y - HEIGHT / 2) * np.sin(app.light_angle)) / (WIDTH / 2)
    return (1.0 + app.light_strength * u).astype(np.float32)


def _draw_frame(shape, app: Appearance, dx: float, dy: float) -> np.ndarray:
    """One frame at supersampled resolution, float32 (H*SS, W*SS)."""
    opening, width, rounding, teeth, tongue = (float(v) for v in shape)
    s = _SS
    img = np.full((HEIGHT * s, WIDTH * s), app.skin, np.float32)
    cx, cy = (app.centre_x + dx) * s, (app.centre_y + dy) * s
    w = app.half_width * (0.8 + 0.3 * width - 0.35 * rounding) * s
    h = app.max_open * opening * (1.0 + 0.25 * rounding) * s
    protrude = 1.0 + 0.5 * rounding
    tu, tl = app.upper_lip * protrude * s, app.lower_lip * protrude * s
    c = (int(round(cx)), int(round(cy)))
    # lips: upper half ellipse above the centre line, lower half below
    cv2.ellipse(img, c, (int(w + 0.5 * s), int(h + tu)), 0, 180, 360, float(app.lip), -1, cv2.LINE_8)
    cv2.ellipse(img, c, (int(w + 0.5 * s), int(h + tl)), 0, 0, 180, float(app.lip), -1, cv2.LINE_8)
    # slightly lighter lower-lip highlight gives the lips some relief
    cv2.ellipse(img, (c[0], int(cy + h + 0.55 * tl)), (int(0.55 * w), max(1, int(0.22 * tl))), 0, 0, 360,
                float(min(255.0, app.lip * 1.12)), -1, cv2.LINE_8)
    if h < 0.5 * s:
        # closed: a seam in darkened lip colour, never as dark as the interior
        cv2.line(img, (int(cx - w), c[1]), (int(cx + w), c[1]), float(app.lip * 0.88), max(1, s // 2))
        return img
    wi = w * (0.88 - 0.1 * rounding)
    mask = np.zeros_like(img, dtype=np.uint8)
    cv2.ellipse(mask, c, (int(wi), int(h)), 0, 0, 360, 1, -1, cv2.LINE_8)
    inner = np.full_like(img, app.interior)
    top, bottom = cy - h, cy + h
    if teeth > 0.02:
        band = teeth * min(h, 0.45 * app.max_open * s) * 0.6
        cv2.rectangle(inner, (int(cx - 0.8 * wi), int(top)), (int(cx + 0.8 * wi), int(top + band)), float(app.teeth), -1)
        cv2.rectangle(inner, (int(cx - 0.6 * wi), int(bottom - 0.5 * band)), (int(cx + 0.6 * wi), int(bottom)),
                      float(app.teeth * 0.92), -1)
    if tongue > 0.02:
        # the tongue tip rises from the floor of the mouth towards the upper teeth as `tongue` grows
        ty = bottom - tongue * 1.4 * h
        cv2.ellipse(inner, (c[0], int(max(ty, top) + 0.5 * h)), (int(0.55 * wi), int(0.5 * h + 1)), 0, 180, 360,
                    float(app.tongue), -1, cv2.LINE_8)
        cv2.rectangle(inner, (int(cx - 0.55 * wi), int(max(ty, top) + 0.5 * h)), (int(cx + 0.55 * wi), int(bottom)),
                      float(app.tongue), -1)
    np.copyto(img, inner, where=mask.astype(bool))
    return img


def render_video(track: np.ndarray, appearance: Appearance, rng: np.random.Generator, fps: float = FPS) -> np.ndarray:
    """Frames of one utterance.

    Parameters
    ----------
    track : (T, 5) viseme track from :func:`data_prep.synth.visemes.viseme_track`.
    appearance : the speaker's :class:`Appearance`.
    rng : numpy Generator for head-motion phase and sensor noise (seeded per utterance).

    Returns
    -------
    frames : uint8 (T, 60, 80) grayscale.
    """
    track = np.asarray(track, dtype=np.float32)
    if track.ndim != 2 or track.shape[1] != 5:
        raise DataError(f"expected a (T, 5) viseme track, got shape {track.shape}", field="track")
    T = track.shape[0]
    t = np.arange(T) / fps
    phase = rng.uniform(0, 2 * np.pi, size=3)
    a = appearance.head_motion
    dx = a * np.sin(2 * np.pi * appearance.head_hz * t + phase[0]) + 0.3 * a * np.sin(2 * np.pi * 2.3 * t + phase[2])
    dy = 0.6 * a * np.sin(2 * np.pi * appearance.head_hz * 0.8 * t + phase[1])
    light = _illumination(appearance)
    out = np.empty((T, HEIGHT, WIDTH), np.float32)
    for k in range(T):  # a few dozen frames per utterance; drawing is OpenCV calls
        big = _draw_frame(track[k], appearance, dx[k], dy[k])
        small = cv2.resize(big, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
        out[k] = cv2.GaussianBlur(small, (0, 0), appearance.blur_sigma)
    out *= light[None]
    out += rng.normal(0.0, appearance.noise_sigma, size=out.shape).astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def write_avi(path, frames: np.ndarray, fps: float = FPS) -> Path:
    """Write grayscale frames (T, H, W) uint8 to an MJPG .avi atomically (temp file + rename)."""
    from data_prep.video import write_video

    frames = np.asarray(frames)
    if frames.ndim != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise DataError(f"expected non-empty uint8 frames (T, H, W), got {frames.dtype} {frames.shape}",
                        path=path, field="frames")
    return write_video(path, frames, fps, fourcc="MJPG")


def read_avi_gray(path) -> np.ndarray:
    """Decode an .avi into uint8 (T, H, W) grayscale frames (used by the corpus self-checks and tests)."""
    from data_prep.video import read_video

    return read_video(path)[0]
