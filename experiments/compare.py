"""Two runs of an experiment compared row by row, paired over the same (seed, fold).

    python -m experiments.compare BEFORE/results.json AFTER/results.json [--prefix cross_modality/video/]

For every metric both runs hold under ``--prefix``, prints the mean ± 2 sample s.d. (ddof 1) over
the runs of each and the paired test of the per-(seed, fold) differences AFTER - BEFORE
(:func:`experiments.claims.paired_test`: mean difference, 95 % t interval, verdict). Runs are paired
by their seed and fold, so both results must come from the same seeds and splits.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bimodal.errors import DataError

from .claims import flat_metrics, paired_test


def _runs_by_key(results: dict, path) -> dict:
    runs = {}
    for r in results.get("runs") or []:
        runs[(r.get("seed"), r.get("fold"))] = flat_metrics(r.get("metrics") or {})
    if not runs:
        raise DataError("results hold no runs", path=path, field="runs")
    return runs


def load_results(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise DataError("results file does not exist", path=path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"not a JSON results file ({exc})", path=path) from None


def compare(before: dict, after: dict, prefix: str = "", before_path="before", after_path="after") -> list[dict]:
    """One dict per metric under ``prefix`` held by both: ``name``, ``before`` and ``after``
    (mean, sd with ddof 1, n) and ``paired`` (:func:`paired_test` of after - before)."""
    a, b = _runs_by_key(before, before_path), _runs_by_key(after, after_path)
    keys = sorted(set(a) & set(b), key=str)
    if not keys:
        raise DataError(f"no (seed, fold) in common: {sorted(a, key=str)} vs {sorted(b, key=str)}",
                        path=after_path, field="runs")
    names = sorted({n for k in keys for n in a[k] if n.startswith(prefix) and all(n in b[j] for j in keys)})
    rows = []
    for n in names:
        xa, xb = np.array([a[k][n] for k in keys]), np.array([b[k][n] for k in keys])
        stats = {side: {"mean": float(x.mean()), "sd": float(x.std(ddof=1)) if len(x) > 1 else 0.0, "n": len(x)}
                 for side, x in (("before", xa), ("after", xb))}
        rows.append({"name": n, **stats, "paired": paired_test(xb - xa)})
    return rows


def markdown(rows: list[dict], scale: float = 100.0) -> str:
    lines = ["| metric | before (± 2 s.d.) | after (± 2 s.d.) | after − before | 95 % CI | verdict |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        p = r["paired"]
        ci = "—" if p["ci"] is None else f"[{scale * p['ci'][0]:+.1f}, {scale * p['ci'][1]:+.1f}]"
        verdict = {"HELD": "higher", "NOT HELD": "lower"}.get(p["verdict"], "inconclusive")
        if p["n"] and not (p["n_positive"] or p["n_negative"]):
            verdict = "identical"
        lines.append(f"| `{r['name']}` | {scale * r['before']['mean']:.1f} ± {2 * scale * r['before']['sd']:.1f} | "
                     f"{scale * r['after']['mean']:.1f} ± {2 * scale * r['after']['sd']:.1f} | "
                     f"{scale * p['mean']:+.1f} | {ci} | {verdict} (n = {p['n']}) |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--prefix", default="cross_modality/", help="metrics whose name starts so")
    args = ap.parse_args(argv)
    rows = compare(load_results(args.before), load_results(args.after), args.prefix, args.before, args.after)
    print(markdown(rows))


if __name__ == "__main__":
    main()
