"""report.md, the ablation table and the figures, written from hand-made results.

The runs below plant known numbers: each metric is ``mean - std`` in runs 0 and 2 and ``mean + std`` in
runs 1 and 3, so its population s.d. (ddof 0) is exactly ``std`` and the runner's sample s.d. (ddof 1)
``std * sqrt(4/3)``. The report is written from the planted ``(mean, std, n=4)`` and shows mean ± 2 std.
"""
import json
import re

import numpy as np
import pytest

from helpers import nest_metrics
from experiments.claims import check_claims
from experiments.report import ablation_table, load_reference, write_ablation_table, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# flattened metric key -> (mean, std) over the two runs
PLANTED = {
    "cross_modality/video/raw.video": (0.30, 0.01),
    "cross_modality/video/rbm.video": (0.35, 0.02),
    "cross_modality/video/video_dae.video": (0.40, 0.03),
    "cross_modality/video/bimodal_dae.video": (0.424, 0.013),  # claim 2: augmented < no augmentation -> NOT HELD
    "cross_modality/video/bimodal_dae_noaug.video": (0.45, 0.01),
    "cross_modality/audio/raw.audio": (0.80, 0.01),
    "cross_modality/audio/bimodal_dae.audio": (0.85, 0.01),
    "fusion/clean/rbm.audio": (0.90, 0.01),
    "fusion/clean/bimodal_dae.both": (0.88, 0.02),
    "fusion/clean/bimodal_dae.both+rbm.audio": (0.92, 0.01),
    "fusion/10dB/rbm.audio": (0.80, 0.02),
    "fusion/10dB/bimodal_dae.both": (0.82, 0.02),
    "fusion/10dB/bimodal_dae.both+rbm.audio": (0.86, 0.02),
    "fusion/0dB/rbm.audio": (0.50, 0.04),  # claim 1: bimodal at 0 dB beats audio -> HELD
    "fusion/0dB/bimodal_dae.both": (0.61, 0.03),
    "fusion/0dB/bimodal_dae.both+rbm.audio": (0.66, 0.02),
    "fusion/-10dB/rbm.audio": (0.20, 0.02),
    "fusion/-10dB/bimodal_dae.both": (0.45, 0.03),
    "fusion/-10dB/bimodal_dae.both+rbm.audio": (0.47, 0.03),
    "shared_representation/audio->video/bimodal_dae": (0.33, 0.02),
    "shared_representation/audio->video/raw_cca": (0.21, 0.02),
    "shared_representation/audio->video/rbm_cca": (0.25, 0.02),
    "shared_representation/video->audio/bimodal_dae": (0.29, 0.02),
    "shared_representation/video->audio/raw_cca": (0.19, 0.02),
    "shared_representation/video->audio/rbm_cca": (0.24, 0.02),
    "shared_representation/chance": (0.10, 0.0),
    "mcgurk/congruent_accuracy": (0.777, 0.011),
    "mcgurk/predictions/ga/ga/ga": (0.80, 0.05),
    "mcgurk/predictions/ga/ga/ba": (0.05, 0.05),
    "mcgurk/predictions/ga/ga/da": (0.15, 0.05),
    "mcgurk/predictions/ba/ba/ga": (0.04, 0.01),
    "mcgurk/predictions/ba/ba/ba": (0.90, 0.02),
    "mcgurk/predictions/ba/ba/da": (0.06, 0.01),
    "mcgurk/predictions/da/da/ga": (0.10, 0.01),
    "mcgurk/predictions/da/da/ba": (0.10, 0.01),
    "mcgurk/predictions/da/da/da": (0.80, 0.02),
    "mcgurk/predictions/ga/ba/ga": (0.25, 0.02),
    "mcgurk/predictions/ga/ba/ba": (0.237, 0.02),
    "mcgurk/predictions/ga/ba/da": (0.513, 0.024),  # claim 4 HELD; paper says 58.7
    "matching/bimodal_dae/top1": (0.412, 0.01),
    "matching/bimodal_dae/top1_same_word": (0.6, 0.01),
    "matching/bimodal_dae/mrr": (0.55, 0.01),
    "matching/bimodal_dae/chance_top1": (0.025, 0.0),
    "matching/bimodal_dae/chance_top1_same_word": (0.25, 0.0),
    "matching/bimodal_dae/n": (40.0, 0.0),
    "matching/raw_cca/top1": (0.1, 0.01),
    "matching/raw_cca/mrr": (0.2, 0.01),
    "matching/chance_top1": (0.025, 0.0),
}


