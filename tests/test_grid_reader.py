"""The GRID reader (data_prep/grid.py): frame-exact word cuts, the two views, the skip list, ``data check``.

The tiny trees are written here: 25 fps, 64x80 frames whose grey level is 8 x the frame index (so a
cut tells which frames it holds), 16 kHz PCM sound tracks (lossless: samples compare exactly),
CRLF ``.align`` files. One slow test reads the shared speaker s1 (700 sentences)."""
import time
import warnings
from collections import Counter

import numpy as np
import pytest

from bimodal.cli import main
from bimodal.errors import ConfigError, DataError
from data_prep import grid
from data_prep.container import load_container_audio
from data_prep.grid import (GRID_DIGITS, GRID_LETTERS, cut_span, parse_align, read_grid, read_grid_recordings,
                            read_grid_views, resolve_vocabulary, views_of)
from data_prep.readers import READERS
from media import write_av

FPS, RATE, H, W = 25, 16000, 64, 80
PER_FRAME = RATE // FPS  # 640 samples per video frame

# sentence id -> (speaker, frames, .align lines (start, end, word) in 1/25000 s, tone range in s)
GOOD = {
    "bbat2n": ("s1", 30, [(0, 2000, "sil"), (2000, 6000, "bin"), (6000, 9500, "blue"), (9500, 11000, "at"),
                          (11000, 14300, "a"), (14300, 21100, "two"), (21100, 26000, "now"), (26000, 30000, "sil")],
               (0.572, 0.844)),
    # speech from the first frame to the last: the margin is clipped at both edges; "sp" is no word
    "lgbz0a": ("s1", 25, [(0, 500, "sp"), (500, 3000, "zero"), (3000, 8000, "bin"), (8000, 9000, "sp"),
                          (9000, 20000, "green"), (20000, 25000, "nine")], (0.0, 1.0)),
    # "seven" is timed past the 30-frame (1.2 s) video: that token is skipped, "three" is kept
    "over7n": ("s1", 30, [(0, 2000, "sil"), (2000, 8000, "three"), (8000, 20000, "blue"), (20000, 31000, "seven")],
               (0.08, 0.32)),
    "lbay8a": ("s2", 30, [(0, 3000, "sil"), (3000, 9000, "lay"), (9000, 14000, "y"), (14000, 21000, "eight"),
                          (21000, 30000, "sil")], (0.56, 0.84)),
}


def frames(n):
    return np.stack([np.full((H, W), 8 * k, np.uint8) for k in range(n)])


def frame_index(video):
    """The frame numbers a cut holds, read back from the grey levels."""
    return np.rint(video.reshape(len(video), -1).mean(axis=1) / 8).astype(int)


def sound(seconds, tone=None, freq=440.0):
    """Silence with a tone of ``freq`` Hz in ``tone`` = (start, end) s."""
    t = np.arange(int(round(seconds * RATE))) / RATE
    wave = np.zeros_like(t, dtype=np.float32)
    if tone is not None:
        on = (t >= tone[0]) & (t < tone[1])
        wave[on] = 0.5 * np.sin(2 * np.pi * freq * t[on])
    return wave


def dominant_hz(wave):
    spec = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return np.fft.rfftfreq(len(wave), 1 / RATE)[np.argmax(spec)]


def write_align(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(f"{s} {e} {w}\r\n" for s, e, w in lines).encode())  # CRLF, as GRID ships them


def write_clip(root, speaker, sid, n, lines, tone=None, audio_s=None, ext=".mkv"):
    (root / speaker).mkdir(parents=True, exist_ok=True)
    write_av(root / speaker / f"{sid}{ext}", frames(n), FPS, sound(n / FPS if audio_s is None else audio_s, tone), RATE)
    if lines is not None:
        write_align(root / "alignments" / speaker / f"{sid}.align", lines)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """4 good recordings (s1: 3, s2: 1) and 3 the reader must skip, plus a stray video in alignments/."""
    root = tmp_path_factory.mktemp("grid")
    for sid, (spk, n, lines, tone) in GOOD.items():
        write_clip(root, spk, sid, n, lines, tone, ext=".avi" if sid == "lgbz0a" else ".mkv")
    write_clip(root, "s1", "noalign", 30, None)                                          # no .align
    (root / "s2" / "junk.mpg").write_bytes(np.random.default_rng(0).bytes(4000))         # not a video
    write_align(root / "alignments" / "s2" / "junk.align", GOOD["bbat2n"][2])
    write_clip(root, "s2", "short", 30, GOOD["bbat2n"][2], audio_s=0.5)  # 0.5 s of sound, 1.2 s of video
    write_av(root / "alignments" / "stray.mkv", frames(10), FPS, sound(0.4), RATE)       # alignments/ is no speaker
    return root


