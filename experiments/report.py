"""``report.md`` and the ablation table, written from a results dict alone.

The results dict is what :func:`experiments.runner.run_experiment` returns (``summary`` holds
``{"mean", "std", "n"}`` per flattened metric key, e.g. ``"fusion/0dB/bimodal_dae.both"`` or
``"mcgurk/predictions/ga/ba/da"``). Accuracies are fractions in the results and percentages in
the report. Beside each of our rows the paper's published number is shown (from
``paper_reference.json`` next to this module) with the dataset it was measured on.

Settings that were not run are left out of the report; nothing here needs a model or the data.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from bimodal.errors import ConfigError, DataError
from bimodal.io import atomic_write_text
from bimodal.noise import ACTIVE_THRESHOLD_DB, FLOOR_MARGIN_DB

from . import registry
from .plots import fusion_grid, make_plots, mcgurk_grid, mean_std

log = logging.getLogger(__name__)

REFERENCE_PATH = Path(__file__).resolve().with_name("paper_reference.json")
DATASET_NAMES = {"cuave": "CUAVE", "avletters": "AVLetters", "grid": "GRID (Cooke et al. 2006)"}
# row order of the tables: the registry's (rows the results have that are not listed come after, as found)
CROSS_MODALITY_ORDER = tuple(registry.FEATURES)
SHARED_ORDER = (*registry.CCA_BASELINES, *(m for m in registry.SHARED_METHODS if m not in registry.CCA_BASELINES))
MATCHING_ORDER = SHARED_ORDER
# the ablation table's columns, when present in the variants' summaries
ABLATION_METRICS = (
    "cross_modality/video/bimodal_dae.video",
    "cross_modality/video/video_dae.video",
    "cross_modality/video/bimodal_dae_noaug.video",
    "fusion/clean/bimodal_dae.both",
    "fusion/0dB/bimodal_dae.both",
    "fusion/0dB/rbm.audio",
    "fusion/0dB/bimodal_dae.both+rbm.audio",
    "shared_representation/audio->video/bimodal_dae",
    "shared_representation/video->audio/bimodal_dae",
    "matching/bimodal_dae/top1",
    "matching/bimodal_dae/top1_all",
    "mcgurk/predictions/ga/ba/da",
)
PLOT_TITLES = {
    "accuracy_vs_snr": "Fusion accuracy vs audio SNR",
    "confusions": "Confusion matrices (summed over runs, row-normalised)",
    "mouth_from_audio": "Mouth frames reconstructed from audio alone",
    "training_curves": "Training curves",
    "mcgurk": "McGurk predictions",
}


SNR_RULE = (f"The SNR is that of the speech-active part of each utterance: 20 ms frames whose energy is within "
            f"{ACTIVE_THRESHOLD_DB:g} dB of the utterance's loudest frame and more than {FLOOR_MARGIN_DB:g} dB above "
            f"its noise floor (the 10th-percentile frame energy); signal and noise powers are taken over those "
            f"frames.")


# --------------------------------------------------------------------------- formatting
def load_reference(path=REFERENCE_PATH) -> dict:
    """The paper's published numbers (``paper_reference.json``)."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError("paper reference file not found", path=path) from None
    except json.JSONDecodeError as e:
        raise DataError(f"not valid JSON: {e}", path=path) from None


def pct(stat, n_sd: float = 1.0) -> str:
    """``"58.7 ± 2.0"`` from a summary entry (fractions → percent): mean ± ``n_sd`` standard
    deviations; ``"—"`` when missing."""
    if stat is None:
        return "—"
    m, s = (stat[0], stat[1]) if isinstance(stat, tuple) else (stat["mean"], stat.get("std", 0.0))
    return f"{100 * m:.1f} ± {100 * n_sd * s:.1f}"


# The report's tables stand beside the paper's numbers, whose ± is 2 standard deviations.
REPORT_SD = 2.0


def pct2(stat) -> str:
    """:func:`pct` with the paper's ± (2 standard deviations)."""
    return pct(stat, REPORT_SD)


def _pct1(x) -> str:
    return "—" if x is None else f"{100 * float(x):.1f}"


