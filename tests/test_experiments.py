"""End-to-end runs of the experiment runner on a tiny generated corpus, and its helpers."""
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bimodal.errors import ConfigError, DataError
from experiments import claims, pipeline
from experiments.config import config_from_dict, with_overrides
from helpers import nest_metrics

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
    for key in ("cross_modality/video/bimodal_dae.video", "cross_modality/audio/raw.audio", "fusion/clean/bimodal_dae.both",
                "fusion/0dB/rbm.audio", "shared_representation/audio->video/rbm_cca",
                "mcgurk/predictions/ga/ba/da", "matching/bimodal_dae/mrr"):
        assert key in s, key
        assert 0.0 <= s[key]["mean"] <= 1.0 and s[key]["n"] == 2
    # every fold tests on speakers it did not train on, and every speaker is tested once
    tested = [sp for run in results["runs"] for sp in run["test_speakers"]]
    assert sorted(tested) == sorted({sp for run in results["runs"] for sp in run["train_speakers"] + run["test_speakers"]})
    for run in results["runs"]:
        assert not set(run["train_speakers"]) & set(run["test_speakers"])
        assert run["skipped"] == {} and run["noise_skipped"] is None  # nothing unusable in the tiny corpus
    assert results["read_skipped"] == []
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
    assert results["summary"]["cross_modality/audio/raw.audio"]["mean"] > 0.6


def test_resume_reuses_finished_folds(tiny_run, monkeypatch):
    from experiments import runner

    cfg, out, results = tiny_run

    def boom(*a, **k):
        raise AssertionError("resume retrained a finished fold")

    monkeypatch.setattr(runner, "run_fold", boom)
    again = runner.run_experiment(cfg, out, device="cpu", resume=True, progress=False, write_report=False)
    assert again["summary"] == results["summary"]


def test_extract_features(tiny_run, tmp_path):
    from bimodal.features import pool_slices
    from data_prep.dataset import Preprocessor
    from data_prep.readers import read_folder
    from experiments.extract import extract_features, load_model

    cfg, out, results = tiny_run
    path = extract_features(out / "checkpoints" / "seed0_fold0" / "bimodal_dae.pt", cfg.data.root,
                            tmp_path / "feats.npz", feature="bimodal_dae.both", slices=(1, 3), progress=False,
                            device="cpu")
    z = np.load(path, allow_pickle=False)
    n = len(z["labels"])
    assert z["features"].shape == (n, 24 * 4) and np.isfinite(z["features"]).all()
    assert set(z["labels"]) >= {"0", "1", "2"} and len(set(z["utterance_ids"])) == n
    with pytest.raises(ConfigError, match="unknown feature 'bimodal_dae.middle'.*bimodal_dae.video"):
        extract_features(out / "checkpoints" / "seed0_fold0", cfg.data.root, tmp_path / "f2.npz",
                         feature="bimodal_dae.middle", progress=False, device="cpu")
    # the feature's checkpoint, not another one
    with pytest.raises(DataError, match="video_dae.pt, not bimodal_dae.pt"):
        extract_features(out / "checkpoints" / "seed0_fold0" / "bimodal_dae.pt", cfg.data.root, tmp_path / "f3.npz",
                         feature="video_dae.video", progress=False, device="cpu")
    # a feature name and the run's checkpoint folder select the model, its inputs and its layer:
    # compared with the models called directly on the whitened windows
    ckpt = out / "checkpoints" / "seed0_fold0"
    dbn, vdae = (load_model(ckpt / f"{n}.pt", device="cpu") for n in ("bimodal_dbn", "video_dae"))
    prep = Preprocessor.load(ckpt / "preprocessor.npz", device="cpu")
    ds = prep.transform(read_folder(cfg.data.root, progress=False), progress=False)
    direct = {"rbm.video": dbn.video.layers[0].transform(ds.video), "video_dae.video": vdae.encode(video=ds.video),
              "bimodal_dbn.video": dbn.transform(audio=np.zeros_like(ds.audio), video=ds.video),
              "raw.both": np.concatenate([ds.audio, ds.video], axis=1)}
    for name, codes in direct.items():
        z = np.load(extract_features(ckpt, cfg.data.root, tmp_path / f"{name}.npz", feature=name, progress=False,
                                     device="cpu"))
        ref = pool_slices(codes, ds.utt, ds.n_utterances, (1, 3))
        np.testing.assert_allclose(z["features"], ref, rtol=1e-5, atol=1e-6)
        assert str(z["feature"]) == name


def test_same_config_same_numbers_on_cpu(tiny_run, tmp_path):
    from experiments.runner import run_experiment

    cfg, _, results = tiny_run
    again = run_experiment(cfg, tmp_path, device="cpu", progress=False, write_report=False)
    assert again["summary"] == results["summary"]


