"""Generate the embedded audio-visual speech corpus, deterministically from a seed.

Layout (the generic layout read by ``data_prep.readers.read_folder``)::

    OUT/<speaker>/<label>/<speaker>_<label>_r<rep>.avi   60x80 grey mouth frames, 25 fps, MJPG
    OUT/<speaker>/<label>/<speaker>_<label>_r<rep>.wav   16 kHz mono PCM-16
    OUT/manifest.json                                     written last, atomically

Audio is eSpeak NG's 22050 Hz output resampled to 16 kHz (``resample_poly(320, 441)``), padded
with leading/trailing silence (plus a faint noise floor) to exactly ``n_frames * 640`` samples, so
audio and video have the same duration. Every utterance depends only on (seed, speaker index,
label, repetition): the corpus is the same whatever the number of worker processes, and a smaller
corpus (fewer speakers / repetitions / words) is a subset of a larger one with the same seed.

Command line: ``python -m data_prep.synth.corpus --out DIR [--seed N] [--speakers N]
[--repetitions N] [--vocabulary letters digits syllables] [--workers N]``.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import math
import os
import string
import sys
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bimodal.errors import ConfigError, DataError
from bimodal.io import atomic_write_bytes, atomic_write_json

from . import espeak
from .render import FPS, HEIGHT, WIDTH, Appearance, render_video, write_avi
from .visemes import viseme_track

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
SAMPLE_RATE = 16000
SAMPLES_PER_FRAME = int(SAMPLE_RATE / FPS)  # 640

LETTERS = {c: c for c in string.ascii_uppercase}  # a lone capital is spoken as its name ("B" -> /bi:/)
DIGITS = {str(i): w for i, w in enumerate("zero one two three four five six seven eight nine".split())}
SYLLABLES = {"ba": "bah", "ga": "gah", "da": "dah"}  # eSpeak: b/g/d + 'A:
VOCABULARIES = {"letters": LETTERS, "digits": DIGITS, "syllables": SYLLABLES}
DEFAULT_VOCABULARY = ("letters", "digits", "syllables")

# speaker voices: an English accent + a voice variant (voices/!v). Only variants whose output was
# found identical across processes are used: klatt*, whisper, breath and some others (f2, f3, f5,
# Alicia, sandro, victor, ...) give different samples from run to run (random noise sources or
# uninitialised memory inside eSpeak). tests/test_synth.py re-checks this pool in a subprocess.
ACCENTS = ("en", "en-us", "en-gb-x-rp", "en-gb-scotland")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f4", "Annie", "belinda", "linda", "steph")


def resolve_vocabulary(vocabulary) -> dict[str, str]:
    """``{label: text}`` for a list of group names (letters, digits, syllables) and/or single labels."""
    if isinstance(vocabulary, str):
        vocabulary = (vocabulary,)
    every = {**LETTERS, **DIGITS, **SYLLABLES}
    out: dict[str, str] = {}
    for item in vocabulary:
        if item in VOCABULARIES:
            out.update(VOCABULARIES[item])
        elif item in every:
            out[item] = every[item]
        else:
            raise ConfigError(f"vocabulary item {item!r} is neither a group {sorted(VOCABULARIES)} "
                              f"nor a label (A-Z, 0-9, ba/ga/da)")
    if not out:
        raise ConfigError("vocabulary is empty")
    return out


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: voice, prosody and mouth appearance."""

    name: str
    voice: str
    rate: float  # words per minute
    pitch: float  # eSpeak 0..100
    pitch_range: float
    coarticulation_ms: float
    rest_opening: float
    gain: float
    noise_floor_db: float
    appearance: Appearance

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("name", "voice", "rate", "pitch", "pitch_range", "coarticulation_ms",
                                           "rest_opening", "gain", "noise_floor_db")}
        d["appearance"] = self.appearance.to_dict()
        return d


def make_speakers(seed: int, n_speakers: int) -> list[Speaker]:
    """Speaker ``i`` depends only on (seed, i); voice variants are a seed-wide permutation (distinct
    for the first 14 speakers, then reused with other accents and prosody)."""
    perm = np.random.default_rng(np.random.SeedSequence([seed, 7919])).permutation(len(VARIANTS))
    speakers = []
    for i in range(n_speakers):
        rng = np.random.default_rng(np.random.SeedSequence([seed, 104729, i]))
        variant = VARIANTS[perm[i % len(VARIANTS)]]
        accent = ACCENTS[int(rng.integers(len(ACCENTS)))]
        speakers.append(Speaker(
            name=f"s{i + 1:02d}", voice=f"{accent}+{variant}", rate=float(rng.uniform(135, 195)),
            pitch=float(rng.uniform(30, 70)), pitch_range=float(rng.uniform(30, 75)),
            coarticulation_ms=float(rng.uniform(22, 45)), rest_opening=float(rng.uniform(0.1, 0.22)),
            gain=float(rng.uniform(0.5, 0.9)), noise_floor_db=float(rng.uniform(-62, -48)),
            appearance=Appearance.random(rng)))
    return speakers


