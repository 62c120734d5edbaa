"""Two runs compared row by row, paired over (seed, fold)."""
import json

import pytest

from bimodal.errors import DataError
from experiments.compare import compare, load_results, main, markdown


def _results(values: dict) -> dict:
    """values: {(seed, fold): {"cross_modality/video/raw.video": acc, ...}} as nested run metrics."""
    runs = []
    for (seed, fold), metrics in values.items():
        nested = {}
        for name, v in metrics.items():
            node = nested
            *parents, leaf = name.split("/")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = v
        runs.append({"seed": seed, "fold": fold, "metrics": nested})
    return {"runs": runs}


def test_rows_are_paired_by_seed_and_fold():
    before = _results({(0, 0): {"cross_modality/video/a": 0.50, "cross_modality/video/b": 0.40, "cross_modality/c": 0.3},
                       (1, 0): {"cross_modality/video/a": 0.60, "cross_modality/video/b": 0.40, "cross_modality/c": 0.4},
                       (2, 0): {"cross_modality/video/a": 0.40, "cross_modality/video/b": 0.40, "cross_modality/c": 0.5}})
    # after: +0.05 on every run of a (a large spread across runs, none across the pairs); b lower
    after = _results({(2, 0): {"cross_modality/video/a": 0.45, "cross_modality/video/b": 0.30, "cross_modality/c": 0.5},
                      (0, 0): {"cross_modality/video/a": 0.55, "cross_modality/video/b": 0.31, "cross_modality/c": 0.3},
                      (1, 0): {"cross_modality/video/a": 0.65, "cross_modality/video/b": 0.29, "cross_modality/c": 0.4}})
    rows = {r["name"]: r for r in compare(before, after, "cross_modality/")}
    a = rows["cross_modality/video/a"]
    assert a["paired"]["mean"] == pytest.approx(0.05) and a["paired"]["verdict"] == "HELD"
    assert a["before"]["sd"] == pytest.approx(0.1)  # sample s.d. (ddof 1) of 0.5, 0.6, 0.4
    assert rows["cross_modality/video/b"]["paired"]["verdict"] == "NOT HELD"
    text = markdown(list(rows.values()))
    assert "| `cross_modality/video/a` | 50.0 ± 20.0 | 55.0 ± 20.0 | +5.0 |" in text and "higher (n = 3)" in text
    assert "`cross_modality/video/b` | 40.0 ± 0.0 | 30.0 ± 2.0 | -10.0 |" in text and "lower (n = 3)" in text
    assert "`cross_modality/c` | 40.0 ± 20.0 | 40.0 ± 20.0 | +0.0 | [+0.0, +0.0] | identical (n = 3) |" in text


def test_runs_without_common_seeds_or_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="no \\(seed, fold\\) in common"):
        compare(_results({(0, 0): {"x": 1.0}}), _results({(1, 0): {"x": 1.0}}))
    bad = tmp_path / "results.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="not a JSON results file"):
        load_results(bad)
    with pytest.raises(DataError, match="does not exist"):
        load_results(tmp_path / "none.json")


def test_command_line_prints_the_table(tmp_path, capsys):
    for name, v in (("a", 0.5), ("b", 0.6)):
        (tmp_path / f"{name}.json").write_text(json.dumps(_results({(0, 0): {"cross_modality/video/r": v},
                                                                    (1, 0): {"cross_modality/video/r": v}})))
    main([str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    assert "`cross_modality/video/r` | 50.0 ± 0.0 | 60.0 ± 0.0 | +10.0 |" in capsys.readouterr().out