def reference_audio(tree, sid):
    spk = GOOD[sid][0]
    path = next((tree / spk).glob(f"{sid}.*"))
    return load_container_audio(path)[0]


def read(root, **kwargs):
    """read_grid_views with its warnings' texts."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tokens, sentences = read_grid_views(root, progress=False, **kwargs)
    return tokens, sentences, [str(w.message) for w in caught]


def by_id(utts):
    return {u.utterance_id: u for u in utts}


# --------------------------------------------------------------------------- the cutting rule
def test_cut_span_rule():
    # 0.44 s - 40 ms lands exactly on frame 10: the float error must not push it to frame 9
    assert cut_span(0.44, 0.572, 0.04, 25, 30, RATE, 19200) == (10, 16, 6400, 10240)
    assert cut_span(0.572, 0.844, 0.04, 25, 30, RATE, 19200) == (13, 23, 8320, 14720)
    assert cut_span(0.572, 0.844, 0.0, 25, 30, RATE, 19200) == (14, 22, 8960, 14080)
    assert cut_span(0.02, 1.2, 0.04, 25, 30, RATE, 19200) == (0, 30, 0, 19200)  # margins clipped at the edges
    # GRID: 75 frames, MP2 audio 22 ms (972 samples, under a frame's 1764) short: clipped to what there is
    assert cut_span(2.5, 2.98, 0.04, 25, 75, 44100, 131328) == (61, 75, 107604, 131328)
    with pytest.raises(DataError, match=r"ends past the video \(30 frames at 25 fps = 1.200 s\): overruns the clip"):
        cut_span(0.8, 1.24, 0.04, 25, 30, RATE, 19200)
    with pytest.raises(DataError, match=r"needs sound up to 1.160 s but the sound track ends at 1.000 s"):
        cut_span(0.8, 1.1, 0.04, 25, 30, RATE, 16000)
    with pytest.raises(DataError, match=r"covers no video frame"):
        cut_span(0.4, 0.4, 0.0, 25, 30, RATE, 19200)


# --------------------------------------------------------------------------- tokens
def test_tokens_are_cut_to_the_exact_frames_and_samples(tree):
    tokens, _, _ = read(tree)
    assert [t.utterance_id for t in tokens] == ["s1/bbat2n/5-two", "s1/lgbz0a/1-zero", "s1/lgbz0a/5-nine",
                                                "s1/over7n/1-three", "s2/lbay8a/3-eight"]
    two = by_id(tokens)["s1/bbat2n/5-two"]
    assert (two.label, two.speaker, two.group, two.fps, two.sample_rate) == ("two", "s1", "s1/bbat2n", FPS, RATE)
    assert two.path == str(tree / "s1" / "bbat2n.mkv") and two.video.shape == (10, H, W)
    # 0.572-0.844 s widened by 40 ms: frames 13..22, and exactly the samples of those frames
    assert frame_index(two.video).tolist() == list(range(13, 23))
    np.testing.assert_array_equal(two.audio, reference_audio(tree, "bbat2n")[13 * PER_FRAME:23 * PER_FRAME])
    assert dominant_hz(two.audio) == pytest.approx(440, abs=2)
    assert two.video.base is None and two.audio.base is None  # copies: the whole clip can be freed


def test_margin_is_clipped_at_the_clip_edges(tree):
    tokens, _, _ = read(tree)
    ref = reference_audio(tree, "lgbz0a")
    zero, nine = by_id(tokens)["s1/lgbz0a/1-zero"], by_id(tokens)["s1/lgbz0a/5-nine"]
    assert frame_index(zero.video).tolist() == [0, 1, 2, 3]          # 0.02 s - 40 ms < 0: from frame 0
    np.testing.assert_array_equal(zero.audio, ref[:4 * PER_FRAME])
    assert frame_index(nine.video).tolist() == list(range(19, 25))   # ends at the clip's end, 1.0 s
    np.testing.assert_array_equal(nine.audio, ref[19 * PER_FRAME:])
    assert len(nine.audio) == 6 * PER_FRAME


def test_margin_option(tree):
    tokens, _, _ = read(tree, margin_s=0.0)
    assert frame_index(by_id(tokens)["s1/bbat2n/5-two"].video).tolist() == list(range(14, 22))
    with pytest.raises(ConfigError, match="margin_s"):
        read_grid(tree, margin_s=-0.04, progress=False)


def test_vocabulary_option(tree):
    letters, _, _ = read(tree, vocabulary="letters")
    assert [(t.utterance_id, t.label) for t in letters] == [("s1/bbat2n/4-a", "a"), ("s2/lbay8a/2-y", "y")]
    assert frame_index(letters[0].video).tolist() == list(range(10, 16))  # 0.44-0.572 s: frame 10 exactly
    words, _, _ = read(tree, vocabulary=["Bin", "NOW", "bin"])
    assert [t.utterance_id for t in words] == ["s1/bbat2n/1-bin", "s1/bbat2n/6-now", "s1/lgbz0a/2-bin"]
    assert resolve_vocabulary("digits") == GRID_DIGITS and len(GRID_LETTERS) == 25 and "w" not in GRID_LETTERS
    assert resolve_vocabulary(("One", "two")) == ("one", "two")
    assert resolve_vocabulary(["digits"]) == GRID_DIGITS and resolve_vocabulary(["digits", "Letters"]) == (
        GRID_DIGITS + GRID_LETTERS)
    for bad in ("colours", "two", [], ["two", 3], ["sil"], 5, None):
        with pytest.raises(ConfigError, match="'digits' or 'letters' or a non-empty list of words"):
            resolve_vocabulary(bad)
    with pytest.raises(ConfigError, match="unknown GRID vocabulary 'colours'"):
        read_grid(tree, vocabulary="colours", progress=False)
    with pytest.raises(ConfigError, match="unknown GRID view 'words'; choose one of tokens, sentences"):
        read_grid(tree, view="words")
    with warnings.catch_warnings(), pytest.raises(DataError, match=r"no word of the vocabulary \(hello\)"):
        warnings.simplefilter("ignore")
        read_grid(tree, vocabulary=["hello"], progress=False)


# --------------------------------------------------------------------------- skips
def test_unusable_files_and_tokens_are_listed_not_fatal(tree):
    tokens, sentences, msgs = read(tree)
    files = [m for m in msgs if "skipped 3 unusable file(s)" in m]
    toks = [m for m in msgs if "skipped 1 unusable token(s)" in m]
    assert len(files) == 1 and len(toks) == 1 and len(msgs) == 2
    f = files[0]
    assert f"{tree / 'alignments' / 's1' / 'noalign.align'}: alignment file does not exist" in f
    assert f"{tree / 's2' / 'junk.mpg'}: cannot open video" in f
    assert f"{tree / 's2' / 'short.mkv'}: field 'duration': audio lasts 0.500 s but video lasts 1.200 s" in f
    assert "stray" not in f  # alignments/ is not taken for a speaker
    assert (f"{tree / 'alignments' / 's1' / 'over7n.align'}: field 'timing': word 3 'seven' at 0.800-1.240 s ends "
            "past the video (30 frames at 25 fps = 1.200 s): overruns the clip") in toks[0]
    assert "s1/over7n/1-three" in by_id(tokens) and not any("seven" in t.utterance_id for t in tokens)
    assert {u.speaker for u in tokens + sentences} == {"s1", "s2"}


def test_strict_raises_the_first_problem_naming_the_file(tree, tmp_path):
    with pytest.raises(DataError, match=r"noalign\.align: alignment file does not exist"):
        read_grid(tree, strict=True, progress=False)
    with pytest.raises(DataError, match=r"junk\.mpg: cannot open video"):
        read_grid(tree, speakers=["s2"], strict=True, progress=False)
    spk, n, lines, tone = GOOD["over7n"]
    write_clip(tmp_path, spk, "over7n", n, lines, tone)
    with pytest.raises(DataError, match=r"over7n\.align: field 'timing': word 3 'seven' .* overruns the clip"):
        read_grid(tmp_path, strict=True, progress=False)
    with pytest.warns(UserWarning, match="skipped 1 unusable token"):
        assert [t.label for t in read_grid(tmp_path, progress=False)] == ["three"]


def test_speakers_option_and_nothing_usable(tree, tmp_path):
    tokens, sentences, msgs = read(tree, speakers=["s2"])
    assert [t.utterance_id for t in tokens] == ["s2/lbay8a/3-eight"] and [s.utterance_id for s in sentences] == [
        "s2/lbay8a"]
    assert any("skipped 2 unusable file(s)" in m for m in msgs)
    with pytest.raises(DataError, match=r"no GRID recordings found: expected ROOT/<speaker>/<id>\.\{.*mkv\} videos"):
        read_grid(tmp_path, progress=False)
    (tmp_path / "s9").mkdir()
    (tmp_path / "s9" / "bad.mkv").write_bytes(b"\x00" * 100)
    write_align(tmp_path / "alignments" / "s9" / "bad.align", GOOD["bbat2n"][2])
    with pytest.warns(UserWarning, match="skipped 1 unusable file"), pytest.raises(
            DataError, match=r"no usable GRID recording \(1 skipped, listed in the warning\); expected ROOT/<spe"):
        read_grid(tmp_path, progress=False)
    with pytest.raises(DataError, match="dataset folder does not exist"):
        read_grid(tmp_path / "nowhere")


# --------------------------------------------------------------------------- sentences
def test_sentences_are_trimmed_to_the_speech(tree):
    tokens, sentences, _ = read(tree)
    assert [s.utterance_id for s in sentences] == ["s1/bbat2n", "s1/lgbz0a", "s1/over7n", "s2/lbay8a"]
    assert all(s.group == s.utterance_id and s.label == "(sentence)" for s in sentences)
    assert {t.group for t in tokens} <= {s.group for s in sentences}
    s = by_id(sentences)
    # speech 0.08-1.04 s widened by 40 ms: frames 1..26, and exactly their samples
    assert frame_index(s["s1/bbat2n"].video).tolist() == list(range(1, 27))
    np.testing.assert_array_equal(s["s1/bbat2n"].audio, reference_audio(tree, "bbat2n")[PER_FRAME:27 * PER_FRAME])
    assert frame_index(s["s1/lgbz0a"].video).tolist() == list(range(25))  # "sp" at the start is no word
    # the last word is timed past the video: the sentence ends with the video
    assert frame_index(s["s1/over7n"].video).tolist() == list(range(1, 30))
    assert len(s["s1/over7n"].audio) == 29 * PER_FRAME
    with pytest.warns(UserWarning, match="skipped 3 unusable file"):
        only = read_grid(tree, view="sentences", progress=False)
    assert [u.utterance_id for u in only] == list(s)
    with warnings.catch_warnings():  # the skips, as above
        warnings.simplefilter("ignore")
        both = read_grid(tree, view=("tokens", "sentences"), progress=False)  # one decode, views in order
    assert [u.utterance_id for u in both] == [t.utterance_id for t in tokens] + list(s)


def test_recordings_keep_the_untrimmed_durations_and_readers_registry(tree):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        recs = read_grid_recordings(tree, progress=False)
        via_registry = READERS["grid"](tree, progress=False)
    assert [(r.group, r.n_frames, r.video_s, r.audio_s) for r in recs] == [
        ("s1/bbat2n", 30, 1.2, 1.2), ("s1/lgbz0a", 25, 1.0, 1.0), ("s1/over7n", 30, 1.2, 1.2),
        ("s2/lbay8a", 30, 1.2, 1.2)]
    assert views_of(recs)[0][0].utterance_id == "s1/bbat2n/5-two"
    assert [u.utterance_id for u in via_registry] == [t.utterance_id for t in views_of(recs)[0]]


# --------------------------------------------------------------------------- alignments
@pytest.mark.parametrize("text, match", [
    (None, "alignment file does not exist"),
    ("", r"alignment file is empty \(0 bytes\)"),
    ("\r\n\r\n", r"no 'start end word' lines"),
    ("0 23750 sil\r\n23750 bin\r\n", r"line 2: expected 'start end word' \(times in 1/25000 s\), got '23750 bin'"),
    ("0 23750 sil\r\n\r\nabc 29500 bin\r\n", r"line 3: expected 'start end word'"),
    ("0 1000 sil\r\n2000 1500 bin\r\n", r"line 2: start 2000 is after end 1500 \(expected start <= end\)"),
])
def test_parse_align_errors_name_the_file_and_line(tmp_path, text, match):
    p = tmp_path / "x.align"
    if text is not None:
        p.write_bytes(text.encode())
    with pytest.raises(DataError, match=match) as err:
        parse_align(p)
    assert str(p) in str(err.value)


def test_parse_align_reads_crlf_and_blank_lines(tmp_path):
    p = tmp_path / "bbaf2n.align"
    p.write_bytes(b"0 23750 sil\r\n23750 29500 BIN\r\n\r\n35500 41000 f\r\n41000 47250 two\r\n")
    assert parse_align(p) == [(0.0, 0.95, "sil"), (0.95, 1.18, "bin"), (1.42, 1.64, "f"), (1.64, 1.89, "two")]


# --------------------------------------------------------------------------- data check
def test_data_check_grid(tree, tmp_path, capsys):
    png = tmp_path / "m.png"
    assert main(["-q", "data", "check", str(tree), "--source", "grid", "--montage", str(png), "--frames", "3"]) == 0
    out = capsys.readouterr().out
    assert "(source: grid)" in out and "clips found: 9   usable: 5   skipped: 4" in out
    assert "labels (5): eight 1, nine 1, three 1, two 1, zero 1" in out and "speakers (2): s1 4, s2 1" in out
    assert "recordings: 4 usable, cut into 5 word token(s)" in out
    assert "recordings (untrimmed): |audio - video| min 0.000 / median 0.000 / max 0.000 s; frames 25 x1, 30 x3" in out
    assert "noalign.align: alignment file does not exist" in out and "junk.mpg" in out and "short.mkv" in out
    assert "word 3 'seven' at 0.800-1.240 s" in out and png.is_file()
    assert main(["-q", "data", "check", str(tree), "--source", "grid", "--vocabulary", "letters",
                 "--montage", str(png)]) == 0
    assert "labels (2): a 1, y 1" in capsys.readouterr().out
    assert main(["-q", "data", "check", str(tree), "--source", "grid", "--vocabulary", "bin", "now",
                 "--montage", str(png)]) == 0
    assert "labels (2): bin 2, now 1" in capsys.readouterr().out
    assert main(["-q", "data", "check", str(tree), "--vocabulary", "letters", "--montage", str(png)]) == 2
    assert "--vocabulary applies to --source grid only" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["-q", "data", "check", str(empty), "--source", "grid", "--montage", str(png)]) == 1
    assert "no GRID recordings found" in capsys.readouterr().out


# --------------------------------------------------------------------------- the shared corpus
@pytest.mark.slow
def test_shared_grid_s1(grid_s1_root):
    """Speaker s1, 700 sentences: every one usable, one digit token each, the digit the file name spells
    (its 5th character, "z" for zero), sound and video within 40 ms (measured: 18-22 ms, the MP2
    track ends early) before trimming. About 35 s and 4.3 GB peak on 2 cores (one decode of each)."""
    t0 = time.perf_counter()
    recs = read_grid_recordings(grid_s1_root, strict=True, progress=False)
    elapsed = time.perf_counter() - t0
    tokens, sentences = views_of(recs)
    assert len(recs) == len(sentences) == len(tokens) == 700
    counts = Counter(t.label for t in tokens)
    assert set(counts) == set(GRID_DIGITS) and min(counts.values()) >= 64 and max(counts.values()) <= 74
    spelled = {"z": "zero", **{str(i): d for i, d in enumerate(GRID_DIGITS) if i}}
    assert all(t.label == spelled[t.group.split("/")[1][4]] for t in tokens)
    assert {(u.fps, u.sample_rate, u.speaker) for u in tokens + sentences} == {(25.0, 44100, "s1")}
    assert Counter(r.n_frames for r in recs).keys() <= {74, 75}
    assert max(r.mismatch_s for r in recs) <= 0.040
    assert all(s.group == s.utterance_id and s.video.shape[1:] == (288, 360) for s in sentences)
    for u in tokens + sentences:  # each cut's audio covers its frames (the last frame's a little short at most)
        assert 0 <= len(u.video) / u.fps - len(u.audio) / u.sample_rate < 1 / u.fps
    assert min(len(t.video) for t in tokens) >= 4  # at least one 4-frame window
    print(f"read 700 GRID recordings in {elapsed:.1f} s")


def test_extra_av_lists_a_grid_tree_as_the_reader_cuts_its_sentences(tree):
    """``data.extra_av`` reads a GRID tree lazily: the same usable sentences, the same frames and
    sound as the reader's sentence view, unlabelled; the unusable recordings fail when loaded."""
    from data_prep.extra_av import _list_corpus
    from data_prep.grid import read_grid

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sentences = {u.utterance_id: u for u in read_grid(tree, view="sentences", progress=False)}
    loaded, failed = {}, []
    for r in _list_corpus(tree):
        try:
            loaded[r.utterance_id] = r.load()
        except DataError:
            failed.append(r.utterance_id)
    assert set(loaded) == set(sentences) and sorted(failed) == ["s1/noalign", "s2/junk", "s2/short"]
    for uid, u in loaded.items():
        np.testing.assert_array_equal(u.video, sentences[uid].video)
        np.testing.assert_array_equal(u.audio, sentences[uid].audio)
        assert u.label == "(unlabelled)"
