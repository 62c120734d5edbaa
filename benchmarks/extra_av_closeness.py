"""How close extra audio-visual data is to the target corpus, in the target's own front end.

    python -m benchmarks.extra_av_closeness paper_avletters_extra \\
        --set data.root='"../shared/data/avletters"' --out docs/extra_av

Prepares the first (seed, fold) of the config exactly as the experiment does (``data.extra_av``
adapted to the training crops, :mod:`data_prep.extra_av`) and writes ``closeness.md`` (a table) and
``closeness.png`` (mean crops, a few crops of each corpus, and per whitened component the variance of
each corpus) under ``--out``:

* video: RMS distance of the standardised mean crops for every candidate box scale and the chosen
  one; per whitened PCA component (fitted on the target alone), the variance of the target (1 by
  construction) and of the extra crops; the fraction of each corpus' pixel variance the target's
  components keep;
* audio: per coefficient, the standard deviation after per-utterance mean normalisation of the
  target's and the extra corpus' features, and the variance of each whitened audio component.

Everything here is computed on training data; no label is read.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from bimodal.io import atomic_write_text
from data_prep.extra_av import closeness, standardised_mean
from experiments import pipeline
from bimodal.cli import _config_path
from experiments.config import load_config


def measure(cfg, device="cpu") -> dict:
    utts = pipeline.load_utterances(cfg, progress=False)
    tr, te = pipeline.speaker_splits(utts, cfg, cfg.experiment.seeds[0])[0]
    fold = pipeline.prepare_fold(cfg, utts, tr, te, cfg.experiment.seeds[0], device, progress=True)
    prep = fold.prep
    fit_utts = fold.train_utts
    fit_frames = [prep.frames(u) for u in fit_utts]
    extra_utts, info = pipeline.extra_av_utterances(cfg, prep, fit_utts, fit_frames, cfg.data.extra_av[0],
                                                    progress=False)
    target_frames = np.concatenate([prep.frames(u)[1] for u in fit_utts])
    extra_frames = np.concatenate([u.video.reshape(len(u.video), -1) for u in extra_utts]).astype(np.float32) / 255.0
    video = closeness(target_frames, extra_frames, prep.video_whitener)

    def audio_inputs(us):
        return np.concatenate([prep.audio_input(prep.frames(u)[0], u) for u in us])

    prep_cache, prep.frame_cache = prep.frame_cache, None
    try:
        a_extra = audio_inputs(extra_utts)
    finally:
        prep.frame_cache = prep_cache
    a_target = audio_inputs(fit_utts)
    wa_t, wa_e = prep.audio_whitener.transform(a_target), prep.audio_whitener.transform(a_extra)
    # the same extra audio before its per-coefficient scaling (a linear map of each input dimension)
    scale = np.asarray(info.audio_scale) if info.audio_scale is not None else None
    unscaled = a_extra / scale if scale is not None and scale.shape == a_extra.shape[1:] else None
    return {"audio_std_extra_unscaled": None if unscaled is None else unscaled.std(0),
            "audio_var_extra_unscaled": None if unscaled is None else np.asarray(prep.audio_whitener.transform(unscaled)).var(0),"info": info, "video": video, "target_frames": target_frames, "extra_frames": extra_frames,
            "audio_std_target": a_target.std(0), "audio_std_extra": a_extra.std(0),
            "audio_var_target": np.asarray(wa_t).var(0), "audio_var_extra": np.asarray(wa_e).var(0),
            "n_target_windows": len(fold.train.audio), "n_extra_windows": len(fold.extra_av.audio),
            "roi": prep.cfg.roi_size}


def report(m: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    info, v = m["info"], m["video"]
    H, W = m["roi"]
    fig, ax = plt.subplots(2, 4, figsize=(14, 6))
    for j, (name, F) in enumerate((("target", m["target_frames"]), ("extra", m["extra_frames"]))):
        ax[j, 0].imshow(standardised_mean(F).reshape(H, W), cmap="gray")
        ax[j, 0].set_title(f"{name}: standardised mean crop")
        idx = np.linspace(0, len(F) - 1, 3).astype(int)
        ax[j, 1].imshow(np.concatenate([F[i].reshape(H, W) for i in idx], 1), cmap="gray", vmin=0, vmax=1)
        ax[j, 1].set_title(f"{name}: three crops")
    for a in ax[:, :2].ravel():
        a.axis("off")
    k = np.arange(1, len(v["target_component_var"]) + 1)
    ax[0, 2].semilogy(k, v["target_component_var"], "o-", label="target")
    ax[0, 2].semilogy(k, v["extra_component_var"], "s-", label="extra")
    ax[0, 2].set(title="video: variance per whitened component", xlabel="component")
    ax[0, 2].legend()
    ka = np.arange(1, len(m["audio_var_target"]) + 1)
    ax[1, 2].semilogy(ka, m["audio_var_target"], "o-", label="target")
    ax[1, 2].semilogy(ka, m["audio_var_extra"], "s-", label="extra")
    ax[1, 2].set(title="audio: variance per whitened component", xlabel="component")
    ax[1, 2].legend()
    scales = sorted(info.scale_distances)
    ax[0, 3].plot(scales, [info.scale_distances[s] for s in scales], "o-")
    ax[0, 3].set(title="mean-crop distance vs box scale", xlabel="scale", ylabel="RMS")
    ci = np.arange(1, len(m["audio_std_target"]) + 1)
    ax[1, 3].bar(ci - 0.2, m["audio_std_target"], 0.4, label="target")
    ax[1, 3].bar(ci + 0.2, m["audio_std_extra"], 0.4, label="extra")
    ax[1, 3].set(title="audio: s.d. per coefficient (mean-normalised)", xlabel="coefficient")
    ax[1, 3].legend()
    fig.tight_layout()
    fig.savefig(out / "closeness.png", dpi=80)
    plt.close(fig)

    tv, ev = np.asarray(v["target_component_var"]), np.asarray(v["extra_component_var"])
    ratio = m["audio_std_extra"] / np.maximum(m["audio_std_target"], 1e-9)
    unscaled = []
    if m["audio_std_extra_unscaled"] is not None:
        r0, v0 = m["audio_std_extra_unscaled"] / np.maximum(m["audio_std_target"], 1e-9), m["audio_var_extra_unscaled"]
        unscaled = [f"| audio coefficients before the per-coefficient scaling: s.d. ratio extra / target, median "
                    f"(min–max) | {np.median(r0):.2f} ({r0.min():.2f}–{r0.max():.2f}) |",
                    f"| audio whitened components before the scaling: extra variance median (min–max) | "
                    f"{np.median(v0):.2f} ({v0.min():.2f}–{v0.max():.2f}) |"]
    lines = ["# Extra audio-visual data in the target's front end", "",
             f"{info.n_recordings} extra recordings, {m['n_extra_windows']} windows beside the target's "
             f"{m['n_target_windows']} training windows.", "",
             "| measure | value |", "|---|---|",
             "| mouth box scale chosen (RMS distance of standardised mean crops per scale) | "
             f"{info.scale} ({', '.join(f'{s}: {d:.3f}' for s, d in sorted(info.scale_distances.items()))}) |",
             f"| target intensity (mean per-image mean / s.d., 0..255) the crops were mapped to | "
             f"{info.target_mean:.1f} / {info.target_std:.1f} |",
             f"| standardised mean crop, RMS distance target vs extra (after adaptation) | {v['mean_image_rms']:.3f} |",
             f"| pixel variance kept by the target's {len(tv)} PCA components: target / extra | "
             f"{v['target_variance_kept']:.3f} / {v['extra_variance_kept']:.3f} |",
             f"| video whitened components, variance: target median / extra median (min–max) | "
             f"{np.median(tv):.2f} / {np.median(ev):.2f} ({ev.min():.2f}–{ev.max():.2f}) |",
             f"| audio coefficients, s.d. ratio extra / target: median (min–max) | "
             f"{np.median(ratio):.2f} ({ratio.min():.2f}–{ratio.max():.2f}) |",
             f"| audio whitened components, variance: target median / extra median (min–max) | "
             f"{np.median(m['audio_var_target']):.2f} / {np.median(m['audio_var_extra']):.2f} "
             f"({m['audio_var_extra'].min():.2f}–{m['audio_var_extra'].max():.2f}) |",
             *unscaled, "", "![closeness](closeness.png)", ""]
    atomic_write_text(out / "closeness.md", "\n".join(lines))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    cfg = load_config(_config_path(args.config), args.overrides)
    if not cfg.data.extra_av:
        raise SystemExit("the config names no data.extra_av corpus")
    m = measure(cfg, args.device)
    report(m, Path(args.out))
    print((Path(args.out) / "closeness.md").read_text())


if __name__ == "__main__":
    main()