def _paper(text) -> str:
    return "—" if text is None else str(text).replace("+-", "±")


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_table(header: list[str], rows: list[list]) -> list[str]:
    """Markdown table lines (cells with ``|`` escaped)."""
    out = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return out + [""]


def _what(row: str) -> str:
    """The registry's description of a row's feature(s) (``a+b``: both), or "" for an unknown name."""
    try:
        return " + ".join(f.description for f in registry.row_features(row))
    except ConfigError:  # results of a newer or older version may hold rows this registry lacks
        return ""


def _found(summary: dict, setting: str, pick: int, keep) -> list[str]:
    """Distinct values of part ``pick`` of the three-part keys ``setting/a/b`` whose parts pass
    ``keep``, in first-seen order: the rows (or methods) a section of the summary holds."""
    found = []
    for k in summary:
        parts = k.split("/")
        if len(parts) == 3 and parts[0] == setting and keep(parts) and parts[pick] not in found:
            found.append(parts[pick])
    return found


def _ordered(found: list[str], order) -> list[str]:
    known = [r for r in order if r in found]
    return known + [r for r in found if r not in known]


def _dataset_of(note: str | None, reference: dict) -> str | None:
    """The dataset a reference section was measured on, when its note names exactly one."""
    names = [d for d in reference.get("datasets", {}) if d in (note or "")]
    return names[0] if len(names) == 1 else None


def _n(summary: dict, keys) -> str:
    ns = sorted({summary[k]["n"] for k in keys if k in summary and "n" in summary[k]})
    return "—" if not ns else "/".join(str(n) for n in ns)


# --------------------------------------------------------------------------- sections
def _header(results: dict) -> list[str]:
    cfg = results.get("config") or {}
    data = cfg.get("data") or {}
    source = data.get("source", "synth")
    lines = [f"# Multimodal deep learning reproduction: `{results.get('experiment', 'experiment')}`", ""]
    if results.get("description"):
        lines += [results["description"], ""]
    if source == "synth":
        lines += ["> **Data caveat.** These numbers come from the embedded **synthetic corpus**: speech synthesised "
                  "with eSpeak NG and mouth video rendered from the phoneme→viseme sequence. It is **NOT CUAVE or "
                  "AVLetters**, so the numbers are **not comparable in absolute terms** to the paper's; compare "
                  "orderings and the claims below, not the values. The paper's numbers are shown beside ours for "
                  "orientation only, with the dataset they come from.", ""]
    else:
        name = DATASET_NAMES.get(source, f"the '{source}' corpus")
        root = data.get("root") or "(default location)"
        lines += [f"> **Data.** These numbers come from **{name}** (`data.source = \"{source}\"`, root `{root}`), "
                  f"under the protocol below, which may differ from the paper's; each paper number is labelled "
                  f"with the dataset it was measured on.", ""]
        if results.get("n_speakers") == 1:
            lines += ["> **One speaker.** The test utterances are unseen recordings of a speaker the models were "
                      "trained on, never an unseen speaker (the paper's CUAVE and AVLetters tests are): expect "
                      "higher accuracies than across speakers.", ""]
    return lines


def _failed_runs(results: dict) -> list[str]:
    failed = results.get("failed_runs") or []
    if not failed:
        return []
    n = len(failed) + len(results.get("runs") or [])
    lines = [f"> **{len(failed)} of {n} (seed, fold) runs failed**; every number below is over the "
             f"{n - len(failed)} that finished. Fix the cause and rerun the same command with `--resume` to run "
             "only the missing ones.", ""]
    lines += md_table(["seed", "fold", "error"], [[f["seed"], f["fold"], f["error"]] for f in failed])
    return lines