def test_mcgurk_utterance_shifts_video_to_the_audio_onset():
    from data_prep.readers import Utterance

    a = Utterance(np.zeros(16000, np.float32), 16000, np.zeros((20, 60, 80), np.uint8), 25.0, "ba", "s1", "ba1", "x",
                  onset_s=0.30)
    v = Utterance(np.zeros(8000, np.float32), 16000, np.arange(12)[:, None, None].repeat(60, 1).repeat(80, 2)
                  .astype(np.uint8), 25.0, "ga", "s1", "ga1", "y", onset_s=0.10)
    d = pipeline.mcgurk_utterance(a, v)
    assert d.label == "ga|ba" and d.audio is a.audio and d.video.shape == (25, 60, 80) and d.onset_s == 0.30
    # the /ga/ video, not stretched, delayed by (0.30 - 0.10) s = 5 frames; its ends held
    firsts = d.video[:, 0, 0].astype(int)
    assert firsts.tolist() == [0] * 5 + list(range(12)) + [11] * 8


def test_noise_transform_is_seeded_per_utterance():
    from bimodal.noise import snr_db

    class U:
        utterance_id = "s1_0_r1"

    wave = np.sin(np.linspace(0, 200, 8000)).astype(np.float32)
    f = pipeline.noise_transform(0.0, seed=3)
    n1, n2 = f(wave, 16000, U()), f(wave, 16000, U())
    assert np.array_equal(n1, n2) and snr_db(wave, n1, rate=16000) == pytest.approx(0.0, abs=0.01)
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
        per_run.append({"fusion/0dB/rbm.audio": 0.5 + 0.01 * i, "fusion/0dB/bimodal_dae.both": 0.6 + 0.012 * i,
                        "shared_representation/chance": 0.1,
                        "shared_representation/audio->video/bimodal_dae": 0.3,
                        "shared_representation/video->audio/bimodal_dae": 0.15 - 0.01 * (i % 2)})
    nested = [nest_metrics(m) for m in per_run]
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
    from experiments.config import AblationVariant
    from experiments.runner import run_ablation

    cfg, _, _ = tiny_run
    cfg = tiny_config(cfg.data.root, experiment={"settings": ["cross_modality", "mcgurk"]})
    cfg.ablation = [AblationVariant(name="no-augmentation", set={"finetune.fractions": [0.0, 0.0, 1.0]})]
    ab = run_ablation(cfg, tmp_path, device="cpu", progress=False)
    assert set(ab["variants"]) == {"base", "no-augmentation"}
    base = ab["variants"]["base"]["summary"]["cross_modality/video/bimodal_dae.video"]["mean"]
    table = (tmp_path / "ablation.md").read_text()
    assert "no-augmentation" in table and f"{100 * base:.1f}" in table
    # the variant really changed the fine-tuning: its augmented model is the base's unaugmented one
    noaug = ab["variants"]["no-augmentation"]["summary"]["cross_modality/video/bimodal_dae.video"]["mean"]
    assert noaug == ab["variants"]["base"]["summary"]["cross_modality/video/bimodal_dae_noaug.video"]["mean"]
    assert json.loads((tmp_path / "ablation.json").read_text())["variants"]["no-augmentation"]["set"] == {
        "finetune.fractions": [0.0, 0.0, 1.0]}


