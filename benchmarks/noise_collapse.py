"""Why does the audio RBM fall to chance at 0 dB? ``python -m benchmarks.noise_collapse [paper]``.

One fold of the demo corpus (seed 0, fold 0 of 3 speaker folds; generated if absent), the demo's
audio settings (PCA 40 + deltas, 4-frame windows pooled to 25 fps, 192-unit Gaussian RBM, 10
epochs, logistic regression on S = 1, 3 pooled features), classifier trained on clean training
speakers, tested on clean and 0 dB (speech-active SNR, as the experiments) test speakers. With
``paper``: the paper's front end instead (161-bin spectrogram + d + dd = 483 dims, PCA-whitened
to 100, 10 audio frames per window). Each is run without and with per-utterance mean
normalisation of the spectrogram features (the paper's "feature mean normalisation over time").
Prints the shift of the whitened inputs and of the pooled features at 0 dB, the RBM's hidden
statistics, and accuracies; "re-standardising" rescales the noisy test features to the clean test
statistics, a diagnostic that uses test statistics (not a method). About 1-3 CPU minutes.
"""
import json
import sys
import time
from types import SimpleNamespace

import numpy as np
import soundfile as sf
import torch

from bimodal.dbn import DBN
from bimodal.evaluation import evaluate_features
from bimodal.folds import speaker_folds
from bimodal.features import pool_slices
from data_prep.audio import log_spectrogram
from data_prep.whitening import PCAWhitener
from data_prep.windows import align_audio_to_video, av_windows, deltas
from data_prep.synth.corpus import default_corpus_dir, generate_corpus
from experiments.pipeline import noise_transform

torch.set_num_threads(1)
root = generate_corpus(default_corpus_dir(0, 12, 3, ("digits", "syllables")), seed=0, n_speakers=12, repetitions=3,
                       vocabulary=("digits", "syllables"))
