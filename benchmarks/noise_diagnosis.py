"""Why do audio features fall under white noise? One split of a config, the audio path alone.

``python -m benchmarks.noise_diagnosis CONFIG [--set section.key=value ...] [--out DIR] [--device cpu]``

For one (seed, fold) of the config (its first seed and fold), each variant below changes one thing of
the audio path, refits what that thing feeds (whitening, the audio RBM) on the training split only,
and measures on the test split, clean and at every SNR of ``eval.snr_db`` (speech-active white
noise, as the fusion setting adds it):

* accuracy of ``raw.audio`` (whitened windows) and ``rbm.audio`` (the audio RBM) features, pooled
  over S = 1, 3 slices, linear classifier trained on clean features with C chosen by the
  experiment's grouped CV on the training split;
* the shift of the pooled features (:func:`experiments.settings.feature_shift`: how far noise moves
  an utterance's features, relative to how far clean utterances lie apart);
* the RBM's mean hidden activation, clean and at the lowest SNR.

Variants: the config as it is; the audio RBM without sparsity, and with sparsity cost 1 and 10 (the
value every RBM took before the audio RBM had its own, chosen on AVLetters' video); no
per-utterance mean normalisation; a regularised whitening (``pca_eps`` 1: directions whose clean
variance is below ~1 are not scaled up); and, for the config itself, the classifier at each fixed C
of ``eval.Cs`` (is it the choice of C?). Writes ``DIR/noise_diagnosis.{json,md}``.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from bimodal.io import atomic_write_text
from experiments import pipeline, registry
from experiments.config import load_config, with_overrides
from experiments.settings import FoldContext, feature_shift

log = logging.getLogger(__name__)

VARIANTS = {
    "as configured": {},
    "audio RBM without sparsity": {"pretrain.audio_sparsity_cost": 0.0},
    "audio RBM sparsity cost 1": {"pretrain.audio_sparsity_cost": 1.0},
    "audio RBM sparsity cost 10": {"pretrain.audio_sparsity_cost": 10.0},
    "no mean normalisation": {"data.prep": {"audio_mean_norm": False}},
    "whitening eps 1": {"data.prep": {"pca_eps": 1.0}},
}
FEATURES = ("raw.audio", "rbm.audio")


def variant_config(cfg, overrides: dict):
    """``cfg`` with a variant's overrides (``data.prep`` merged into the config's own)."""
    flat = {k: v for k, v in overrides.items() if k != "data.prep"}
    if "data.prep" in overrides:
        flat["data.prep"] = {**cfg.data.prep, **overrides["data.prep"]}
    return with_overrides(cfg, flat, source="noise diagnosis variant") if flat else cfg


def measure(cfg, utts, train_idx, test_idx, seed, device, frame_cache, fixed_C: bool = False) -> dict:
    """Accuracies, feature shifts and hidden activations of one variant (see the module docstring)."""
    fold = pipeline.prepare_fold(cfg, utts, train_idx, test_idx, seed, device, progress=False,
                                 frame_cache=frame_cache)
    learning = fold.learning
    Xa = learning.audio
    dbn = pipeline.build_bimodal_dbn(cfg, Xa.shape[1], learning.video.shape[1], seed, device)
    rbm = registry.first_rbm(dbn, "audio")
    rbm.fit(Xa, epochs=cfg.pretrain.epochs, batch_size=cfg.pretrain.batch_size, progress=False)
    ctx = FoldContext(cfg, fold, {"bimodal_dbn": dbn}, seed, device, progress=False)
    snrs = [float(s) for s in cfg.eval.snr_db if float(s) in fold.test_noisy]
    conds = [("clean", None)] + [(f"{s:g}dB", s) for s in snrs]
    mtr, mte = ctx.task_mask("train"), ctx.task_mask("test")
    ytr, yte, groups = ctx.labels("train")[mtr], ctx.labels("test")[mte], ctx.cv_groups("train")[mtr]
    out = {"accuracy": {}, "shift": {}, "C": {}}
    for name in FEATURES:
        Xtr = ctx.features(name, "train")[mtr]
        tests = {label: ctx.features(name, "test", snr)[mte] for label, snr in conds}
        r = ctx.classify(Xtr, ytr, groups, tests["clean"], yte)
        out["C"][name] = r["C"]
        out["accuracy"][name] = {label: float(np.mean(r["predict"](X) == yte)) for label, X in tests.items()}
        out["shift"][name] = {label: feature_shift(tests["clean"], X) for label, X in tests.items() if label != "clean"}
        if fixed_C:
            out.setdefault("accuracy_at_C", {})[name] = {}
            for C in cfg.eval.Cs:
                e = with_overrides(cfg, {"eval.Cs": [C]}, source="fixed C")
                fixed = FoldContext(e, fold, ctx.models, seed, device, progress=False, _cache=ctx._cache)
                rc = fixed.classify(Xtr, ytr, groups, tests["clean"], yte)
                out["accuracy_at_C"][name][f"{C:g}"] = {label: float(np.mean(rc["predict"](X) == yte))
                                                        for label, X in tests.items()}
    with torch.no_grad():
        lowest = fold.test_noisy[min(snrs)] if snrs else fold.test
        out["mean_hidden"] = {"clean": float(rbm.transform(fold.test.audio).mean()),
                              f"{min(snrs):g}dB" if snrs else "clean": float(rbm.transform(lowest.audio).mean())}
    return out


def to_markdown(result: dict) -> str:
    conds = ["clean"] + [c for c in next(iter(result["variants"].values()))["accuracy"]["raw.audio"] if c != "clean"]
    lines = [f"# Audio features under white noise: `{result['config']}`", "",
             f"Seed {result['seed']}, fold 0: {result['n_train']} training / {result['n_test']} test utterances "
             f"(chance {100 / result['n_labels']:.0f} %). Accuracy in %, raw / RBM; shift of the pooled features "
             "(0: unchanged, 1: as far as utterances lie apart) in brackets.", "",
             "| variant | " + " | ".join(c.replace("dB", " dB") for c in conds) + " | RBM mean hidden clean / noisiest |",
             "|---|" + "---|" * (len(conds) + 1)]
    for name, v in result["variants"].items():
        cells = []
        for c in conds:
            acc = "/".join(f"{100 * v['accuracy'][f][c]:.1f}" for f in FEATURES)
            shift = "" if c == "clean" else " (" + "/".join(f"{v['shift'][f][c]:.2f}" for f in FEATURES) + ")"
            cells.append(acc + shift)
        hidden = " / ".join(f"{x:.3f}" for x in v["mean_hidden"].values())
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {hidden} |")
    fixed = result["variants"].get("as configured", {}).get("accuracy_at_C")
    if fixed:
        lines += ["", "The configured variant with C fixed (no CV), accuracy raw / RBM in %:", "",
                  "| C | " + " | ".join(c.replace("dB", " dB") for c in conds) + " |", "|---|" + "---|" * len(conds)]
        for C in fixed["raw.audio"]:
            lines.append(f"| {C} | " + " | ".join("/".join(f"{100 * fixed[f][C][c]:.1f}" for f in FEATURES)
                                                 for c in conds) + " |")
    lines += ["", f"C chosen by CV (raw / RBM) per variant: "
              + "; ".join(f"{n}: {v['C']['raw.audio']:g} / {v['C']['rbm.audio']:g}" for n, v in result["variants"].items()),
              "", f"Wall time {result['seconds']:.0f} s.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    ap.add_argument("--out", default="noise_diagnosis")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names of VARIANTS")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    path = Path(args.config)
    if not path.is_file():
        path = Path(__file__).resolve().parent.parent / "experiments" / "configs" / f"{args.config}.toml"
    cfg = load_config(path, args.set)
    t0 = time.perf_counter()
    utts = pipeline.load_utterances(cfg, progress=False)
    seed = cfg.experiment.seeds[0]
    train_idx, test_idx = pipeline.speaker_splits(utts, cfg, seed)[0]
    cache_path = pipeline.frame_cache_path(cfg, utts)
    frame_cache = pipeline.load_frame_cache(cache_path)
    variants = {}
    for name in [v.strip() for v in args.variants.split(",") if v.strip()]:
        log.info("variant: %s", name)
        variants[name] = measure(variant_config(cfg, VARIANTS[name]), utts, train_idx, test_idx, seed, args.device,
                                 frame_cache, fixed_C=name == "as configured")
    labels = {u.label for u in utts if u.label in cfg.data.labels}
    result = {"config": cfg.experiment.name, "overrides": args.set, "seed": seed, "n_train": len(train_idx),
              "n_test": len(test_idx), "n_labels": len(labels), "variants": variants,
              "seconds": time.perf_counter() - t0}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "noise_diagnosis.json", json.dumps(result, indent=1))
    md = to_markdown(result)
    atomic_write_text(out / "noise_diagnosis.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