def _protocol(results: dict) -> list[str]:
    cfg = results.get("config") or {}
    exp, ev, data = cfg.get("experiment") or {}, cfg.get("eval") or {}, cfg.get("data") or {}
    prov = results.get("provenance") or {}
    runs = results.get("runs") or []
    seeds = exp.get("seeds", prov.get("seed"))
    split = exp.get("split", "kfold")
    folds = "2 (even/odd speakers)" if split == "even_odd" else exp.get("n_folds", "?")
    device = prov.get("device") or "?"
    if prov.get("cuda_device_name"):
        device += f" ({prov['cuda_device_name']})"
    versions = ", ".join(f"{k} {v}" for k, v in (prov.get("versions") or {}).items() if v)
    third = split == "third_test"
    by_recording = split == "recordings" and results.get("n_speakers") == 1
    pt, ft, prep = cfg.get("pretrain") or {}, cfg.get("finetune") or {}, data.get("prep") or {}
    if third:
        split_text = "third test: every speaker's last repetition tests, the others train (one fold per seed)"
        cv_unit = "training repetition"
    elif by_recording:
        split_text = (f"by recording (one speaker): within each label, one recording in {exp.get('n_folds', '?')} "
                      "(every n-th, sorted by id) tests, the others train; the same split for every seed, no "
                      "recording on both sides")
        cv_unit = "group of training recordings"
    else:
        split_text = f"{folds} speaker folds per seed (split `{split}`; no speaker in both train and test)"
        cv_unit = "group of training speakers"
    learn = ("every window of the training recordings (trimmed to their speech), not only the labelled utterances"
             if data.get("learn_from") == "recordings" else "the labelled training utterances")
    if data.get("extra_av"):
        info = [i for i in (runs[0].get("extra_av") if runs else None) or []]
        fitted = "; ".join(f"`{i.get('root')}`: {i.get('n_recordings')} recordings, mouth box scale {i.get('scale')}"
                           for i in info)
        learn += (f", plus the unlabelled audio-visual recordings of {', '.join(f'`{r}`' for r in data['extra_av'])}"
                  f" ({runs[0].get('n_extra_av_windows', '?') if runs else '?'} windows"
                  + (f"; {fitted}" if fitted else "") + ") put into this corpus' front end (data_prep/extra_av.py) "
                  "for every unsupervised stage, never the classifiers; "
                  + (f"whitening fitted on this corpus and on {extra_share(data.get('extra_av_ratio'))} "
                     "(`data.extra_av_whitening`)" if data.get("extra_av_whitening") == "both"
                     else "whitening fitted on this corpus alone"))
    if data.get("mirror_video"):
        learn += (", plus the same utterances' mouth crops mirrored left-right (with their own sound) for every "
                  "unsupervised stage, never the classifiers or the whitening (beyond the paper)")

    def own(m, what):  # a modality's own value, else the shared one
        v = pt.get(f"{m}_sparsity_{what}")
        return pt.get(f"sparsity_{what}", "?") if v is None else v

    sparsity = ", ".join(f"{m} RBM target {own(m, 'target')}, cost {own(m, 'cost')}"
                         for m in ("audio", "video")
                         if pt.get(f"{m}_sparsity_target") is not None or pt.get(f"{m}_sparsity_cost") is not None)
    rows = [
        ["seeds", seeds],
        ["test split", split_text],
        ["feature learning data", learn],
        ["runs summarised (seed × fold)", len(runs)],
        ["utterances / speakers", f"{results.get('n_utterances', '?')} / {results.get('n_speakers', '?')}"],
        ["classification vocabulary", ", ".join(map(str, data.get("labels", []))) or "?"],
        ["classifier", f"{ev.get('classifier', '?')} ({ev.get('backend', '?')} backend), C from "
                       f"{ev.get('Cs', '?')} by CV holding out one "
                       f"{cv_unit} at a time "
                       f"({ev.get('cv_folds', '?')} folds); features centred and scaled "
                       f"{'per feature' if ev.get('standardize') == 'zscore' else 'by one global scale'}"],
        ["pretraining / fine-tuning", f"sparsity target {pt.get('sparsity_target', '?')}, cost "
                                      f"{pt.get('sparsity_cost', '?')}{' (' + sparsity + ')' if sparsity else ''}"
                                      f"{_sparsity_weight(pt)}, "
                                      f"{pt.get('epochs', '?')} epochs; fine-tuning "
                                      f"{ft.get('epochs', '?')} epochs at lr {ft.get('lr', '?')} (the config's values; "
                                      + ("docs/grid.md tells which were chosen by `bimodal tune` on GRID's training "
                                         "sentences" if data.get("source") == "grid" else
                                         "docs/tuning.md tells how the defaults were chosen on AVLetters' training "
                                         "repetitions with `bimodal tune`") + ")"],
        *([["video front end", _video_frontend(prep)]] if prep.get("video_frontend") else []),
        ["temporal slices pooled", ev.get("slices", "?")],
        *([["test SNRs (dB, white noise on audio)", ev.get("snr_db", "?")]]
          if "fusion" in (exp.get("settings") or []) else []),
        ["device", device],
        ["git commit", f"`{prov.get('git_commit')}`"],
        ["run at (UTC)", prov.get("time_utc", "?")],
        ["versions", versions or "?"],
    ]
    return ["## Protocol", "",
            "Every number is the mean ± 2 sample standard deviations (ddof 1; shown as ± 0.0 for a single run) "
            "over the runs, in %, the same spread as the paper's ± (2 sample s.d.); *n* is the number of runs.",
            ""] + md_table(["item", "value"], rows)