def test_extract_parquet(tiny_run, tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    from experiments.extract import extract_features

    cfg, out, _ = tiny_run
    path = extract_features(out / "checkpoints" / "seed0_fold1", cfg.data.root, tmp_path / "feats.parquet",
                            feature="bimodal_dae.video", slices=(1,), progress=False, device="cpu")
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
    for k in ("cross_modality/video/bimodal_dae.video", "fusion/0dB/bimodal_dae.both", "mcgurk/predictions/ga/ba/ga"):
        assert again["summary"][k] == results["summary"][k], k


def test_resume_refuses_runs_of_an_older_results_format(tiny_run, tmp_path):
    from experiments.runner import run_experiment

    cfg, _, _ = tiny_run
    old = tmp_path / "checkpoints" / "seed0_fold0" / "results.json"
    old.parent.mkdir(parents=True)
    old.write_text(json.dumps({"seed": 0, "fold": 0, "metrics": {"fusion": {"0dB": {"audio_rbm": 0.5}}}}))
    with pytest.raises(ConfigError, match="older bimodal .results format 1"):
        run_experiment(cfg, tmp_path, device="cpu", resume=True, progress=False, write_report=False)


def test_resume_refuses_a_changed_config(tiny_run):
    from experiments.runner import run_experiment

    cfg, out, _ = tiny_run
    changed = tiny_config(cfg.data.root, model={"shared": 16})
    with pytest.raises(ConfigError, match="model.shared"):
        run_experiment(changed, out, device="cpu", resume=True, progress=False, write_report=False)



def test_resume_accepts_checkpoints_made_before_a_key_existed_while_it_has_its_default(tiny_run, tmp_path, monkeypatch):
    """Checkpoints made by an older bimodal lack the keys added since: resuming them is the same
    experiment while those keys keep their defaults, and a different one once they do not."""
    import shutil

    from experiments import runner

    cfg, out, results = tiny_run
    old = tmp_path / "old"
    shutil.copytree(out, old)
    stored = json.loads((old / "config.json").read_text())
    del stored["data"]["mirror_video"], stored["data"]["extra_av_whitening"]  # keys a newer bimodal added
    (old / "config.json").write_text(json.dumps(stored))
    monkeypatch.setattr(runner, "run_fold", lambda *a, **k: pytest.fail("resume retrained a finished fold"))
    again = runner.run_experiment(cfg, old, device="cpu", resume=True, progress=False, write_report=False)
    assert again["summary"] == results["summary"]
    (old / "config.json").write_text(json.dumps(stored))
    with pytest.raises(ConfigError, match="keys: data.mirror_video"):
        runner.run_experiment(with_overrides(cfg, {"data.mirror_video": True}, "test"), old, device="cpu", resume=True,
                              progress=False, write_report=False)

@pytest.mark.slow
def test_extract_on_real_grid_faces(tiny_run, grid_root, tmp_path, capsys):
    # `bimodal extract` with a model of the tiny demo-like run on the four real GRID clips: sound track
    # read from the .mpg, mouths tracked on 360x288 faces, windows whitened with the run's fit.
    from bimodal.cli import main

    _, out, _ = tiny_run
    feats = tmp_path / "grid.npz"
    assert main(["-q", "extract", "--model", str(out / "checkpoints" / "seed0_fold0" / "bimodal_dae.pt"),
                 "--data", str(grid_root), "--out", str(feats), "--device", "cpu"]) == 0
    assert str(feats) in capsys.readouterr().out
    z = np.load(feats, allow_pickle=False)
    assert z["features"].shape == (4, 24 * 4) and np.isfinite(z["features"]).all()
    assert z["labels"].tolist() == ["bin"] * 4 and z["utterance_ids"].tolist() == [
        "s1/bin/bbaf2n", "s1/bin/brbk7n", "s1/bin/lbax4n", "s1/bin/lwbsza"]
    assert z["features"].std(axis=0).max() > 0  # the four sentences do not all map to one point


def test_section47_rows_are_trained_and_reported(tmp_path):
    """``experiment.section47_rows`` adds the paper's section 4.7 comparisons to the video-only table."""
    from experiments.runner import run_experiment

    cfg = tiny_config(tmp_path / "corpus", experiment={"settings": ["cross_modality"], "section47_rows": True,
                                                       "n_folds": 2},
                      eval={"cross_modality_modalities": ["video"]})
    results = run_experiment(cfg, tmp_path / "run", device="cpu", progress=False)
    s = results["summary"]
    for row in ("video_shallow_ae.video", "video_dae_no_audio.video", "bimodal_dbn.video", "video_dae.video"):
        assert 0.0 <= s[f"cross_modality/video/{row}"]["mean"] <= 1.0, row
    ckpts = {p.name for p in (tmp_path / "run").rglob("*.pt")}
    assert {"video_shallow_ae.pt", "video_dae_no_audio.pt"} <= ckpts
    # the video table alone: no audio rows and no audio-only deep autoencoder
    assert not any(k.startswith("cross_modality/audio/") for k in s) and "audio_dae.pt" not in ckpts
    # without the flag the extra models are not trained
    assert "video_shallow_ae" not in pipeline.needed_models(tiny_config(tmp_path / "corpus"))


def test_mcgurk_stimuli_are_aligned_at_the_consonant_onset(tiny_run):
    """On the synthetic corpus the manifest's phoneme timings give each utterance's onset; the dub
    puts the /ga/ video's onset on the /ba/ audio's onset within one video frame."""
    from experiments.settings import _dubbed

    cfg, _, _ = tiny_run
    utts = pipeline.load_utterances(cfg, progress=False)
    assert all(u.onset_s is not None and 0.1 < u.onset_s < 0.6 for u in utts)  # leads are 0.15-0.4 s
    by = {(u.speaker, u.label, u.utterance_id[-2:]): u for u in utts}
    pairs = [(by[(s, "ba", r)], v) for (s, lab, r), v in by.items() if lab == "ga"]
    assert len(pairs) == 8
    shifts = []
    for a, v in pairs:
        src, shift = pipeline.dub_frame_map(a, v)
        stim = pipeline.mcgurk_utterance(a, v)
        assert stim.label == "ga|ba" and stim.audio is a.audio and np.array_equal(stim.video, v.video[src])
        assert len(stim.video) == int(len(a.audio) / a.sample_rate * v.fps)
        # the video's onset, now shown at v.onset_s + shift / fps, meets the audio's onset
        assert abs(v.onset_s + shift / v.fps - a.onset_s) <= 0.5 / v.fps + 1e-9
        shifts.append(shift)
    assert any(s != 0 for s in shifts)  # the random leading silences do need shifting
    assert len(_dubbed([a for a, _ in pairs] + [v for _, v in pairs], "ga", "ba")) == 8


def test_energy_onset_agrees_with_the_manifest(tiny_run):
    from data_prep.onsets import consonant_onset, energy_onset

    cfg, _, _ = tiny_run
    utts = pipeline.load_utterances(cfg, progress=False)
    err = np.array([energy_onset(u.audio, u.sample_rate) - u.onset_s for u in utts])
    assert np.abs(err).max() < 1 / 25  # within one video frame
    u = utts[0]
    assert consonant_onset(dataclasses.replace(u, onset_s=None)) == energy_onset(u.audio, u.sample_rate)


def test_noise_snr_is_that_of_the_speech_active_part(tiny_run):
    from bimodal.noise import snr_db

    cfg, _, _ = tiny_run
    manifest = json.loads((Path(cfg.data.root) / "manifest.json").read_text())["utterances"]
    phonemes = {str(Path(e["audio"]).with_suffix("")): e["phonemes"] for e in manifest}
    utts = pipeline.load_utterances(cfg, progress=False)
    span_snr = []
    for u in utts:
        noisy = pipeline.noise_transform(0.0, seed=1)(u.audio, u.sample_rate, u)
        assert abs(snr_db(u.audio, noisy, rate=u.sample_rate)) < 0.1
        speech = [p for p in phonemes[u.utterance_id] if not p[0].startswith("_")]
        a, b = int(speech[0][1] * u.sample_rate), int(speech[-1][2] * u.sample_rate)
        span_snr.append(snr_db(u.audio[a:b], noisy[a:b]))
    # the SNR over the manifest's speech span is the nominal one (the whole-utterance rule gave ~+4 dB)
    assert abs(np.mean(span_snr)) < 0.5 and np.abs(span_snr).max() < 1.5


def test_extra_audio_is_added_to_the_audio_pretraining(tiny_run, tmp_path, monkeypatch):
    import soundfile as sf

    from bimodal.rbm import RBM

    cfg, _, _ = tiny_run
    folder = tmp_path / "extra" / "sub"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    t = np.arange(8000) / 8000
    for i in range(3):  # 1 s chirps at 8 kHz, resampled like any audio
        sf.write(folder / f"x{i}.wav", (0.3 * np.sin(2 * np.pi * (200 + 300 * i) * t * (1 + t))
                                        + 0.01 * rng.normal(size=t.size)).astype(np.float32), 8000)
    seen = []
    fit = RBM.fit

    def recording_fit(self, X, *a, **k):
        seen.append((self.n_visible, int(X.shape[0])))
        return fit(self, X, *a, **k)

    monkeypatch.setattr(RBM, "fit", recording_fit)
    utts = pipeline.load_utterances(cfg, progress=False)
    tr, te = pipeline.speaker_splits(utts, cfg, 0)[0]
    counts = {}
    for extra in ("", str(tmp_path / "extra")):
        c = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, extra_audio=extra),
                                experiment=dataclasses.replace(cfg.experiment, settings=["fusion"]),
                                eval=dataclasses.replace(cfg.eval, snr_db=[]))
        fold = pipeline.prepare_fold(c, utts, tr, te, 0, "cpu", progress=False)
        seen.clear()
        pipeline.train_feature_models(c, fold, 0, "cpu", progress=False)
        counts[bool(extra)] = (seen[0], len(fold.train.audio), fold.extra_audio)
    (n_vis, rows), n_train, none = counts[False]
    assert none is None and rows == n_train and n_vis == fold.train.audio.shape[1]
    (n_vis, rows), n_train, extra_rows = counts[True]
    # 3 one-second files on a 25 fps grid: (25 - 4 + 1) windows each, whitened to the corpus's window size
    assert extra_rows.shape == (3 * 22, fold.train.audio.shape[1])
    assert rows == n_train + 3 * 22
    # the video RBM and the joint RBM still see the paired rows only
    assert [r for _, r in seen[1:3]] == [n_train, n_train]


