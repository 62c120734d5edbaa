"""Which HCopy settings made AVLetters' MFCC_E_D files? The measurements behind ``data_prep.mfcc``.

``python -m benchmarks.avletters_mfcc_settings [--avletters DIR] [--fsdd DIR] [--n-fsdd N]``

Prints, from the shipped ``Audio/mfcc/Clean/*.mfcc`` files (and the ``Lips/*.mat`` frame counts):

1. the headers (TARGETRATE, kind, coefficients);
2. ENORMALISE: the E column's per-file maximum and minimum;
3. DELTAWINDOW and the edge rule: the largest gap between the stored deltas and HTK's regression of
   the stored statics, for windows 1-3, with replicated edge frames (HTK 3) or V1COMPAT's simple
   differences, inside the utterance and at its edges;
4. CEPLIFTER: per-coefficient standard deviations (per-utterance mean removed) against the lifter-22
   weights and, when FSDD is there, against :func:`data_prep.mfcc.htk_mfcc` on real speech with
   and without the lifter;
5. NUMCHANS: no cepstral column is identically zero;
6. WINDOWSIZE: audio frames against video frames (HTK's frame count bounds the window).

Reads a few MB; runs in seconds.
"""
from __future__ import annotations

import argparse
import math
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import scipy.io

from data_prep.audio import load_wav
from data_prep.htk import read_htk
from data_prep.mfcc import HTKMFCCOptions, htk_deltas, htk_mfcc, lifter_weights

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def per_utterance_std(mats: list[np.ndarray]) -> np.ndarray:
    """Per-coefficient std over all frames after removing each utterance's mean."""
    return np.concatenate([m - m.mean(axis=0) for m in mats]).std(axis=0)


def header_report(files):
    kinds = Counter()
    for f in files:
        _, h = read_htk(f)
        kinds[(h.samp_period_100ns, h.kind_name, h.samp_size // 4)] += 1
    print("1. headers (sampPeriod x 100 ns, kind, coefficients): files")
    for k, n in kinds.items():
        print(f"   {k}: {n}")


def energy_report(mats):
    e_max = np.array([m[:, 12].max() for m in mats])
    e_min = np.array([m[:, 12].min() for m in mats])
    repeated_min = sum(int((m[:, 12] == m[:, 12].min()).sum() > 1) for m in mats)
    clamp = 1.0 - 50.0 * math.log(10.0) / 10.0 * 0.1
    print("2. ENORMALISE (E = 1 - (max - e) ESCALE, e clamped SILFLOOR dB below the max)")
    print(f"   max E per file: {e_max.min():.7f} .. {e_max.max():.7f}; exactly 1.0 in {(e_max == 1.0).sum()} "
          f"of {len(mats)} files")
    print(f"   min E per file: {e_min.min():.3f} .. {e_min.max():.3f}; the clamp for SILFLOOR 50 dB and "
          f"ESCALE 0.1 is {clamp:.3f}; files whose minimum repeats (clamped?): {repeated_min}")
    db = (1.0 - e_min) / 0.1 * 10.0 / math.log(10.0)
    print(f"   range per file if ESCALE = 0.1: {db.min():.0f} .. {db.max():.0f} dB (ESCALE 1.0 would make it "
          f"{db.min() / 10:.1f} .. {db.max() / 10:.1f} dB)")


def delta_report(mats):
    print("3. deltas against HTK's regression of the stored statics, max |error|")
    print("   window  edges       inside (frames 3..T-4)  first/last 2 frames")
    for width in (1, 2, 3):
        for v1 in (False, True):
            inner, edge = 0.0, 0.0
            for m in mats:
                err = np.abs(htk_deltas(m[:, :13], width, v1) - m[:, 13:])
                inner = max(inner, float(err[3:-3].max()))
                edge = max(edge, float(np.concatenate([err[:2], err[-2:]]).max()))
            rule = "V1COMPAT" if v1 else "replicated"
            print(f"   {width}       {rule:<10}  {inner:<22.2e}  {edge:.2e}")


def lifter_report(mats, fsdd: Path | None, n_fsdd: int):
    std = per_utterance_std(mats)[:12]
    w = lifter_weights(12, 22)
    print("4. CEPLIFTER: per-coefficient std of c1..c12 (per-utterance mean removed)")
    print("   AVLetters        ", np.array2string(std, precision=2))
    print("   lifter-22 weights", np.array2string(w, precision=2))
    print(f"   AVLetters c12/c1 = {std[11] / std[0]:.2f}; if liftered, the unliftered c12/c1 would be "
          f"{std[11] / w[11] / (std[0] / w[0]):.3f}")
    if fsdd is None:
        print("   (FSDD absent: no comparison with real speech)")
        return
    wavs = sorted(fsdd.glob("*.wav"))
    wavs = wavs[::max(1, len(wavs) // n_fsdd)][:n_fsdd]
    print(f"   htk_mfcc on {len(wavs)} FSDD recordings (8 kHz, so HIFREQ 4 kHz), std / AVLetters' std:")
    for lifter in (0, 22):
        opts = replace(HTKMFCCOptions(), hi_freq=4000.0, cep_lifter=lifter)
        feats = [htk_mfcc(*load_wav(p), opts) for p in wavs]
        ratio = per_utterance_std(feats)[:12] / std
        print(f"   CEPLIFTER {lifter:>2}: {np.array2string(ratio, precision=2)}  "
              f"(max/min {ratio.max() / ratio.min():.1f})")


def numchans_report(mats):
    std = per_utterance_std(mats)[:12]
    print(f"5. NUMCHANS: smallest per-column std of c1..c12 is {std.min():.3f} (c{int(std.argmin()) + 1}); "
          "N <= 12 channels would make c_N identically 0, so NUMCHANS >= 13")


def window_report(root: Path, files):
    diff = Counter()
    for f in files:
        lips = root / "Lips" / f"{f.stem}-lips.mat"
        if not lips.is_file():
            continue
        n_video = int(np.ravel(scipy.io.loadmat(lips, variable_names=["siz"])["siz"])[2])
        diff[read_htk(f)[1].n_samples - 2 * n_video] += 1
    print("6. WINDOWSIZE: audio frames - 2 x video frames (25 fps video, 20 ms audio frames): files")
    print(f"   {dict(sorted(diff.items()))}")
    print("   2T - 1 frames over the same T x 40 ms: floor((40T - W) / 20) + 1 = 2T - 1 <=> 20 < W <= 40 ms")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--avletters", type=Path, default=SHARED / "avletters")
    ap.add_argument("--fsdd", type=Path, default=SHARED / "fsdd" / "recordings")
    ap.add_argument("--n-fsdd", type=int, default=60, help="FSDD recordings for the lifter comparison")
    args = ap.parse_args(argv)
    files = sorted((args.avletters / "Audio" / "mfcc" / "Clean").glob("*.mfcc"))
    if not files:
        raise SystemExit(f"no .mfcc files under {args.avletters}/Audio/mfcc/Clean")
    mats = [read_htk(f)[0] for f in files]
    print(f"{len(files)} AVLetters MFCC files under {args.avletters}")
    header_report(files)
    energy_report(mats)
    delta_report(mats)
    lifter_report(mats, args.fsdd if args.fsdd.is_dir() else None, args.n_fsdd)
    numchans_report(mats)
    window_report(args.avletters, files)


if __name__ == "__main__":
    main()