def extra_share(ratio) -> str:
    """How much of the extra corpora ``data.extra_av_ratio`` draws, in words."""
    return "every extra recording" if not ratio else f"extra recordings with {ratio:g} x its frames"


def _video_frontend(prep: dict) -> str:
    """What the video rows stand on: the paper's whitened pixels, or a conv autoencoder's codes."""
    deltas = prep.get("deltas")
    with_deltas = {0: "without derivatives", 1: "with their first derivatives",
                   2: "with their first and second derivatives"}.get(deltas, f"deltas {deltas!r}")
    if prep.get("video_frontend") != "conv":
        return f"the paper's: mouth pixels PCA-whitened to {prep.get('video_pca', '?')} dims, {with_deltas}"
    return (f"beyond the paper: a convolutional autoencoder of single mouth frames (bimodal/conv_frontend.py, "
            f"{prep.get('conv_channels', '?')} channels, {prep.get('conv_epochs', '?')} epochs) trained without labels "
            f"on the learning crops; its {prep.get('conv_code_dim', '?')}-dim codes, PCA-whitened to "
            f"{prep.get('video_pca', '?')}, {with_deltas}, replace the whitened pixels, so every video row "
            f"(`raw.video` = the whitened codes, the RBM and autoencoders on top) stands on them")


def _sparsity_weight(pt: dict) -> str:
    """How much a sparsity cost weighs in Lee et al.'s separate-step form, given the momentum schedule."""
    from bimodal.rbm import DEFAULT_MOMENTUM, DEFAULT_MOMENTUM_EPOCHS, effective_sparsity_cost

    final = pt.get("final_momentum")
    if not pt.get("sparsity_target") or not isinstance(final, (int, float)) or not 0 <= final < 1:
        return ""
    if pt.get("sparsity_update") == "separate":
        return " (a separate step on the hidden biases after each CD update, Lee et al.'s form)"
    return (f" (added to the hidden biases' velocity: in Lee et al.'s separate-step form a cost weighs "
            f"{effective_sparsity_cost(1.0, DEFAULT_MOMENTUM):g}x itself for the first {DEFAULT_MOMENTUM_EPOCHS} "
            f"epochs, {effective_sparsity_cost(1.0, final):g}x after)")


def _cross_modality(summary: dict, ref: dict) -> list[str]:
    lines = []
    for mod in ("video", "audio"):
        prefix = f"cross_modality/{mod}/"
        found = _found(summary, "cross_modality", 2, lambda parts: parts[1] == mod)
        if not found:
            continue
        section = ref.get(f"cross_modality_{mod}") or {}
        paper_rows = section.get("rows", {})
        datasets = [d for d in ref.get("datasets", {}) if any(d in r for r in paper_rows.values())]
        rows = []
        for row in _ordered(found, CROSS_MODALITY_ORDER):
            rows.append([f"`{row}`", _what(row), pct2(mean_std(summary, prefix + row)), _n(summary, [prefix + row])]
                        + [_paper(paper_rows.get(row, {}).get(d)) for d in datasets])
        lines += [f"### {mod.capitalize()} only (classifier trained and tested on {mod} features)", ""]
        lines += md_table(["feature", "what it is", "ours (%)", "n"] + [f"paper, {d} (%)" for d in datasets], rows)
        if datasets:
            lines += [f"Paper: {section.get('note', '')}.", ""]
        else:
            lines += ["The paper reference file has no numbers for this table.", ""]
    return (["## Cross-modality learning", ""] + lines) if lines else []


