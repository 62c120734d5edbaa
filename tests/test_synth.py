"""The embedded synthetic corpus: eSpeak audio with phoneme timings, rendered mouth video, layout."""
import json
import time

import numpy as np
import pytest
import soundfile as sf

from bimodal.errors import ConfigError, DataError
from data_prep.synth import espeak
from data_prep.synth.corpus import ACCENTS, VARIANTS, generate_corpus, make_speakers
from data_prep.synth.render import read_avi_gray
from data_prep.synth.visemes import viseme_track

VOCAB = ("A", "S", "ba", "ga")


def _dark_interior(frames):
    """Per-frame count of dark (mouth-interior) pixels in the centre of the frame."""
    frames = np.asarray(frames, dtype=np.float32)
    centre = frames[:, 12:48, 10:70]
    skin = np.median(frames.reshape(len(frames), -1), axis=1)[:, None, None]
    return (centre < 0.4 * skin).sum(axis=(1, 2))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "c"
    generate_corpus(out, seed=0, n_speakers=2, repetitions=2, vocabulary=VOCAB, workers=1, progress=False)
    return out, json.loads((out / "manifest.json").read_text())


def test_phoneme_events_are_timed_in_order():
    syn = espeak.synthesize("bah", voice="en")
    names = [p.name.lstrip("',") for p in syn.phonemes]
    assert names[:2] == ["b", "A:"], names
    starts = [p.start for p in syn.phonemes]
    assert all(a < b for a, b in zip(starts, starts[1:])), starts
    assert 0 <= starts[0] and syn.phonemes[-1].end <= syn.duration + 1e-9
    assert syn.sample_rate == 22050 and 0.1 < syn.duration < 1.0
    assert [espeak.synthesize(t).phonemes[0].name for t in ("gah", "dah")] == ["g", "d"]


def test_synthesis_does_not_depend_on_what_was_said_before():
    first = espeak.synthesize("seven", voice="en+m1")
    espeak.synthesize("W", voice="en-us+f2", rate=250, pitch=80)
    again = espeak.synthesize("seven", voice="en+m1")
    np.testing.assert_array_equal(first.audio, again.audio)


def test_voice_pool_is_deterministic_across_processes():
    """eSpeak variants that read random/uninitialised state would break worker-independence."""
    import hashlib
    import subprocess
    import sys

    voices = [f"{a}+{v}" for v in VARIANTS for a in ACCENTS]
    code = ("import hashlib, sys; from data_prep.synth import espeak\n"
            "print(' '.join(hashlib.md5(espeak.synthesize('F', v).audio.tobytes()).hexdigest() for v in sys.argv[1:]))")
    other = subprocess.run([sys.executable, "-c", code, *voices], capture_output=True, text=True, check=True).stdout
    here = [hashlib.md5(espeak.synthesize("F", v).audio.tobytes()).hexdigest() for v in voices]
    assert other.split() == here


def test_bad_voice_and_vocabulary_are_rejected(tmp_path):
    with pytest.raises(ConfigError, match="no-such-voice"):
        espeak.synthesize("A", voice="no-such-voice")
    with pytest.raises(ConfigError, match="'Q7'"):
        generate_corpus(tmp_path / "x", vocabulary=("Q7",), progress=False)


def test_viseme_track_closes_lips_only_for_bilabials():
    ba = viseme_track([("_", 0.0, 0.2), ("b", 0.2, 0.23), ("A:", 0.23, 0.5), ("_", 0.5, 0.6)], 15)
    ga = viseme_track([("_", 0.0, 0.2), ("g", 0.2, 0.23), ("A:", 0.23, 0.5), ("_", 0.5, 0.6)], 15)
    da = viseme_track([("_", 0.0, 0.2), ("d", 0.2, 0.23), ("A:", 0.23, 0.5), ("_", 0.5, 0.6)], 15)
    assert ba[:, 0].min() == 0.0 and ga[:, 0].min() > 0.05
    k = 5  # the frame over the consonant
    assert ba[k, 0] < da[k, 0] < ga[k, 0]
    assert da[k, 4] > ga[k, 4]  # alveolar: tongue tip visible; velar: not


