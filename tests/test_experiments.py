"""End-to-end runs of the experiment runner on a tiny generated corpus, and its helpers."""
import json
from pathlib import Path

import numpy as np
import pytest

from bimodal.config import config_from_dict
from bimodal.errors import ConfigError
from experiments import claims, pipeline

TINY = {
    "experiment": {"name": "tiny", "seeds": [0], "n_folds": 2},
    "data": {"source": "synth", "labels": ["0", "1", "2"], "synth_speakers": 4, "synth_repetitions": 2,
             "synth_vocabulary": ["0", "1", "2", "ba", "ga", "da"]},
    "data.prep": None,
    "model": {"audio_hidden": [24], "video_hidden": [24], "shared": 24},
    "pretrain": {"epochs": 2, "lr_gaussian": 0.005},
    "finetune": {"epochs": 3},
    "eval": {"Cs": [0.1, 1.0], "cv_folds": 2, "snr_db": [0.0], "cca_components": 4, "backend": "sklearn"},
}


def tiny_config(root, **sections):
    data = {k: dict(v) for k, v in TINY.items() if v is not None}
    data["data"]["root"] = str(root)
    data["data"]["cache_dir"] = str(Path(root).parent / (Path(root).name + "-cache"))
    data["data"]["prep"] = {"audio_pca": 12, "video_pca": 8}
    for k, v in sections.items():
        data.setdefault(k, {}).update(v)
    return config_from_dict(data)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from experiments.runner import run_experiment

    root = tmp_path_factory.mktemp("corpus")
    out = tmp_path_factory.mktemp("run")
    cfg = tiny_config(root)
    results = run_experiment(cfg, out, device="cpu", progress=False)
    return cfg, out, results


def test_end_to_end_writes_every_setting(tiny_run):
    cfg, out, results = tiny_run
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["summary"] == results["summary"]
    s = results["summary"]
    for key in ("cross_modality/video/bimodal_dae", "cross_modality/audio/raw", "fusion/clean/bimodal_dae",
                "fusion/0dB/audio_rbm", "shared_representation/audio->video/rbm_cca",
                "mcgurk/predictions/ga/ba/da", "matching/bimodal_dae/mrr"):
        assert key in s, key
        assert 0.0 <= s[key]["mean"] <= 1.0 and s[key]["n"] == 2
    # every fold tests on speakers it did not train on, and every speaker is tested once
    tested = [sp for run in results["runs"] for sp in run["test_speakers"]]
    assert sorted(tested) == sorted({sp for run in results["runs"] for sp in run["train_speakers"] + run["test_speakers"]})
    for run in results["runs"]:
        assert not set(run["train_speakers"]) & set(run["test_speakers"])
    # McGurk distributions are distributions
    for stim in ("ga/ga", "ba/ba", "ga/ba"):
        total = sum(s[f"mcgurk/predictions/{stim}/{syl}"]["mean"] for syl in ("ga", "ba", "da"))
        assert total == pytest.approx(1.0)
    assert len(results["claims"]) == 4 and all(c["verdict"] in ("HELD", "NOT HELD", "INCONCLUSIVE") and c["test"]["n"] == len(results["runs"])
                                          for c in results["claims"])
    prov = results["provenance"]
    assert prov["versions"]["torch"] and prov["seed"] == [0] and results["config"]["experiment"]["name"] == "tiny"
    report = (out / "report.md").read_text()
    assert "not CUAVE" in report or "NOT CUAVE" in report.upper()
    assert (out / "checkpoints" / "seed0_fold0" / "bimodal_dae.pt").is_file()
    assert (out / "checkpoints" / "seed0_fold0" / "preprocessor.npz").is_file()
    assert not list(out.rglob("*.tmp"))


def test_clean_audio_classification_beats_chance(tiny_run):
    # synthetic digits are easy from clean audio: the raw-feature classifier must beat 1/3 clearly
    _, _, results = tiny_run
    assert results["summary"]["cross_modality/audio/raw"]["mean"] > 0.6


def test_resume_reuses_finished_folds(tiny_run, monkeypatch):
    from experiments import runner

    cfg, out, results = tiny_run

    def boom(*a, **k):
        raise AssertionError("resume retrained a finished fold")

    monkeypatch.setattr(runner, "run_fold", boom)
    again = runner.run_experiment(cfg, out, device="cpu", resume=True, progress=False, write_report=False)
    assert again["summary"] == results["summary"]