def _fusion(summary: dict, ref: dict) -> list[str]:
    rows_found, conds = fusion_grid(summary)
    if not rows_found:
        return []
    section = ref.get("fusion") or {}
    paper_rows = section.get("rows", {})
    dataset = _dataset_of(section.get("note"), ref)
    paper_conds = [c for c in ("clean", "0dB") if any(c in r for r in paper_rows.values())]
    order = list(paper_rows) + [r for r in rows_found if r not in paper_rows]
    rows = []
    for row in [r for r in order if r in rows_found]:
        keys = [f"fusion/{c}/{row}" for c in conds]
        rows.append([f"`{row}`", _what(row)] + [pct2(mean_std(summary, k)) for k in keys] + [_n(summary, keys)]
                    + [_paper(paper_rows.get(row, {}).get(c)) for c in paper_conds])
    label = f" ({dataset})" if dataset else ""
    header = ["features", "what they are"] + [("clean" if c == "clean" else c.replace("dB", " dB")) + " (%)"
                                              for c in conds] + ["n"] \
        + [f"paper {c.replace('dB', ' dB')}{label} (%)" for c in paper_conds]
    return (["## Multimodal fusion", "",
             "Classifier trained on clean features of the training split, tested on the test split with clean "
             "audio and with white noise added to the audio at each SNR (video unchanged). " + SNR_RULE, ""]
            + md_table(header, rows)
            + ([f"Paper: {section.get('note', '')}.", ""] if paper_conds else [])
            + _feature_shift(summary, [c for c in conds if c != "clean"]))


def _feature_shift(summary: dict, conds: list[str]) -> list[str]:
    """The table of ``fusion/shift/<snr>/<feature>`` (experiments.settings.feature_shift), if present."""
    feats = []
    for key in summary:
        parts = key.split("/", 3)
        if len(parts) == 4 and parts[:2] == ["fusion", "shift"] and parts[3] not in feats:
            feats.append(parts[3])
    if not feats:
        return []
    rows = [[f"`{f}`"] + [f"{summary[k]['mean']:.2f}" if k in summary else "—"
                          for k in (f"fusion/shift/{c}/{f}" for c in conds)] for f in feats]
    return (["### How far audio noise moves the features", "",
             "Mean distance between an utterance's noisy and clean pooled features, divided by the mean distance "
             "of clean utterances from their mean (0: unchanged; 1: noise moves a feature as far as utterances "
             "lie apart); test utterances, mean over runs.", ""]
            + md_table(["feature"] + [c.replace("dB", " dB") for c in conds], rows))


def _shared(summary: dict, ref: dict) -> list[str]:
    dirs = ("audio->video", "video->audio")
    found = _found(summary, "shared_representation", 2, lambda parts: parts[1] in dirs)
    if not found:
        return []
    section = ref.get("shared_representation") or {}
    paper_rows = section.get("rows", {})
    label = f", {_dataset_of(section.get('note'), ref)}" if _dataset_of(section.get("note"), ref) else ""
    rows = []
    for method in _ordered(found, SHARED_ORDER):
        keys = [f"shared_representation/{d}/{method}" for d in dirs]
        row = [f"`{method}`"]
        for d, k in zip(dirs, keys):
            row += [pct2(mean_std(summary, k)), _paper(paper_rows.get(d, {}).get(method))]
        rows.append(row + [_n(summary, keys)])
    chance = mean_std(summary, "shared_representation/chance")
    if chance is not None:
        rows.append(["chance", _pct1(chance[0]), "", _pct1(chance[0]), "", ""])
    header = ["method"]
    for d in dirs:
        header += [f"train {d.split('->')[0]}, test {d.split('->')[1]}: ours (%)", f"paper{label} (%)"]
    return (["## Shared representation learning (\"hearing to see\")", "",
             "Classifier trained on the shared codes of one modality (the other fed as zeros / the CCA "
             "projection of one view), tested on the other modality's codes. The CCA rows are regularised CCA "
             "(both covariances shrunk toward the identity, the shrinkage chosen by speaker-grouped CV on the "
             "training speakers) fitted on paired training windows (raw windows, or the first RBMs' hidden "
             "activations of them for RBM-CCA); the projected windows are pooled over slices like every "
             "other feature.", ""]
            + md_table(header + ["n"], rows)
            + ([f"Paper: {section.get('note', '')}.", ""] if paper_rows else []))