def _utterance_rng(seed: int, speaker_index: int, label: str, rep: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, speaker_index, zlib.crc32(label.encode()), rep]))


def synth_utterance(speaker: Speaker, speaker_index: int, label: str, text: str, rep: int, seed: int):
    """Audio, video and metadata of one utterance.

    Returns
    -------
    audio : float32 (n_frames * 640,) at 16 kHz.
    frames : uint8 (n_frames, 60, 80).
    meta : dict (text, voice, rate, pitch, lead silence, phonemes as ``[name, start_s, end_s]``).
    """
    from scipy.signal import resample_poly

    rng = _utterance_rng(seed, speaker_index, label, rep)
    rate = int(round(np.clip(speaker.rate * np.exp(rng.normal(0, 0.06)), 90, 300)))
    pitch = int(round(np.clip(speaker.pitch + rng.normal(0, 3), 0, 100)))
    syn = espeak.synthesize(text, voice=speaker.voice, rate=rate, pitch=pitch, pitch_range=int(round(speaker.pitch_range)))
    g = math.gcd(SAMPLE_RATE, syn.sample_rate)  # 22050 -> 16000: up 320, down 441
    speech = resample_poly(syn.audio.astype(np.float64), SAMPLE_RATE // g, syn.sample_rate // g)
    lead, trail = rng.uniform(0.15, 0.40), rng.uniform(0.15, 0.40)
    n_frames = int(np.ceil((lead + len(speech) / SAMPLE_RATE + trail) * FPS))
    audio = np.zeros(n_frames * SAMPLES_PER_FRAME)
    start = int(round(lead * SAMPLE_RATE))
    gain = speaker.gain * rng.uniform(0.85, 1.0) / max(1e-6, float(np.abs(speech).max()))
    audio[start:start + len(speech)] = speech * gain
    audio += rng.normal(0, 10 ** (speaker.noise_floor_db / 20), size=audio.shape)
    audio = np.clip(audio, -1.0, 1.0).astype(np.float32)
    offset = start / SAMPLE_RATE
    phonemes = [(p.name, p.start + offset, p.end + offset) for p in syn.phonemes]
    track = viseme_track(phonemes, n_frames, FPS, speaker.coarticulation_ms, speaker.rest_opening)
    frames = render_video(track, speaker.appearance, rng, FPS)
    meta = {"text": text, "voice": speaker.voice, "rate": rate, "pitch": pitch, "lead_silence_s": round(offset, 4),
            "n_frames": n_frames, "duration_s": n_frames / FPS,
            "phonemes": [[n, round(s, 4), round(e, 4)] for n, s, e in phonemes]}
    return audio, frames, meta


def _write_wav(path: Path, audio: np.ndarray) -> None:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    atomic_write_bytes(path, buf.getvalue())


def _generate_unit(args):
    """Worker: all repetitions of one (speaker, label). Returns their manifest entries."""
    out, seed, speaker_index, speaker, label, text, repetitions = args
    entries = []
    for rep in range(1, repetitions + 1):
        audio, frames, meta = synth_utterance(speaker, speaker_index, label, text, rep, seed)
        stem = f"{speaker.name}_{label}_r{rep}"
        folder = Path(out) / speaker.name / label
        _write_wav(folder / f"{stem}.wav", audio)
        write_avi(folder / f"{stem}.avi", frames, FPS)
        entries.append({"speaker": speaker.name, "label": label, "utterance": stem, "repetition": rep,
                        "audio": f"{speaker.name}/{label}/{stem}.wav", "video": f"{speaker.name}/{label}/{stem}.avi",
                        **meta})
    return entries


def corpus_params(seed=0, n_speakers=12, repetitions=3, vocabulary=DEFAULT_VOCABULARY) -> dict:
    """The parameters that determine a corpus (what its hash and reuse check compare)."""
    from importlib import metadata

    if int(n_speakers) < 1 or int(repetitions) < 1:
        raise ConfigError(f"n_speakers and repetitions must be >= 1, got {n_speakers}, {repetitions}")
    try:
        loader = metadata.version("espeakng-loader")
    except metadata.PackageNotFoundError:  # pragma: no cover
        loader = None
    return {"format_version": FORMAT_VERSION, "seed": int(seed), "n_speakers": int(n_speakers),
            "repetitions": int(repetitions), "vocabulary": sorted(resolve_vocabulary(vocabulary)),
            "espeakng_loader": loader, "fps": FPS, "sample_rate": SAMPLE_RATE, "frame_size": [HEIGHT, WIDTH]}


def params_hash(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def default_corpus_dir(seed=0, n_speakers=12, repetitions=3, vocabulary=DEFAULT_VOCABULARY) -> Path:
    """``$BIMODAL_CACHE`` (or ``~/.cache/bimodal``) ``/corpus-<hash of the parameters>``."""
    root = Path(os.environ.get("BIMODAL_CACHE") or Path.home() / ".cache" / "bimodal").expanduser()
    return root / f"corpus-{params_hash(corpus_params(seed, n_speakers, repetitions, vocabulary))}"


def _complete_manifest(out: Path, digest: str):
    """The manifest if ``out`` holds a complete corpus with parameter hash ``digest``, else None."""
    path = out / "manifest.json"
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if manifest.get("params_hash") != digest:
        return None
    for u in manifest.get("utterances", []):
        if not ((out / u["audio"]).is_file() and (out / u["video"]).is_file()):
            return None
    return manifest


def generate_corpus(out, seed=0, n_speakers=12, repetitions=3, vocabulary=DEFAULT_VOCABULARY, workers=None,
                    progress=True, overwrite=False) -> Path:
    """Generate (or reuse) the synthetic audio-visual corpus in ``out``.

    Parameters
    ----------
    out : folder to write; created if needed.
    seed : everything (speakers, prosody jitter, silences, head motion, noise) derives from it.
    n_speakers : number of speakers ``s01``..; speaker i is the same for any ``n_speakers`` > i.
    repetitions : utterances per (speaker, label).
    vocabulary : group names ``"letters"`` (A-Z), ``"digits"`` (0-9), ``"syllables"`` (ba, ga, da)
        and/or single labels (e.g. ``("A", "S", "ba")``).
    workers : processes (``None``: all cores; ``0`` or ``1``: in this process). The output does
        not depend on it.
    progress : show a tqdm bar.
    overwrite : replace a corpus made with other parameters (or an unfinished one) in ``out``.

    Returns
    -------
    Path of ``out``. ``out/manifest.json`` (written last) holds the parameters, per-speaker
    parameters, eSpeak version and every file's phoneme timings.
    """
    from tqdm.auto import tqdm

    out = Path(out)
    params = corpus_params(seed, n_speakers, repetitions, vocabulary)
    digest = params_hash(params)
    if _complete_manifest(out, digest) is not None:
        log.info("reusing the corpus in %s (parameters hash %s)", out, digest)
        return out
    marker = out / ".synth-in-progress.json"
    if out.is_dir() and any(out.iterdir()):
        ours = marker.is_file() or (out / "manifest.json").is_file()
        same = marker.is_file() and json.loads(marker.read_text() or "{}").get("params_hash") == digest
        if not ours:
            raise DataError("folder is not empty and holds no generated corpus; choose another folder", path=out)
        if not same and not overwrite:
            raise DataError("folder holds a corpus made with other parameters (or an unfinished one); "
                            "pass overwrite=True (--overwrite) to replace it", path=out)
        if not same:
            _remove_corpus(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(marker, {"params_hash": digest, "params": params})

    vocab = resolve_vocabulary(vocabulary)
    speakers = make_speakers(seed, n_speakers)
    units = [(str(out), int(seed), i, spk, label, text, int(repetitions))
             for i, spk in enumerate(speakers) for label, text in sorted(vocab.items())]
    workers = os.cpu_count() or 1 if workers is None else int(workers)
    t0 = time.perf_counter()
    bar = tqdm(total=len(units) * repetitions, desc="synth corpus", unit="utt", disable=not progress)
    entries = []
    if workers <= 1:
        for unit in units:
            entries.extend(_generate_unit(unit))
            bar.update(repetitions)
    else:
        import multiprocessing as mp

        # spawn: each worker loads its own eSpeak; the parent may hold threads (torch) unsafe to fork
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
            for result in pool.map(_generate_unit, units, chunksize=4):
                entries.extend(result)
                bar.update(repetitions)
    bar.close()
    elapsed = time.perf_counter() - t0
    manifest = {
        "format": "bimodal-synth-corpus", "params_hash": digest, "params": params,
        "espeak_version": espeak.espeak_version(), "generation_seconds": round(elapsed, 2), "workers": workers,
        "layout": "<speaker>/<label>/<utterance>.{avi,wav}", "vocabulary": vocab,
        "speakers": {s.name: s.to_dict() for s in speakers}, "utterances": entries,
    }
    atomic_write_json(out / "manifest.json", manifest)
    marker.unlink(missing_ok=True)
    log.info("wrote %d utterances to %s in %.1f s", len(entries), out, elapsed)
    return out


def _remove_corpus(out: Path) -> None:
    """Delete what a previous generation wrote (speaker folders s<NN>, manifest, marker) — nothing else."""
    import re
    import shutil

    for p in out.iterdir():
        if p.is_dir() and re.fullmatch(r"s\d{2,}", p.name):
            shutil.rmtree(p)
        elif p.name in ("manifest.json", ".synth-in-progress.json"):
            p.unlink()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bimodal data synth", description="Generate the synthetic audio-visual corpus.")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: the cache folder)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--speakers", type=int, default=12)
    p.add_argument("--repetitions", type=int, default=3)
    p.add_argument("--vocabulary", nargs="+", default=list(DEFAULT_VOCABULARY),
                   help="groups (letters digits syllables) and/or single labels")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out = args.out or default_corpus_dir(args.seed, args.speakers, args.repetitions, args.vocabulary)
    path = generate_corpus(out, seed=args.seed, n_speakers=args.speakers, repetitions=args.repetitions,
                           vocabulary=tuple(args.vocabulary), workers=args.workers, progress=not args.no_progress,
                           overwrite=args.overwrite)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