def test_extract_features(tiny_run, tmp_path):
    from experiments.extract import extract_features

    cfg, out, results = tiny_run
    path = extract_features(out / "checkpoints" / "seed0_fold0" / "bimodal_dae.pt", cfg.data.root,
                            tmp_path / "feats.npz", layer="shared", slices=(1, 3), progress=False, device="cpu")
    z = np.load(path, allow_pickle=False)
    n = len(z["labels"])
    assert z["features"].shape == (n, 24 * 4) and np.isfinite(z["features"]).all()
    assert set(z["labels"]) >= {"0", "1", "2"} and len(set(z["utterance_ids"])) == n
    with pytest.raises(ConfigError, match="--layer"):
        extract_features(out / "checkpoints" / "seed0_fold0" / "bimodal_dae.pt", cfg.data.root,
                         tmp_path / "f2.npz", layer="middle", progress=False, device="cpu")


def test_same_config_same_numbers_on_cpu(tiny_run, tmp_path):
    from experiments.runner import run_experiment

    cfg, _, results = tiny_run
    again = run_experiment(cfg, tmp_path, device="cpu", progress=False, write_report=False)
    assert again["summary"] == results["summary"]


def test_mcgurk_utterance_retimes_video_to_audio():
    from data_prep.readers import Utterance

    a = Utterance(np.zeros(16000, np.float32), 16000, np.zeros((20, 60, 80), np.uint8), 25.0, "ba", "s1", "ba1", "x")
    v = Utterance(np.zeros(8000, np.float32), 16000, np.arange(12)[:, None, None].repeat(60, 1).repeat(80, 2)
                  .astype(np.uint8), 25.0, "ga", "s1", "ga1", "y")
    d = pipeline.mcgurk_utterance(a, v)
    assert d.label == "ga|ba" and d.audio is a.audio and d.video.shape == (25, 60, 80)
    # frames of the /ga/ video, in order, stretched over the /ba/ audio's second
    firsts = d.video[:, 0, 0].astype(int)
    assert firsts[0] == 0 and firsts[-1] == 11 and np.all(np.diff(firsts) >= 0)


def test_noise_transform_is_seeded_per_utterance():
    from bimodal.noise import snr_db

    class U:
        utterance_id = "s1_0_r1"

    wave = np.sin(np.linspace(0, 200, 8000)).astype(np.float32)
    f = pipeline.noise_transform(0.0, seed=3)
    n1, n2 = f(wave, 16000, U()), f(wave, 16000, U())
    assert np.array_equal(n1, n2) and snr_db(wave, n1) == pytest.approx(0.0, abs=0.01)
    U.utterance_id = "s1_0_r2"
    assert not np.array_equal(n1, f(wave, 16000, U()))


def test_claims_verdicts_from_paired_runs():
    def runs(per_run):
        return [{"seed": 0, "fold": i, "metrics": m} for i, m in enumerate(per_run)]

    def summ(per_run):
        keys = per_run[0].keys()
        return {k: {"mean": float(np.mean([m[k] for m in per_run])), "std": 0.0, "n": len(per_run)} for k in keys}

    per_run = []
    for i in range(5):
        per_run.append({"fusion/0dB/audio_rbm": 0.5 + 0.01 * i, "fusion/0dB/bimodal_dae": 0.6 + 0.012 * i,
                        "shared_representation/chance": 0.1,
                        "shared_representation/audio->video/bimodal_dae": 0.3,
                        "shared_representation/video->audio/bimodal_dae": 0.15 - 0.01 * (i % 2)})
    nested = [pipeline_nest(m) for m in per_run]
    c = {x["claim"]: x for x in claims.check_claims({"summary": summ(per_run), "runs": runs(nested)})}
    beat = c["Bimodal features beat audio alone under 0 dB white noise"]
    assert beat["verdict"] == "HELD" and beat["held"] is True and beat["test"]["n"] == 5
    assert beat["test"]["p_sign"] == pytest.approx(2 / 32)  # 5 of 5 positive, two-sided
    shared = c["Shared-representation transfer is far above chance in both directions"]
    assert shared["verdict"] == "NOT HELD" and shared["test"]["ci"][1] <= 0
    assert c["Visual /ga/ with audio /ba/ shifts predictions toward /da/"]["verdict"] == "NOT RUN"


def test_sign_test_matches_the_binomial():
    from scipy.stats import binomtest

    for d in ([1, 1, 1, -1, 1, 1, 0, 1], [-1, -2, 3], [0.5] * 9):
        d = np.asarray(d, float)
        k, m = int((d > 0).sum()), int((d != 0).sum())
        assert claims.sign_test_p(d) == pytest.approx(binomtest(k, m).pvalue)