def _mcgurk(summary: dict, ref: dict) -> list[str]:
    stimuli, preds = mcgurk_grid(summary)
    cong = mean_std(summary, "mcgurk/congruent_accuracy")
    if not stimuli and cong is None:
        return []
    section = ref.get("mcgurk") or {}
    paper_rows = section.get("rows", {})
    paper_preds = [p for p in preds if any(p in r for r in paper_rows.values())]
    rows = []
    for stim in stimuli:
        keys = [f"mcgurk/predictions/{stim}/{p}" for p in preds]
        rows.append([f"{stim.split('/')[0]} / {stim.split('/')[-1]}"] + [pct2(mean_std(summary, k)) for k in keys]
                    + [_n(summary, keys)] + [_paper(paper_rows.get(stim, {}).get(p)) for p in paper_preds])
    header = ["visual / audio"] + [f"predicted {p} (%)" for p in preds] + ["n"] \
        + [f"paper: {p} (%)" for p in paper_preds]
    lines = ["## McGurk effect", "",
             "Share of the bimodal model's predictions per stimulus. Classifier trained on congruent /ga/ /ba/ "
             "/da/ of training speakers; `ga / ba` = each test speaker's /ga/ video dubbed with the /ba/ audio, "
             "the video shifted so its consonant onset meets the audio's (within half a frame; onsets from the "
             "corpus manifest's phoneme timings, else the energy onset of each utterance's own audio).", ""]
    if stimuli:
        lines += md_table(header, rows)
    if cong is not None:
        lines += [f"Congruent accuracy (ga, ba, da): **{pct2(cong)} %** (n = {cong[2]}).", ""]
    if paper_preds:
        lines += [f"Paper: {section.get('note', '')} (dataset not stated in paper_reference.json).", ""]
    return lines


def _matching(summary: dict) -> list[str]:
    metrics = {"top1": "top-1 among all (%)", "top1_all": "top-1 among all (%)",
               "top1_same_word": "top-1 among same word (%)", "mrr": "MRR (%)"}
    found = _found(summary, "matching", 1, lambda parts: parts[2] in metrics)
    if not found:
        return []
    cols = [m for m in metrics if any(f"matching/{meth}/{m}" in summary for meth in found)]
    rows = []
    for meth in _ordered(found, MATCHING_ORDER):
        keys = [f"matching/{meth}/{m}" for m in cols]
        rows.append([f"`{meth}`"] + [pct2(mean_std(summary, k)) for k in keys] + [_n(summary, keys)])
    chance = _matching_chance(summary, found, cols)
    if chance:
        rows.append(["chance"] + chance + [""])
    return (["## Cross-modal matching", "",
             "Audio-only codes of each test utterance as queries, video-only codes of all test utterances as "
             "candidates; the partner must rank first (ties count against it).", ""]
            + md_table(["method"] + [metrics[m] for m in cols] + ["n"], rows))


