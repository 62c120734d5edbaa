"""The paper's qualitative claims, checked by a paired comparison over the same seed × fold runs.

Every claim compares two quantities that each run (one seed and speaker fold) measured, e.g. the
bimodal autoencoder and the audio RBM at 0 dB on the same test speakers. The per-run differences
``d_1..d_n`` (claim side minus the side it should beat) are tested, not the difference of the means:

* ``mean`` ± ``se`` (``se = sd(d, ddof=1) / sqrt(n)``) and the two-sided 95 % confidence interval
  ``mean ± t_{0.975, n-1} · se`` (Student t);
* the exact two-sided sign test over the non-zero differences (``p_sign``).

Verdict: **HELD** when the interval lies above 0, **NOT HELD** when it lies at or below 0, else
**INCONCLUSIVE** (the runs overlap: the spread is too large to tell); **NOT RUN** when a setting the
claim needs was not run. Runs of one seed share training speakers across folds and runs of one
fold share speakers across seeds, so the runs are not fully independent: the interval is a
guide, not an exact test.
"""
from __future__ import annotations

import math

import numpy as np

HELD, NOT_HELD, INCONCLUSIVE, NOT_RUN = "HELD", "NOT HELD", "INCONCLUSIVE", "NOT RUN"
CONFIDENCE = 0.95


def _get(summary: dict, key: str):
    v = summary.get(key)
    return None if v is None else v["mean"]


def flat_metrics(metrics: dict, prefix: str = "") -> dict:
    """Nested metrics as ``{"a/b/c": float}``, numeric leaves only."""
    out = {}
    for k, v in metrics.items():
        key = f"{prefix}/{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(flat_metrics(v, key))
        elif isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool):
            out[key] = float(v)
    return out


def _per_run(results: dict) -> list[dict]:
    """Flattened metrics of every run, in the order of ``results["runs"]``."""
    return [flat_metrics(r.get("metrics") or {}) for r in results.get("runs") or []]


def sign_test_p(d) -> float:
    """Exact two-sided sign test of the non-zero differences ``d`` against a median of 0 (1.0 if none)."""
    d = np.asarray(d, dtype=np.float64)
    pos, neg = int((d > 0).sum()), int((d < 0).sum())
    m = pos + neg
    if m == 0:
        return 1.0
    k = min(pos, neg)
    tail = sum(math.comb(m, i) for i in range(k + 1)) / 2.0 ** m
    return float(min(1.0, 2.0 * tail))