def test_missing_extra_audio_folder_is_a_clear_error(tmp_path):
    from bimodal.errors import DataError

    with pytest.raises(DataError, match="extra_audio"):
        pipeline.load_extra_audio(tmp_path / "nope")


def test_a_foreign_manifest_gives_no_onsets(tmp_path):
    from data_prep.onsets import manifest_onsets

    (tmp_path / "manifest.json").write_text(json.dumps({"files": ["a.wav"]}))
    assert manifest_onsets(tmp_path) == {} and manifest_onsets(tmp_path / "absent") == {}


def test_tune_never_touches_the_test_split(tiny_run, monkeypatch):
    """`bimodal tune` scores candidates on held-out training groups only and returns the chosen one."""
    from experiments import tune as tune_mod

    cfg, _, _ = tiny_run
    with pytest.raises(ConfigError, match="one train/test pair"):
        tune_mod.tune(cfg, device="cpu", progress=False)  # speaker folds: every speaker is tested somewhere
    cfg = dataclasses.replace(cfg, experiment=dataclasses.replace(cfg.experiment, split="even_odd"))
    utts = pipeline.load_utterances(cfg, progress=False)
    train_idx, test_idx = pipeline.speaker_splits(utts, cfg, 0)[0]
    seen = []
    prepare = pipeline.prepare_fold

    def recording(c, u, fit_idx, va_idx, *a, **k):
        seen.append((set(fit_idx.tolist()), set(va_idx.tolist())))
        return prepare(c, u, fit_idx, va_idx, *a, **k)

    monkeypatch.setattr(pipeline, "prepare_fold", recording)
    grids = {"rbm": {"pretrain.sparsity_target": [0.01, 0.2]}, "dae": {"finetune.epochs": [1, 2]}}
    result = tune_mod.tune(cfg, seed=0, device="cpu", grids=grids, progress=False)
    assert set(result["chosen"]) == {"pretrain.sparsity_target", "finetune.epochs"}
    # each inner fold is whitened once, whatever the number of candidates
    assert len(seen) == len(tune_mod.inner_splits(cfg, utts, 0))
    for fit, held in seen:
        assert not fit & held and (fit | held) <= set(train_idx.tolist())
        assert not (fit | held) & set(test_idx.tolist())
    for st in result["stages"]:
        best = max(r["score"] for r in st["rows"])
        assert all(0.0 <= r["score"] <= 1.0 for r in st["rows"])
        chosen = [r for r in st["rows"] if r["overrides"] == st["chosen"]][0]["score"]
        if st["stage"] in tune_mod.CHEAPEST_WITHIN_ONE_SE:  # fine-tuning epochs are a cost
            assert best - st["standard_error"] <= chosen <= best and "one standard error" in st["rule"]
        else:
            assert chosen == best and st["rule"] == "best"
    assert "held-out accuracy" in tune_mod.to_markdown(result)