def _matching_chance(summary: dict, methods: list[str], cols: list[str]) -> list[str] | None:
    def first(suffix):
        for k in [f"matching/{suffix}"] + [f"matching/{m}/{suffix}" for m in methods]:
            if k in summary:
                return summary[k]["mean"]
        return None

    top1, same = first("chance_top1"), first("chance_top1_same_word")
    n = first("n")
    # a random ranking of U candidates puts the partner at each rank equally often: E[1/rank] = H_U / U
    mrr = (sum(1.0 / k for k in range(1, int(round(n)) + 1)) / round(n)) if n and n >= 1 else None
    values = {"top1": top1, "top1_all": top1, "top1_same_word": same, "mrr": mrr}
    if all(values[c] is None for c in cols):
        return None
    return [_pct1(values[c]) for c in cols]


def _verdict(c: dict) -> str:
    if c.get("verdict"):
        return c["verdict"]
    return {True: "HELD", False: "NOT HELD", None: "NOT RUN"}[c.get("held")]  # results from older versions


def _test_text(t: dict | None) -> str:
    """One line: the paired test behind a verdict (differences in percentage points)."""
    if not t:
        return "not run"
    if not t.get("n"):
        return "no per-run values (n = 0)"
    parts = [f"n = {t['n']} paired runs", f"mean difference = {100 * t['mean']:+.1f} points"]
    if t.get("se") is not None:
        lo, hi = t["ci"]
        parts += [f"SE = {100 * t['se']:.1f}", f"95 % CI [{100 * lo:+.1f}, {100 * hi:+.1f}]"]
    parts.append(f"sign test p = {t['p_sign']:.3g} ({t['n_positive']} up, {t['n_negative']} down)")
    return ", ".join(parts)


def _claims(results: dict) -> list[str]:
    claims = results.get("claims")
    if not claims:
        return []
    lines = ["## Claims", "",
             "Each claim is a paired comparison over the same seed × fold runs: the per-run difference "
             "(claim side minus the side it should beat) is tested. **HELD** when the 95 % confidence "
             "interval of the mean difference (Student t, mean ± t·SE) lies above 0, **NOT HELD** when it lies "
             "at or below 0, **INCONCLUSIVE** when it contains 0 (the runs overlap); the exact two-sided sign "
             "test is shown beside it. NOT RUN: the settings a claim needs were not run. Values are means "
             "over runs.", ""]
    for c in claims:
        values = ", ".join(f"{k} = {_pct1(v)} %" if v is not None else f"{k} = not run"
                           for k, v in (c.get("values") or {}).items())
        lines += [f"- **{_verdict(c)}** — {c.get('claim')}", f"  - rule: {c.get('rule')}",
                  f"  - values: {values}"]
        if "test" in c:
            lines.append(f"  - test: {_test_text(c.get('test'))}")
    return lines + [""]


def _timings(results: dict) -> list[str]:
    t = results.get("timings") or {}
    if not t:
        return []
    total = t.get("total")
    rows = [[name, f"{sec:.1f}", f"{100 * sec / total:.0f} %" if total and name != "total" else ""]
            for name, sec in t.items()]
    return (["## Timings", "", "Wall-clock seconds per stage, summed over seeds and folds; "
             "`total` is the whole run, data loading included.", ""]
            + md_table(["stage", "seconds", "share of total"], rows))


def _plots(plots: dict, out_dir: Path) -> list[str]:
    if not plots:
        return []
    lines = ["## Figures", ""]
    for name, path in plots.items():
        rel = Path(path).resolve().relative_to(out_dir.resolve()).as_posix()
        lines += [f"### {PLOT_TITLES.get(name, name)}", "", f"![{PLOT_TITLES.get(name, name)}]({rel})", ""]
    return lines


#: the paper's corpus whose numbers stand beside a corpus' own (a digits task beside CUAVE's)
PAPER_CORPUS = {"cuave": "CUAVE", "grid": "CUAVE", "avletters": "AVLetters"}


def _beside(reference: dict, source: str) -> dict:
    """The reference with only the paper corpus that matches ``source``'s task, where one does."""
    keep = PAPER_CORPUS.get(source)
    if keep is None or keep not in reference.get("datasets", {}):
        return reference
    return {**reference, "datasets": {keep: reference["datasets"][keep]}}