def paired_test(diffs) -> dict:
    """Paired comparison of per-run differences (claim side minus other side), see the module docstring.

    Returns
    -------
    dict: ``verdict`` (HELD / NOT HELD / INCONCLUSIVE), ``n``, ``mean``, ``se``, ``ci`` (low, high),
    ``p_sign``, ``n_positive``, ``n_negative``, ``diffs``.
    """
    from scipy.stats import t as student_t

    d = np.asarray([x for x in diffs if x is not None], dtype=np.float64)
    n = int(d.size)
    out = {"n": n, "mean": float(d.mean()) if n else None, "se": None, "ci": None,
           "p_sign": sign_test_p(d), "n_positive": int((d > 0).sum()), "n_negative": int((d < 0).sum()),
           "diffs": d.tolist()}
    if n < 2:  # one run gives no spread: nothing can be concluded from it
        out["verdict"] = INCONCLUSIVE
        return out
    se = float(d.std(ddof=1) / math.sqrt(n))
    half = float(student_t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * se
    lo, hi = float(d.mean()) - half, float(d.mean()) + half
    out.update(se=se, ci=(lo, hi))
    out["verdict"] = HELD if lo > 0 else NOT_HELD if hi <= 0 else INCONCLUSIVE
    return out


def _claim(name: str, ours: dict, diffs, rule: str) -> dict:
    """A claim's record; ``diffs`` None (a setting not run) gives NOT RUN."""
    if diffs is None:
        test, verdict = None, NOT_RUN
    else:
        test = paired_test(diffs)
        verdict = test["verdict"]
    held = {HELD: True, NOT_HELD: False}.get(verdict)
    return {"claim": name, "verdict": verdict, "held": held, "rule": rule, "values": ours, "test": test}


def _diffs(runs: list[dict], fn):
    """``fn(run metrics)`` over the runs that have every key it reads (KeyError → skipped)."""
    out = []
    for m in runs:
        try:
            out.append(fn(m))
        except KeyError:
            continue
    return out


def check_claims(results: dict) -> list[dict]:
    """Each claim with its paired test over ``results["runs"]`` (see the module docstring).

    ``values`` holds the means over runs (from ``results["summary"]``) for the report; ``test``
    the paired comparison; ``verdict`` HELD / NOT HELD / INCONCLUSIVE / NOT RUN and ``held`` True /
    False / None (None for INCONCLUSIVE and NOT RUN). Results without per-run metrics get
    INCONCLUSIVE (n = 0) for the claims whose settings were run.
    """
    s = results["summary"]
    runs = _per_run(results)
    claims = []

    a0 = _get(s, "fusion/0dB/rbm.audio")
    b0 = {k: _get(s, f"fusion/0dB/{k}") for k in ("bimodal_dae.both", "bimodal_dae.both+rbm.audio")}
    b0 = {k: v for k, v in b0.items() if v is not None}
    best = max(b0, key=b0.get) if b0 else None
    claims.append(_claim(
        "Bimodal features beat audio alone under 0 dB white noise",
        {"rbm.audio": a0, **b0},
        None if a0 is None or best is None else
        _diffs(runs, lambda m: m[f"fusion/0dB/{best}"] - m["fusion/0dB/rbm.audio"]),
        "per run: accuracy at 0 dB of the bimodal row with the best mean (bimodal_dae.both or "
        "bimodal_dae.both+rbm.audio) minus rbm.audio; paired test > 0"))

    aug, noaug = _get(s, "cross_modality/video/bimodal_dae.video"), _get(s, "cross_modality/video/bimodal_dae_noaug.video")
    claims.append(_claim(
        "Pretraining with augmentation beats no augmentation for video-only input",
        {"augmented": aug, "no_augmentation": noaug},
        None if aug is None or noaug is None else
        _diffs(runs, lambda m: m["cross_modality/video/bimodal_dae.video"]
               - m["cross_modality/video/bimodal_dae_noaug.video"]),
        "per run: video-only accuracy of the bimodal autoencoder fine-tuned with zeroed-modality examples "
        "minus without; paired test > 0"))

    chance = _get(s, "shared_representation/chance")
    av, va = _get(s, "shared_representation/audio->video/bimodal_dae"), _get(s, "shared_representation/video->audio/bimodal_dae")
    claims.append(_claim(
        "Shared-representation transfer is far above chance in both directions",
        {"audio->video": av, "video->audio": va, "chance": chance},
        None if None in (av, va, chance) else
        _diffs(runs, lambda m: min(m["shared_representation/audio->video/bimodal_dae"],
                                   m["shared_representation/video->audio/bimodal_dae"])
               - 2 * m["shared_representation/chance"]),
        "per run: the lower of the two directions' accuracies of the bimodal autoencoder's shared codes "
        "minus 2x chance; paired test > 0"))

    da_dub = _get(s, "mcgurk/predictions/ga/ba/da")
    da_ba = _get(s, "mcgurk/predictions/ba/ba/da")
    claims.append(_claim(
        "Visual /ga/ with audio /ba/ shifts predictions toward /da/",
        {"P(da | visual ga, audio ba)": da_dub, "P(da | visual ba, audio ba)": da_ba},
        None if da_dub is None or da_ba is None else
        _diffs(runs, lambda m: m["mcgurk/predictions/ga/ba/da"] - m["mcgurk/predictions/ba/ba/da"]),
        "per run: share of /da/ predictions for dubbed ga/ba minus for congruent ba/ba; paired test > 0"))
    return claims