def test_a_cost_stage_takes_the_cheapest_candidate_within_one_standard_error():
    """Sizes (rows in grid order, smallest first): the first whose score is within sqrt(p(1-p)/n) of
    the best; other stages: the best."""
    from experiments.tune import choose

    rows = [{"overrides": {"model.shared": s}, "score": p} for s, p in
            [(256, 0.40), (512, 0.47), (1024, 0.50), (1536, 0.51)]]
    # n = 100: SE of 0.51 is 0.05, so 0.47 (512) is within it and 0.40 (256) is not
    assert choose(rows, "shared_size", 100) == {"model.shared": 512}
    # n = 1600: SE 0.0125, 1024 (0.50) is within it, 512 is not
    assert choose(rows, "shared_size", 1600) == {"model.shared": 1024}
    # n = 10000: SE 0.005, only the best itself
    assert choose(rows, "shared_size", 10000) == {"model.shared": 1536}
    assert choose(rows, "rbm", 100) == {"model.shared": 1536}
    # fine-tuning: the fewest epochs within one SE, at that number of epochs the best learning rate
    ft = [{"overrides": {"finetune.epochs": e, "finetune.lr": lr}, "score": p} for e, lr, p in
          [(30, 1e-3, 0.48), (30, 3e-4, 0.50), (100, 1e-3, 0.51), (100, 3e-4, 0.53)]]
    assert choose(ft, "dae", 208) == {"finetune.epochs": 30, "finetune.lr": 3e-4}   # SE 0.035: floor 0.495
    assert choose(ft, "dae", 10000) == {"finetune.epochs": 100, "finetune.lr": 3e-4}  # SE 0.005
    # numbers are costs by value, whatever the grid's order; a grid without the cost key takes the best
    assert choose(rows[::-1], "shared_size", 100) == {"model.shared": 512}
    lr_only = [{"overrides": {"finetune.lr": lr}, "score": p} for lr, p in [(1e-3, 0.50), (3e-4, 0.52)]]
    assert choose(lr_only, "dae", 100) == {"finetune.lr": 3e-4}
    # a stage of named candidates: the grid's order is the cost order ("pca" before "conv", though
    # "conv" sorts first), so the cheaper one is kept within one SE and the other must beat it by more
    fronts = [{"overrides": {"data.prep.video_frontend": f}, "score": p} for f, p in [("pca", 0.47), ("conv", 0.51)]]
    assert choose(fronts, "frontend", 100) == {"data.prep.video_frontend": "pca"}
    assert choose(fronts, "frontend", 10000) == {"data.prep.video_frontend": "conv"}


def test_tune_scores_shared_sizes_on_the_video_autoencoder(tiny_run, monkeypatch):
    """The shared_size stage trains the deep autoencoder at each size, chooses with the standard error
    of all held-out utterances, and records the rule and its numbers."""
    from experiments import tune as tune_mod

    cfg, _, _ = tiny_run
    seen, choose = [], tune_mod.choose
    monkeypatch.setattr(tune_mod, "choose", lambda rows, stage, n: seen.append((stage, n)) or choose(rows, stage, n))
    cfg = dataclasses.replace(cfg, experiment=dataclasses.replace(cfg.experiment, split="even_odd"))
    result = tune_mod.tune(cfg, seed=0, device="cpu", grids={"shared_size": {"model.shared": [4, 16]}},
                           progress=False)
    (stage,) = result["stages"]
    assert [r["overrides"]["model.shared"] for r in stage["rows"]] == [4, 16]
    utts = pipeline.load_utterances(cfg, progress=False)
    held_out = sum(len(b) for _, b in tune_mod.inner_splits(cfg, utts, 0))
    assert seen == [("shared_size", held_out)]
    assert stage["n_held_out"] == held_out and 0 < stage["standard_error"] < 0.5
    assert "within one standard error" in tune_mod.to_markdown(result)