def test_layout_stems_and_durations(corpus):
    out, manifest = corpus
    assert len(manifest["utterances"]) == 2 * len(VOCAB) * 2
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["s01", "s02"]
    for u in manifest["utterances"]:
        wav, avi = out / u["audio"], out / u["video"]
        assert wav.stem == avi.stem == u["utterance"] and wav.parent == avi.parent == out / u["speaker"] / u["label"]
        audio, rate = sf.read(wav)
        frames = read_avi_gray(avi)
        assert rate == 16000 and frames.shape == (u["n_frames"], 60, 80)
        assert len(audio) == u["n_frames"] * 640
        starts = [p[1] for p in u["phonemes"]]
        assert starts == sorted(starts) and starts[0] >= u["lead_silence_s"] - 1e-4
        assert u["phonemes"][-1][2] <= u["duration_s"]
    assert manifest["params"]["seed"] == 0 and manifest["espeak_version"]
    assert set(manifest["speakers"]) == {"s01", "s02"}


def test_same_seed_identical_any_workers_other_seed_differs(corpus, tmp_path):
    out, manifest = corpus
    again = generate_corpus(tmp_path / "again", seed=0, n_speakers=2, repetitions=1, vocabulary=("ba", "S"),
                            workers=2, progress=False)
    other = generate_corpus(tmp_path / "other", seed=1, n_speakers=1, repetitions=1, vocabulary=("ba",),
                            workers=1, progress=False)
    for spk in ("s01", "s02"):
        for label in ("ba", "S"):
            rel = f"{spk}/{label}/{spk}_{label}_r1"
            assert (out / f"{rel}.wav").read_bytes() == (again / f"{rel}.wav").read_bytes()
            np.testing.assert_array_equal(read_avi_gray(out / f"{rel}.avi"), read_avi_gray(again / f"{rel}.avi"))
    rel = "s01/ba/s01_ba_r1"
    assert (out / f"{rel}.wav").read_bytes() != (other / f"{rel}.wav").read_bytes()
    assert make_speakers(0, 1)[0] != make_speakers(1, 1)[0]


def _mean_log_spectrum(path):
    audio, _ = sf.read(path)
    frames = np.lib.stride_tricks.sliding_window_view(audio, 400)[::160]
    energy = (frames ** 2).mean(axis=1)
    speech = frames[energy > 0.05 * energy.max()]
    return np.log(np.abs(np.fft.rfft(speech * np.hanning(400), axis=1)) ** 2 + 1e-8).mean(axis=0)


def test_different_letters_sound_different(corpus):
    out, _ = corpus
    for spk in ("s01", "s02"):
        a1, a2 = (_mean_log_spectrum(out / f"{spk}/A/{spk}_A_r{r}.wav") for r in (1, 2))
        s1 = _mean_log_spectrum(out / f"{spk}/S/{spk}_S_r1.wav")
        assert np.linalg.norm(a1 - s1) > 2 * np.linalg.norm(a1 - a2)


def test_ba_closes_the_lips_and_ga_does_not(corpus):
    out, manifest = corpus
    for u in manifest["utterances"]:
        if u["label"] in ("ba", "ga"):
            dark = _dark_interior(read_avi_gray(out / u["video"]))
            if u["label"] == "ba":
                assert dark.min() <= 3, (u["utterance"], dark)
            else:
                assert dark.min() > 20, (u["utterance"], dark)
            assert dark.max() > 150  # the vowel opens the mouth wide


def test_speakers_look_different(corpus):
    out, _ = corpus
    first = [read_avi_gray(out / f"{s}/A/{s}_A_r1.avi")[0].astype(float) for s in ("s01", "s02")]
    assert np.abs(first[0] - first[1]).mean() > 5


def test_reuse_and_refusal_to_mix(tmp_path):
    out = tmp_path / "c"
    kw = dict(seed=3, n_speakers=1, repetitions=1, vocabulary=("da",), workers=1, progress=False)
    generate_corpus(out, **kw)
    manifest = out / "manifest.json"
    stamp = manifest.stat().st_mtime_ns
    t0 = time.perf_counter()
    assert generate_corpus(out, **kw) == out
    assert time.perf_counter() - t0 < 1.0 and manifest.stat().st_mtime_ns == stamp
    with pytest.raises(DataError, match="overwrite"):
        generate_corpus(out, **{**kw, "seed": 4})
    generate_corpus(out, **{**kw, "seed": 4}, overwrite=True)
    assert json.loads(manifest.read_text())["params"]["seed"] == 4
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        generate_corpus(tmp_path / "foreign", **kw, overwrite=True)