def pipeline_nest(flat: dict) -> dict:
    out: dict = {}
    for key, value in flat.items():
        *path, leaf = key.split("/")
        node = out
        for p in path:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def test_missing_labels_and_root_errors(tmp_path):
    from bimodal.errors import DataError

    cfg = config_from_dict({"data": {"source": "folder"}})
    with pytest.raises(ConfigError, match="data.root"):
        pipeline.load_utterances(cfg)
    cfg = config_from_dict({"data": {"source": "synth", "root": str(tmp_path / "c"), "labels": ["0", "Q"],
                                     "synth_speakers": 2, "synth_repetitions": 1, "synth_vocabulary": ["0"]},
                            "experiment": {"settings": ["cross_modality"]}})
    with pytest.raises(DataError, match=r"\['Q'\]"):
        pipeline.load_utterances(cfg, progress=False)
    cfg = config_from_dict({"data": {"source": "synth", "root": str(tmp_path / "c"), "labels": ["0"],
                                     "synth_speakers": 2, "synth_repetitions": 1, "synth_vocabulary": ["0"]}})
    with pytest.raises(DataError, match=r"McGurk setting needs .*missing \['ba', 'da', 'ga'\]"):
        pipeline.load_utterances(cfg, progress=False)


def test_ablation_writes_one_table(tiny_run, tmp_path):
    from bimodal.config import AblationVariant
    from experiments.runner import run_ablation

    cfg, _, _ = tiny_run
    cfg = tiny_config(cfg.data.root, experiment={"settings": ["cross_modality", "mcgurk"]})
    cfg.ablation = [AblationVariant(name="no-augmentation", set={"finetune.fractions": [0.0, 0.0, 1.0]})]
    ab = run_ablation(cfg, tmp_path, device="cpu", progress=False)
    assert set(ab["variants"]) == {"base", "no-augmentation"}
    base = ab["variants"]["base"]["summary"]["cross_modality/video/bimodal_dae"]["mean"]
    table = (tmp_path / "ablation.md").read_text()
    assert "no-augmentation" in table and f"{100 * base:.1f}" in table
    # the variant really changed the fine-tuning: its augmented model is the base's unaugmented one
    noaug = ab["variants"]["no-augmentation"]["summary"]["cross_modality/video/bimodal_dae"]["mean"]
    assert noaug == ab["variants"]["base"]["summary"]["cross_modality/video/bimodal_dae_no_augmentation"]["mean"]
    assert json.loads((tmp_path / "ablation.json").read_text())["variants"]["no-augmentation"]["set"] == {
        "finetune.fractions": [0.0, 0.0, 1.0]}


def test_extract_parquet(tiny_run, tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    from experiments.extract import extract_features

    cfg, out, _ = tiny_run
    path = extract_features(out / "checkpoints" / "seed0_fold1" / "bimodal_dae.pt", cfg.data.root,
                            tmp_path / "feats.parquet", slices=(1,), modalities=("video",), progress=False,
                            device="cpu")
    df = pd.read_parquet(path)
    assert list(df.columns[:3]) == ["utterance_id", "speaker", "label"] and df.shape[1] == 3 + 24
    assert df["utterance_id"].is_unique and set(df["label"]) >= {"0", "1", "2"}


def test_second_run_reuses_cached_frames(tiny_run, tmp_path, monkeypatch):
    from data_prep.dataset import Preprocessor
    from experiments.runner import run_experiment

    cfg, _, results = tiny_run
    path = pipeline.frame_cache_path(cfg, pipeline.load_utterances(cfg, progress=False))
    assert path.is_file() and path.parent == Path(cfg.data.cache_dir)

    def no_recompute(self, u, audio_transform=None):
        raise AssertionError(f"frames of {u.utterance_id} recomputed despite the cache")

    monkeypatch.setattr(Preprocessor, "_frames", no_recompute)
    c2 = tiny_config(cfg.data.root, experiment={"settings": ["cross_modality", "fusion", "mcgurk"]})
    again = run_experiment(c2, tmp_path, device="cpu", progress=False, write_report=False)
    for k in ("cross_modality/video/bimodal_dae", "fusion/0dB/bimodal_dae", "mcgurk/predictions/ga/ba/ga"):
        assert again["summary"][k] == results["summary"][k], k


def test_resume_refuses_a_changed_config(tiny_run):
    from experiments.runner import run_experiment

    cfg, out, _ = tiny_run
    changed = tiny_config(cfg.data.root, model={"shared": 16})
    with pytest.raises(ConfigError, match="model.shared"):
        run_experiment(changed, out, device="cpu", resume=True, progress=False, write_report=False)