# --------------------------------------------------------------------------- entry points
def render_report(results: dict, plots: dict | None = None, out_dir=".", reference: dict | None = None) -> str:
    """The text of ``report.md`` (``plots``: name → PNG path inside ``out_dir``, linked relatively)."""
    if "summary" not in results:
        raise DataError("results have no 'summary' (expected experiments.runner.summarise_runs output)",
                        field="summary")
    reference = load_reference() if reference is None else reference
    reference = _beside(reference, ((results.get("config") or {}).get("data") or {}).get("source", "synth"))
    s = results["summary"]
    lines = _header(results) + _failed_runs(results) + _protocol(results)
    lines += _cross_modality(s, reference) + _fusion(s, reference) + _shared(s, reference)
    lines += _mcgurk(s, reference) + _matching(s) + _claims(results) + _timings(results)
    lines += _plots(plots or {}, Path(out_dir))
    lines += [f"Paper reference: {reference.get('source', '')}", ""]
    return "\n".join(lines)


def write_report(results: dict, out_dir: Path, reference: dict | None = None) -> Path:
    """Draw the figures into ``out_dir/plots/`` and write ``out_dir/report.md`` (both atomically).

    Returns the path of ``report.md``.
    """
    out_dir = Path(out_dir)
    reference = load_reference() if reference is None else reference
    plots = make_plots(results, out_dir / "plots", reference=reference)
    path = atomic_write_text(out_dir / "report.md", render_report(results, plots, out_dir, reference))
    log.info("wrote %s (%d figures)", path, len(plots))
    return path


def _setting_text(settings: dict) -> str:
    if not settings:
        return "(base config)"
    return "; ".join(f"`{k}` = {json.dumps(v)}" for k, v in settings.items())


def ablation_table(ablation: dict) -> str:
    """Markdown: one row per variant with the settings it changed, key metrics in % and wall time."""
    variants = ablation.get("variants")
    if not isinstance(variants, dict) or not variants:
        raise DataError("ablation has no variants (expected {'variants': {name: {'set', 'summary', 'timings'}}})",
                        field="variants")
    metrics = [m for m in ABLATION_METRICS if any(m in (v.get("summary") or {}) for v in variants.values())]
    rows = []
    for name, v in variants.items():
        s = v.get("summary") or {}
        total = (v.get("timings") or {}).get("total")
        ns = sorted({s[m]["n"] for m in metrics if m in s})
        rows.append([f"**{name}**", _setting_text(v.get("set") or {})] + [pct(mean_std(s, m)) for m in metrics]
                    + ["/".join(map(str, ns)) or "—", "—" if total is None else f"{total:.0f}"])
    lines = [f"# Ablation: `{ablation.get('experiment', '')}`", "",
             "Mean ± 1 sample s.d. (ddof 1) over runs, in %. Each variant is the base config with the listed dotted "
             "settings changed.",
             ""]
    lines += md_table(["variant", "changed settings"] + [f"`{m}`" for m in metrics] + ["n", "wall time (s)"], rows)
    failed = [(name, f) for name, v in variants.items() for f in v.get("failed_runs") or []]
    if failed:
        lines += ["", f"**{len(failed)} (seed, fold) runs failed** (their variants' numbers are over the runs that "
                      "finished): " + "; ".join(f"{name} seed {f['seed']} fold {f['fold']} ({f['error']})"
                                                 for name, f in failed) + "."]
    if (ablation.get("execution") or {}).get("backend") == "ray":
        lines += ["", "The runs of every variant ran together as Ray tasks: each variant's wall time is that of the "
                      "whole ablation."]
    no_pretraining = [name for name, v in variants.items() if (v.get("set") or {}).get("pretrain.enabled") is False]
    if no_pretraining:
        lines += ["", f"{', '.join(f'**{n}**' for n in no_pretraining)}: `pretrain.enabled = false` trains no RBM, so "
                      "its `rbm.*` and `dbn` rows are the features of the randomly initialised network and its "
                      "autoencoders are fine-tuned from random weights."]
    return "\n".join(lines)


def write_ablation_table(ablation: dict, path: Path) -> Path:
    """Write :func:`ablation_table` to ``path`` atomically; returns ``path``."""
    return atomic_write_text(Path(path), ablation_table(ablation))