def test_tune_mirror_stage_adds_mirrored_windows_to_the_candidate_that_asks(tiny_run, monkeypatch):
    from experiments import tune as tune_mod

    cfg, _, _ = tiny_run
    cfg = dataclasses.replace(cfg, experiment=dataclasses.replace(cfg.experiment, split="even_odd"),
                              data=dataclasses.replace(cfg.data, mirror_video=True))  # the folds are made without
    seen = _record_rbm_fits(monkeypatch)
    result = tune_mod.tune(cfg, seed=0, device="cpu", grids={"mirror": tune_mod.MIRROR_GRID}, progress=False)
    (stage,) = result["stages"]
    assert [r["overrides"] for r in stage["rows"]] == [{"data.mirror_video": False}, {"data.mirror_video": True}]
    n_folds = len(result["splits"])
    rows = [n for _, _, n in seen]
    per_candidate = len(rows) // 2
    plain, mirrored = rows[:per_candidate], rows[per_candidate:]
    assert per_candidate % n_folds == 0 and [2 * n for n in plain] == mirrored


def test_tune_sparsity_update_stage_scores_video_rbms_of_each_form(tiny_run, monkeypatch):
    """The sparsity_update stage trains only the video RBM stack per candidate (no autoencoder),
    each with the candidate's sparsity form, and takes the best score."""
    from bimodal.rbm import RBM
    from experiments import tune as tune_mod

    cfg, _, _ = tiny_run
    cfg = dataclasses.replace(cfg, experiment=dataclasses.replace(cfg.experiment, split="even_odd"))
    forms, fit = [], RBM.fit
    monkeypatch.setattr(RBM, "fit", lambda self, X, **kw: forms.append(self.sparsity_update) or fit(self, X, **kw))
    monkeypatch.setattr(pipeline, "fine_tune_model", lambda *a, **k: pytest.fail("no autoencoder in an RBM stage"))
    grid = {"pretrain.sparsity_update": ["velocity", "separate"], "pretrain.sparsity_cost": [1.0]}
    result = tune_mod.tune(cfg, seed=0, device="cpu", grids={"sparsity_update": grid}, progress=False)
    (stage,) = result["stages"]
    assert [r["overrides"]["pretrain.sparsity_update"] for r in stage["rows"]] == ["velocity", "separate"]
    half = len(forms) // 2
    assert half and forms[:half] == ["velocity"] * half and forms[half:] == ["separate"] * half
    assert stage["rule"] == "best" and stage["chosen"] == max(stage["rows"], key=lambda r: r["score"])["overrides"]


def test_tune_video_rbm_stage_sets_only_the_first_video_rbms_sparsity(tiny_run, monkeypatch):
    """Stage video_rbm varies the sparsity of the RBM it scores (the first video RBM) and of no other."""
    from bimodal.rbm import RBM
    from experiments import tune as tune_mod

    assert set(tune_mod.STAGES["video_rbm"]) == {"pretrain.video_sparsity_target", "pretrain.video_sparsity_cost"}
    cfg, _, _ = tiny_run
    cfg = dataclasses.replace(cfg, experiment=dataclasses.replace(cfg.experiment, split="even_odd"),
                              model=dataclasses.replace(cfg.model, video_hidden=[24, 12]),
                              pretrain=dataclasses.replace(cfg.pretrain, sparsity_target=0.05))
    fits, fit = [], RBM.fit
    monkeypatch.setattr(RBM, "fit", lambda self, X, **kw: fits.append((self.visible, self.sparsity_target))
                        or fit(self, X, **kw))
    grid = {"pretrain.video_sparsity_target": [0.01, 0.07], "pretrain.video_sparsity_cost": [3.0]}
    result = tune_mod.tune(cfg, seed=0, device="cpu", grids={"video_rbm": grid}, progress=False)
    first = [t for kind, t in fits if kind == "gaussian"]
    half = len(first) // 2
    assert half and first == [0.01] * half + [0.07] * half
    deeper = [t for kind, t in fits if kind == "bernoulli"]  # the second video RBM keeps every RBM's
    assert len(deeper) == len(first) and set(deeper) == {0.05}
    assert result["chosen"] in [r["overrides"] for r in result["stages"][0]["rows"]]


