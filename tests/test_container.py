"""Sound tracks inside video containers: reading, stereo→mono, resampling and the skip list."""
import numpy as np
import pytest
import soundfile as sf

from bimodal.errors import DataError
from data_prep.audio import resample
from data_prep.container import load_container_audio
from data_prep.readers import read_cuave, read_folder, scan_folder
from media import write_av

FPS, T = 25, 50  # 2 s of video


def tone(freq, rate, seconds, amp):
    t = np.arange(int(round(seconds * rate))) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def frames(T=T, H=64, W=80, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (T, H, W), dtype=np.uint8)


def dominant_hz(wave, rate):
    spec = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return np.fft.rfftfreq(len(wave), 1 / rate)[np.argmax(spec)]


def test_stereo_track_is_mixed_to_mono_at_its_own_rate(tmp_path):
    rate = 22050
    left, right = tone(440, rate, T / FPS, 0.5), tone(1000, rate, T / FPS, 0.25)
    p = write_av(tmp_path / "clip.avi", frames(), FPS, np.stack([left, right]), rate)
    wave, r = load_container_audio(p)
    assert r == rate and wave.dtype == np.float32 and wave.shape == left.shape
    # 16-bit PCM in the file: mono = (L + R) / 2 to within one quantisation step
    np.testing.assert_allclose(wave, (left + right) / 2, atol=2 / 32768)


def test_folder_reads_embedded_audio_and_a_wav_beside_the_video_wins(tmp_path):
    rate = 22050
    d = tmp_path / "s1" / "yes"
    d.mkdir(parents=True)
    write_av(d / "u0.avi", frames(), FPS, tone(440, rate, T / FPS, 0.5), rate)
    write_av(d / "u1.mp4", frames(), FPS, tone(440, rate, T / FPS, 0.5), rate)
    sf.write(d / "u1.wav", tone(300, 8000, T / FPS, 0.5), 8000)  # beside u1: used instead of its track
    e = {x.utterance_id: x for x in scan_folder(tmp_path)}
    assert e["s1/yes/u0"].audio_path == e["s1/yes/u0"].video_path and e["s1/yes/u1"].audio_path.endswith(".wav")
    u0, u1 = read_folder(tmp_path, progress=False)
    assert (u0.sample_rate, len(u0.audio), u0.video.shape, u0.fps) == (rate, 2 * rate, (T, 64, 80), FPS)
    assert (u1.sample_rate, len(u1.audio)) == (8000, 16000)
    assert dominant_hz(u0.audio, rate) == pytest.approx(440, abs=1)
    assert dominant_hz(u1.audio, 8000) == pytest.approx(300, abs=1)
    # The Preprocessor's resampling takes the container's rate like any other: same tone at 16 kHz.
    w16 = resample(u0.audio, u0.sample_rate, 16000, device="cpu")
    assert len(w16) == 32000 and dominant_hz(w16, 16000) == pytest.approx(440, abs=1)


def test_no_sound_track_and_half_length_track_are_listed_skips(tmp_path):
    rate = 16000
    d = tmp_path / "s1" / "no"
    d.mkdir(parents=True)
    write_av(d / "good.avi", frames(), FPS, tone(440, rate, T / FPS, 0.5), rate)
    write_av(d / "silent.avi", frames(), FPS)                                   # no audio stream
    write_av(d / "half.avi", frames(), FPS, tone(440, rate, T / FPS / 2, 0.5), rate)  # 1 s of sound, 2 s of video
    with pytest.warns(UserWarning, match=r"skipped 2 unusable") as rec:
        utts = read_folder(tmp_path, progress=False)
    assert [u.utterance_id for u in utts] == ["s1/no/good"]
    msg = str(rec[0].message)
    assert "half.avi: field 'duration': audio lasts 1.000 s but video lasts 2.000 s" in msg
    assert "silent.avi: field 'audio': no audio stream in the container" in msg
    with pytest.raises(DataError, match=r"half.avi.*audio lasts 1.000 s"):
        read_folder(tmp_path, strict=True, progress=False)
    (d / "good.avi").unlink()
    with pytest.warns(UserWarning), pytest.raises(DataError, match=r"no usable utterances found \(2 skipped\)"):
        read_folder(tmp_path, progress=False)


def test_cuave_cuts_the_embedded_sound_track_with_the_video(tmp_path):
    fps, rate, n = 25, 16000, 40
    ramp = np.linspace(0, 0.8, int(n / fps * rate)).astype(np.float32)  # sample value tells the time
    write_av(tmp_path / "s03f.avi", frames(n), fps, ramp, rate)
    (tmp_path / "s03f.txt").write_text("1 10 one\n21 40 two\n")
    write_av(tmp_path / "s04m.avi", frames(n), fps)  # no sound track, no wav → skipped, named
    (tmp_path / "s04m.txt").write_text("1 10 one\n")
    with pytest.warns(UserWarning, match=r"s04m.avi.*no audio stream"):
        utts = read_cuave(tmp_path, progress=False)
    assert [(u.label, u.speaker, u.video.shape[0], len(u.audio)) for u in utts] == [
        ("one", "s03f", 10, 6400), ("two", "s03f", 20, 12800)]
    assert utts[1].audio[0] == pytest.approx(0.4, abs=1e-3)  # frame 21 starts at 0.8 s = half the ramp