def _artifacts(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    conf = (np.eye(4, dtype=np.int64) * 5 + rng.integers(0, 2, (4, 4))).tolist()
    return {
        "fusion": {"clean/bimodal_dae.both": {"confusion": np.asarray(conf)}, "clean/rbm.audio": {"confusion": conf}},
        "cross_modality": {"video/bimodal_dae.video": {"confusion": conf, "C": 1.0}},
        "histories": {"audio_rbm": [1.0, 0.5, 0.3, 0.25], "bimodal_dae": [2.0, 1.1, 0.9, 0.8]},
        "mouth_from_audio": {"true": rng.uniform(0, 255, (3, 12, 16)).round(1).tolist(),
                             "from_audio": rng.uniform(0, 255, (3, 12, 16)).round(1).tolist()},
    }


def _runs(planted: dict) -> list[dict]:
    runs = []
    for i, sign in enumerate((-1, 1, -1, 1)):
        metrics = nest_metrics({k: m + sign * s for k, (m, s) in planted.items()})
        runs.append({"seed": i // 2, "fold": i % 2, "metrics": metrics, "artifacts": _artifacts(i)})
    return runs


def _summary(runs: list[dict], planted: dict) -> dict:
    """The real experiments.runner.summarise_runs when it imports; else the summary built by hand
    from the planted (mean, std) (runner imports the training pipeline, which may be absent)."""
    by_hand = {k: {"mean": m, "std": s, "n": len(runs)} for k, (m, s) in planted.items()}
    try:
        from experiments.runner import summarise_runs
    except ImportError:
        return by_hand
    real = summarise_runs(runs)
    assert set(real) == set(by_hand)
    n = len(runs)
    for k, v in by_hand.items():
        assert real[k]["n"] == v["n"]
        # the sample s.d. (ddof 1) of the planted values is the planted (population) one x sqrt(n / (n - 1))
        assert real[k]["mean"] == pytest.approx(v["mean"])
        assert real[k]["std"] == pytest.approx(v["std"] * np.sqrt(n / (n - 1)), abs=1e-12)
    return by_hand


def _results(planted=PLANTED, source="synth", with_artifacts=True) -> dict:
    runs = _runs(planted)
    if not with_artifacts:
        for r in runs:
            r["artifacts"] = {}
    results = {
        "experiment": "unit",
        "description": "hand-made results",
        "config": {"experiment": {"seeds": [0, 1], "n_folds": 2, "split": "kfold"},
                   "data": {"source": source, "root": "/data/cuave" if source != "synth" else "",
                            "labels": ["0", "1", "2", "3"]},
                   "eval": {"classifier": "svm", "backend": "torch", "Cs": [0.1, 1.0], "cv_folds": 3,
                            "slices": [1, 3], "snr_db": [10.0, 0.0, -10.0]}},
        "provenance": {"git_commit": "abc1234", "device": "cpu", "versions": {"torch": "2.x"},
                       "time_utc": "2025-01-01T00:00:00+00:00"},
        "n_utterances": 48,
        "n_speakers": 4,
        "runs": runs,
        "summary": _summary(runs, planted),
        "timings": {"preprocess": 1.5, "pretrain and fine-tune": 7.4, "total": 10.0},
    }
    results["claims"] = check_claims(results)
    return results


def _table_row(text: str, first_cell: str) -> list[str]:
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no table row starting with {first_cell!r}")


def _section(text: str, title: str) -> str:
    start = text.index(f"## {title}")
    nxt = text.find("\n## ", start + 1)
    return text[start: nxt if nxt > 0 else None]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    results = _results()
    path = write_report(results, out)
    return out, path, path.read_text(), results


def test_report_names_the_synthetic_corpus_caveat(written):
    out, path, text, _ = written
    assert path == out / "report.md" and path.is_file()
    head = text[: text.index("## Protocol")]
    assert "synthetic corpus" in head and "NOT CUAVE or AVLetters" in head and "eSpeak NG" in head
    protocol = _section(text, "Protocol")
    assert "`abc1234`" in protocol and "48 / 4" in protocol and "[0, 1]" in protocol


def test_a_real_dataset_is_named_instead_of_the_caveat(tmp_path):
    text = write_report(_results(source="cuave", with_artifacts=False), tmp_path).read_text()
    assert "NOT CUAVE" not in text and "**CUAVE**" in text


def test_mcgurk_table_has_planted_shares_and_paper_numbers(written):
    text = _section(written[2], "McGurk effect")
    row = _table_row(text, "ga / ba")
    # columns: stimulus, predicted ga, ba, da, n, paper ga, ba, da
    assert row[1:5] == ["25.0 ± 4.0", "23.7 ± 4.0", "51.3 ± 4.8", "4"]
    assert row[5:8] == ["28.3", "13.0", "58.7"]
    assert _table_row(text, "ba / ba")[3] == "6.0 ± 2.0"
    assert _table_row(text, "da / da")[5:] == ["—", "—", "—"]  # the paper has no da/da row
    assert "77.7 ± 2.2" in text


def test_paper_number_stands_beside_ours_with_its_dataset(written):
    text = written[2]
    video = text[text.index("### Video only"): text.index("### Audio only")]
    header = _table_row(video, "feature")
    assert header[4:] == ["paper, AVLetters (%)", "paper, CUAVE (%)"]
    # each row is named by its registry feature and says what that is
    assert _table_row(video, "`bimodal_dae.video`")[1:] == ["bimodal deep autoencoder, video in", "42.4 ± 2.6", "4",
                                                            "59.2", "66.7 (quoted)"]
    assert _table_row(video, "`rbm.video`")[4] == "54.2 ± 3.3"  # '+-' rendered as ±

    fusion = _section(text, "Multimodal fusion")
    assert "speech-active part of each utterance: 20 ms frames whose energy is within 35 dB" in fusion
    header = _table_row(fusion, "features")
    assert header[2:6] == ["clean (%)", "10 dB (%)", "0 dB (%)", "-10 dB (%)"]  # clean, then SNR high to low
    assert header[-2:] == ["paper clean (CUAVE) (%)", "paper 0 dB (CUAVE) (%)"]
    assert _table_row(fusion, "`bimodal_dae.both+rbm.audio`")[2:] == [
        "92.0 ± 2.0", "86.0 ± 4.0", "66.0 ± 4.0", "47.0 ± 6.0", "4", "94.4 (quoted)", "82.2 (quoted)"]

    shared = _section(text, "Shared representation")
    assert _table_row(shared, "`rbm_cca`")[1:5] == ["25.0 ± 4.0", "57.3", "24.0 ± 4.0", "91.7"]
    assert _table_row(shared, "chance")[1] == "10.0"

    matching = _section(text, "Cross-modal matching")
    assert _table_row(matching, "`bimodal_dae`")[1:4] == ["41.2 ± 2.0", "60.0 ± 2.0", "55.0 ± 2.0"]
    chance = _table_row(matching, "chance")
    assert chance[1] == "2.5" and chance[2] == "25.0"
    assert chance[3] == f"{100 * sum(1 / k for k in range(1, 41)) / 40:.1f}"


def test_claims_are_marked_held_and_not_held(written):
    text = _section(written[2], "Claims")
    verdicts = re.findall(r"- \*\*(HELD|NOT HELD|INCONCLUSIVE|NOT RUN)\*\* — (.+)", text)
    by_claim = {claim: v for v, claim in verdicts}
    assert by_claim["Bimodal features beat audio alone under 0 dB white noise"] == "HELD"
    assert by_claim["Pretraining with augmentation beats no augmentation for video-only input"] == "NOT HELD"
    assert by_claim["Visual /ga/ with audio /ba/ shifts predictions toward /da/"] == "HELD"
    assert "rbm.audio = 50.0 %" in text and "no_augmentation = 45.0 %" in text
    # the paired test behind claim 1: per-run differences 0.18, 0.14, 0.18, 0.14 (bimodal_dae.both+rbm.audio - rbm.audio)
    assert ("test: n = 4 paired runs, mean difference = +16.0 points, SE = 1.2, 95 % CI [+12.3, +19.7], "
            "sign test p = 0.125 (4 up, 0 down)") in text


def test_a_claim_whose_runs_overlap_is_inconclusive(tmp_path):
    """bimodal 0 dB rows beat audio by +5 points in two runs and lose by 3 in the other two."""
    planted = {k: v for k, v in PLANTED.items() if k.startswith("fusion/")}
    planted["fusion/0dB/rbm.audio"] = (0.50, 0.0)
    planted["fusion/0dB/bimodal_dae.both"] = (0.51, 0.04)  # runs: 0.47, 0.55, 0.47, 0.55
    planted["fusion/0dB/bimodal_dae.both+rbm.audio"] = (0.40, 0.0)
    results = _results(planted, with_artifacts=False)
    claim = results["claims"][0]
    assert claim["verdict"] == "INCONCLUSIVE" and claim["held"] is None
    t = claim["test"]
    assert t["n"] == 4 and t["mean"] == pytest.approx(0.01) and t["ci"][0] < 0 < t["ci"][1]
    assert t["p_sign"] == pytest.approx(1.0) and (t["n_positive"], t["n_negative"]) == (2, 2)
    text = write_report(results, tmp_path).read_text()
    assert "- **INCONCLUSIVE** — Bimodal features beat audio alone under 0 dB white noise" in text


def test_timings_table_and_figure_links(written):
    out, _, text, _ = written
    timings = _section(text, "Timings")
    assert _table_row(timings, "pretrain and fine-tune")[1:] == ["7.4", "74 %"]
    for name in ("accuracy_vs_snr", "confusions", "mouth_from_audio", "training_curves", "mcgurk"):
        assert f"(plots/{name}.png)" in text
        png = out / "plots" / f"{name}.png"
        data = png.read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5000, name


def test_writing_leaves_no_temporary_files(written):
    out = written[0]
    leftovers = [p for p in out.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".")]
    assert leftovers == []


def test_missing_settings_are_skipped_and_claims_not_run(tmp_path):
    only_fusion = {k: v for k, v in PLANTED.items() if k.startswith("fusion/")}
    results = _results(only_fusion, with_artifacts=False)
    text = write_report(results, tmp_path).read_text()
    assert "## Multimodal fusion" in text
    for absent in ("## Cross-modality", "## McGurk", "## Shared representation", "## Cross-modal matching"):
        assert absent not in text
    assert text.count("- **NOT RUN** —") == 3 and text.count("- **HELD** —") == 1
    # only the SNR figure has data; the others are not drawn and not linked
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["accuracy_vs_snr.png"]
    assert "mouth_from_audio.png" not in text


def test_results_survive_a_json_round_trip(tmp_path):
    """resume reads runs back from JSON: numpy confusions become lists and must still plot."""
    results = json.loads(json.dumps(_results(), default=lambda o: o.tolist()))
    path = write_report(results, tmp_path)
    assert (tmp_path / "plots" / "confusions.png").read_bytes()[:8] == PNG_MAGIC
    assert "51.3 ± 4.8" in path.read_text()


def test_ablation_table_lists_variants_settings_and_planted_values(tmp_path):
    base = _results()
    other = dict(PLANTED, **{"fusion/0dB/bimodal_dae.both": (0.372, 0.05)})
    ablation = {"experiment": "unit", "variants": {
        "base": {"set": {}, "summary": base["summary"], "timings": {"total": 12.0}},
        "no_augmentation": {"set": {"finetune.fractions": [0, 0, 1]}, "summary": _summary(_runs(other), other),
                            "timings": {"total": 30.4}},
    }}
    path = write_ablation_table(ablation, tmp_path / "ablation.md")
    text = path.read_text()
    header = _table_row(text, "variant")
    assert "`fusion/0dB/bimodal_dae.both`" in header and "`mcgurk/predictions/ga/ba/da`" in header
    assert "`matching/bimodal_dae/top1_all`" not in header  # absent metrics get no column
    col = header.index("`fusion/0dB/bimodal_dae.both`")
    base_row, var_row = _table_row(text, "**base**"), _table_row(text, "**no_augmentation**")
    assert base_row[1] == "(base config)" and base_row[col] == "61.0 ± 3.0"
    assert var_row[1] == "`finetune.fractions` = [0, 0, 1]" and var_row[col] == "37.2 ± 5.0"
    assert var_row[-1] == "30" and var_row[-2] == "4"
    assert [p.name for p in tmp_path.iterdir()] == ["ablation.md"]  # atomic: no temp file left
    assert ablation_table(ablation) == text
    assert "random" not in text
    ablation["variants"]["random-init"] = {"set": {"pretrain.enabled": False}, "summary": base["summary"]}
    assert "**random-init**: `pretrain.enabled = false` trains no RBM" in ablation_table(ablation)


def test_ablation_without_variants_is_a_clear_error():
    from bimodal.errors import DataError

    with pytest.raises(DataError, match="variants"):
        ablation_table({"experiment": "x", "variants": {}})


def test_reference_file_is_found_next_to_the_module():
    ref = load_reference()
    assert ref["mcgurk"]["rows"]["ga/ba"]["da"] == "58.7"


@pytest.mark.parametrize("frontend", ["pca", "conv"])
def test_protocol_names_the_video_front_end(tmp_path, frontend):
    """A run on the conv front end says so (beyond the paper, every video row on its codes)."""
    results = _results(with_artifacts=False)
    results["config"]["data"]["prep"] = {"video_frontend": frontend, "video_pca": 32, "conv_code_dim": 64,
                                         "conv_channels": 64, "conv_epochs": 10, "deltas": 1}
    row = _table_row(_section(write_report(results, tmp_path).read_text(), "Protocol"), "video front end")
    assert ("beyond the paper" in row[1] and "64-dim codes" in row[1]) == (frontend == "conv")
    assert ("PCA-whitened to 32 dims" in row[1]) == (frontend == "pca")
    assert "with their first derivatives" in row[1]
    results["config"]["data"]["prep"]["deltas"] = 0
    row = _table_row(_section(write_report(results, tmp_path).read_text(), "Protocol"), "video front end")
    assert "without derivatives" in row[1] and "with their" not in row[1]