def test_tune_refuses_every_rbms_sparsity_when_the_video_rbm_has_its_own(tiny_run, monkeypatch):
    """pretrain.sparsity_* does not reach a first video RBM with its own sparsity: the stages scored
    on it refuse to vary them (before any training), and the default stages tune its own instead."""
    from bimodal.rbm import RBM
    from experiments import tune as tune_mod

    cfg, _, _ = tiny_run
    own = dataclasses.replace(cfg, experiment=dataclasses.replace(cfg.experiment, split="even_odd"),
                              pretrain=dataclasses.replace(cfg.pretrain, video_sparsity_target=0.01))
    monkeypatch.setattr(RBM, "fit", lambda *a, **k: pytest.fail("refused grids train nothing"))
    for grids in ({"rbm": tune_mod.SPARSITY_GRID}, {"sparsity_update": {"pretrain.sparsity_target": [0.01, 0.05]}}):
        with pytest.raises(ConfigError, match="video_rbm"):
            tune_mod.tune(own, seed=0, device="cpu", grids=grids, progress=False)
    # the cost alone still reaches it (no own cost), and the shipped stages vary the video RBM's own keys
    tune_mod.check_grids(own, {"rbm": {"pretrain.sparsity_cost": [1.0, 3.0]}})
    tune_mod.check_grids(own, {"sparsity_update": tune_mod.SPARSITY_UPDATE_GRID})
    utts = pipeline.load_utterances(own, progress=False)
    assert list(tune_mod.default_grids(own, utts))[-2:] == ["video_rbm", "dae"]
    assert "rbm" in tune_mod.default_grids(cfg, utts)


def test_tune_frontend_stage_whitens_each_front_end_once_per_fold(tiny_run, monkeypatch):
    """The conv candidate's folds are prepared with a conv autoencoder trained on each inner fold's
    fitting crops only (never a held-out one), the pca candidate's without; each front end's folds
    are made once, not per candidate."""
    from data_prep.dataset import Preprocessor
    from experiments import tune as tune_mod

    cfg, _, _ = tiny_run
    cfg = dataclasses.replace(cfg, experiment=dataclasses.replace(cfg.experiment, split="even_odd"))
    cfg = with_overrides(cfg, {"data.prep.conv_code_dim": 8, "data.prep.conv_channels": 4,
                               "data.prep.conv_epochs": 1}, "test")
    fits, fit = [], Preprocessor.fit

    def recording_fit(self, utts, *a, **k):
        fits.append((self.cfg.video_frontend, {u.utterance_id for u in utts}))
        out = fit(self, utts, *a, **k)
        assert (self.video_model is not None) == (self.cfg.video_frontend == "conv")
        return out

    monkeypatch.setattr(Preprocessor, "fit", recording_fit)
    scored_on, score = [], tune_mod.candidate_score

    def recording_score(c, folds, *a, **k):  # which folds each candidate is scored on
        scored_on.append((pipeline.prep_config(c).video_frontend, {f.prep.cfg.video_frontend for f in folds}))
        return score(c, folds, *a, **k)

    monkeypatch.setattr(tune_mod, "candidate_score", recording_score)
    result = tune_mod.tune(cfg, seed=0, device="cpu", grids={"frontend": tune_mod.FRONTEND_GRID}, progress=False)
    assert scored_on == [("pca", {"pca"}), ("conv", {"conv"})]
    (stage,) = result["stages"]
    assert [r["overrides"] for r in stage["rows"]] == [{"data.prep.video_frontend": "pca"},
                                                      {"data.prep.video_frontend": "conv"}]
    n_folds = len(result["splits"])
    assert [f for f, _ in fits] == ["pca"] * n_folds + ["conv"] * n_folds
    utts = pipeline.load_utterances(cfg, progress=False)
    fitting = [{utts[i].utterance_id for i in a} for a, _ in tune_mod.inner_splits(cfg, utts, 0)]
    assert [ids for _, ids in fits] == fitting * 2
    assert "cheapest first" in stage["rule"] and stage["chosen"] in [r["overrides"] for r in stage["rows"]]


def test_tune_refuses_a_grid_it_cannot_follow_before_training(tiny_run, monkeypatch):
    """A grid over the corpus, or a candidate the config rejects in a later stage, fails before any fold
    is whitened."""
    from experiments import tune as tune_mod

    cfg, _, _ = tiny_run
    cfg = dataclasses.replace(cfg, experiment=dataclasses.replace(cfg.experiment, split="even_odd"))
    monkeypatch.setattr(pipeline, "prepare_fold", lambda *a, **k: pytest.fail("a fold was prepared"))
    with pytest.raises(ConfigError, match="data.root"):
        tune_mod.tune(cfg, seed=0, device="cpu", grids={"dae": {"data.root": ["/x"]}}, progress=False)
    too_wide = {"data.prep.video_frontend": ["conv"], "data.prep.conv_code_dim": [4]}  # video_pca is 8
    with pytest.raises(ConfigError, match="conv_code_dim"):
        tune_mod.tune(cfg, seed=0, device="cpu", grids={"dae": tune_mod.FINETUNE_GRID, "frontend": too_wide},
                      progress=False)
    # valid alone, invalid after a choice an earlier stage can make (conv codes of 8 dims, 16 kept)
    later = {"frontend": {"data.prep.video_frontend": ["pca", "conv"], "data.prep.conv_code_dim": [8]},
             "pca": {"data.prep.video_pca": [16]}}
    with pytest.raises(ConfigError, match="conv_code_dim"):
        tune_mod.tune(cfg, seed=0, device="cpu", grids=later, progress=False)
    for grid, match in [({"data.prep.roi_size": [[8, 8]]}, "the frames"), ({"experiment.split": ["kfold"]}, "the split"),
                        ({"eval.snr_db": [[0.0]]}, "the split"), ({"finetune.lr": []}, "empty grid")]:
        with pytest.raises(ConfigError, match=match):
            tune_mod.tune(cfg, seed=0, device="cpu", grids={"dae": grid}, progress=False)