man = json.loads((root / "manifest.json").read_text())["utterances"]
ents = man
spk = np.array([e["speaker"] for e in ents])
tr, te = speaker_folds(spk, n_folds=3, seed=0)[0]
waves = [sf.read(root / e["audio"], dtype="float32")[0] for e in ents]
ids = [f'{e["speaker"]}/{e["label"]}/{e["utterance"]}' for e in ents]
PAPER = len(sys.argv) > 1 and sys.argv[1] == "paper"
def specs(idx, snr):
    out = []
    for i in idx:
        w = waves[i] if snr is None else noise_transform(snr, 0)(waves[i], 16000, SimpleNamespace(utterance_id=ids[i]))
        s = log_spectrogram(w, 16000, device="cpu")
        out.append(s if PAPER else align_audio_to_video(s, len(w) // 640, 25.0, 100.0))
    return out
t0 = time.time()
S = {("train", None): specs(tr, None), ("test", None): specs(te, None), ("test", 0.0): specs(te, 0.0)}
print(f"spectrograms {time.time() - t0:.0f} s", flush=True)
labels = np.array([e["label"] for e in ents])
digits = np.array([l.isdigit() for l in labels])

def feats(s, cmn):
    if cmn:
        s = s - s.mean(0, keepdims=True)
    return deltas(s, 2, 2) if PAPER else s
def windows(spec_list, white, cmn):
    A, utt = [], []
    for k, s in enumerate(spec_list):
        if PAPER:
            a = white.transform(feats(s, cmn))
            aw, _ = av_windows(a, None, 25.0, 100.0, 4, 1, False)
        else:
            a = deltas(white.transform(feats(s, cmn)), 1, 2)
            aw, _ = av_windows(a, None, 25.0, 100.0, 4, 1, True)
        A.append(aw); utt.append(np.full(len(aw), k))
    return np.concatenate(A).astype(np.float32), np.concatenate(utt)

def pooled(X, utt, n):
    return np.asarray(pool_slices(X, utt, n, slices=(1, 3)), dtype=np.float32)

for cmn in (False, True):
    train_frames = np.concatenate([feats(s, cmn) for s in S[("train", None)]])
    white = PCAWhitener(100 if PAPER else 40, 1e-5).fit(train_frames)
    Xtr, utr = windows(S[("train", None)], white, cmn)
    Xte, ute = windows(S[("test", None)], white, cmn)
    Xno, uno = windows(S[("test", 0.0)], white, cmn)
    torch.manual_seed(0)
    dbn = DBN([Xtr.shape[1], 192], "gaussian", dict(lr=0.05, k=1, persistent=False, final_momentum=0.9,
              weight_decay=1e-4, sparsity_target=0.05, sparsity_cost=0.1), dict(lr=0.005), "cpu", 0)
    dbn.fit(Xtr, epochs=10, batch_size=64)
    H = {k: np.asarray(dbn.transform(X)) for k, X in (("clean", Xte), ("0dB", Xno), ("train", Xtr))}
    if PAPER:
        print("(paper front end: 161-bin spectrogram + d + dd = 483 dims, PCA-whitened to 100, 10 audio frames per window)")
    name = "with per-utterance mean normalisation" if cmn else "current front end (no mean normalisation)"
    print(f"\n== {name}")
    nd = Xtr.shape[1] // 4 // 2  # per-frame static dims
    for k, X in (("train", Xtr), ("test clean", Xte), ("test 0 dB", Xno)):
        st = X.reshape(-1, 100) if PAPER else X.reshape(len(X), 4, 2, nd)[:, :, 0].reshape(-1, nd)
        print(f"  whitened static dims, {k:10s}: mean |mean| {np.abs(st.mean(0)).mean():.2f}, "
              f"mean sd {st.std(0).mean():.2f}, first PC mean {st[:, 0].mean():+.2f}")
    for k in ("train", "clean", "0dB"):
        h = H[k]
        print(f"  RBM hidden {k:6s}: mean act {h.mean():.3f}, saturated (p<0.01 or >0.99) {((h < .01) | (h > .99)).mean():.2f}, "
              f"units ever active on >50% windows {(h.mean(0) > 0.5).mean():.2f}")
    # how far noisy test codes moved relative to clean codes of the same windows
    d_h = np.abs(H["0dB"] - H["clean"]).mean()
    print(f"  mean |h(0 dB) - h(clean)| per unit {d_h:.3f} (hidden sd over clean windows {H['clean'].std(0).mean():.3f})")
    ytr, yte = labels[tr], labels[te]
    mtr, mte = digits[tr], digits[te]
    g = spk[tr]
    for feat, (A, B, C) in {"raw whitened": (Xtr, Xte, Xno), "audio RBM": (H["train"], H["clean"], H["0dB"])}.items():
        Ptr, Pte, Pno = pooled(A, utr, len(tr)), pooled(B, ute, len(te)), pooled(C, uno, len(te))
        code = {l: i for i, l in enumerate(sorted(set(labels)))}
        y1, y2 = np.array([code[l] for l in ytr]), np.array([code[l] for l in yte])
        r = evaluate_features(Ptr[mtr], y1[mtr], Pte[mte], y2[mte], g[mtr], kind="logreg", backend="sklearn",
                              Cs=(0.01, 0.1, 1.0), n_folds=3)
        acc0 = float(np.mean(r["model"].predict(Pno[mte]) == y2[mte]))
        shift = np.abs(Pno[mte].mean(0) - Pte[mte].mean(0)) / (Ptr[mtr].std(0) + 1e-9)
        print(f"  {feat:13s} pooled utterance features: 0 dB mean shift = {shift.mean():.2f} training s.d. "
              f"(median over dims {np.median(shift):.2f})")
        pred = r["model"].predict(Pno[mte])
        top = np.bincount(pred, minlength=13).max() / len(pred)
        print(f"  {feat:13s} clean-trained: clean {100 * r['accuracy']:.1f} %, 0 dB {100 * acc0:.1f} % "
              f"(share of the most predicted class at 0 dB {100 * top:.0f} %)")
        # diagnostic only (not the paper's protocol): pooled features standardised per test condition
        mu, sd = Pno[mte].mean(0), Pno[mte].std(0) + 1e-6
        Pz = (Pno[mte] - mu) / sd * Pte[mte].std(0) + Pte[mte].mean(0)
        print(f"  {feat:13s} 0 dB after re-standardising the noisy test features to clean test statistics: "
              f"{100 * float(np.mean(r['model'].predict(Pz) == y2[mte])):.1f} %")
print(f"\ntotal {time.time() - t0:.0f} s")