def _chirp_folder(root: Path, n: int = 3) -> Path:
    """``n`` one-second chirps at 8 kHz under ``root/sub``, as unlabelled extra audio; returns ``root``."""
    import soundfile as sf

    folder = root / "sub"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    t = np.arange(8000) / 8000
    for i in range(n):
        sf.write(folder / f"x{i}.wav", (0.3 * np.sin(2 * np.pi * (200 + 300 * i) * t * (1 + t))
                                        + 0.01 * rng.normal(size=t.size)).astype(np.float32), 8000)
    return root


def _record_rbm_fits(monkeypatch) -> list:
    """Spy on every RBM fit: (n_visible, n_hidden, rows) per call."""
    from bimodal.rbm import RBM

    seen, fit = [], RBM.fit

    def recording_fit(self, X, *a, **k):
        seen.append((self.n_visible, self.n_hidden, int(X.shape[0])))
        return fit(self, X, *a, **k)

    monkeypatch.setattr(RBM, "fit", recording_fit)
    return seen


def test_tune_trains_candidates_with_the_pipelines_recipe(tiny_run, tmp_path, monkeypatch):
    """Every candidate is trained by the pipeline's functions: the audio DBN sees data.extra_audio,
    the RBM stage pretrains the video DBN alone, and pretrain.enabled = false trains no RBM."""
    from experiments import tune as tune_mod

    cfg, _, _ = tiny_run
    extra = _chirp_folder(tmp_path / "extra")
    cfg = dataclasses.replace(cfg, experiment=dataclasses.replace(cfg.experiment, split="even_odd"),
                              data=dataclasses.replace(cfg.data, extra_audio=str(extra)))
    folds, prepare = [], pipeline.prepare_fold

    def keep_fold(*a, **k):
        folds.append(prepare(*a, **k))
        return folds[-1]

    monkeypatch.setattr(pipeline, "prepare_fold", keep_fold)
    seen = _record_rbm_fits(monkeypatch)
    grids = {"rbm": {"pretrain.sparsity_target": [0.05]}, "dae": {"finetune.epochs": [1]}}
    tune_mod.tune(cfg, seed=0, device="cpu", grids=grids, progress=False)
    n_audio, n_video = folds[0].train.audio.shape[1], folds[0].train.video.shape[1]
    assert n_audio != n_video  # the spy tells the first RBMs apart by their size
    assert all(f.extra_audio is not None and len(f.extra_audio) == 3 * 22 for f in folds)
    first_audio = [rows for nv, nh, rows in seen if (nv, nh) == (n_audio, 24)]
    first_video = [rows for nv, nh, rows in seen if (nv, nh) == (n_video, 24)]
    # stage "rbm": the video RBM of each inner fold, no audio RBM; stage "dae": both, audio with the extra rows
    assert first_video == [len(f.learning.video) for f in folds] * 2
    assert first_audio == [len(f.learning.audio) + len(f.extra_audio) for f in folds]

    seen.clear()
    off = dataclasses.replace(cfg, pretrain=dataclasses.replace(cfg.pretrain, enabled=False))
    result = tune_mod.tune(off, seed=0, device="cpu", grids={"dae": {"finetune.epochs": [1]}}, progress=False)
    assert seen == [] and [st["stage"] for st in result["stages"]] == ["dae"]
    with pytest.raises(ConfigError, match="pretrain.enabled"):
        tune_mod.tune(off, seed=0, device="cpu", grids=grids, progress=False)


def test_pretraining_disabled_trains_no_rbm(tiny_run, monkeypatch):
    """pretrain.enabled = false: the bimodal DBN keeps its random initialisation (its rbm.* / dbn
    features are a random network's) and the autoencoders start from random weights."""
    cfg, _, _ = tiny_run
    cfg = dataclasses.replace(cfg, pretrain=dataclasses.replace(cfg.pretrain, enabled=False),
                              experiment=dataclasses.replace(cfg.experiment, settings=["fusion"]),
                              eval=dataclasses.replace(cfg.eval, snr_db=[]))
    utts = pipeline.load_utterances(cfg, progress=False)
    tr, te = pipeline.speaker_splits(utts, cfg, 0)[0]
    fold = pipeline.prepare_fold(cfg, utts, tr, te, 0, "cpu", progress=False)
    seen = _record_rbm_fits(monkeypatch)
    models = pipeline.train_feature_models(cfg, fold, 0, "cpu", progress=False)
    assert seen == []
    dbn = models["bimodal_dbn"]
    init = pipeline.build_bimodal_dbn(cfg, fold.train.audio.shape[1], fold.train.video.shape[1], 0, "cpu")
    for name, t in init.state_dict().items():
        assert torch.equal(dbn.state_dict()[name], t), name
    assert dbn.history == {"audio": [], "video": [], "joint": []}  # never fitted
