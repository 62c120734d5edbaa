"""Where the speech of an utterance starts: from a corpus manifest's phoneme timings, or from energy.

The McGurk stimuli (:func:`experiments.pipeline.mcgurk_utterance`) dub one utterance's audio onto
another's video aligned at the consonant onset, as a real dub is made. The synthetic corpus
(``data_prep.synth.corpus``) writes every utterance's phoneme timings to ``ROOT/manifest.json``
(``utterances[i].phonemes`` = ``[name, start_s, end_s]``, pauses named ``_...``);
:func:`attach_manifest_onsets` copies the first non-pause phoneme's start into
``Utterance.onset_s``. A corpus without timings falls back to :func:`energy_onset`: the start of
the first speech-active frame of the utterance's own audio (the voice-activity rule of
:func:`bimodal.noise.speech_active_mask`: 20 ms frames within 35 dB of the loudest one).
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np

from bimodal.errors import DataError
from bimodal.noise import speech_active_mask

log = logging.getLogger(__name__)


def manifest_onsets(root) -> dict[str, float]:
    """``{utterance id: first non-pause phoneme start (s)}`` from ``root/manifest.json``; ``{}`` when
    the folder has no synthetic-corpus manifest (a user's corpus). Utterance ids are those of
    :func:`data_prep.readers.read_folder` (the audio path relative to ``root`` without suffix)."""
    path = Path(root) / "manifest.json"
    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"unreadable manifest ({e})", path=path) from None
    if not isinstance(manifest, dict) or manifest.get("format") != "bimodal-synth-corpus":
        log.info("%s is not a synthetic-corpus manifest; onsets will come from the audio energy", path)
        return {}
    out = {}
    for i, u in enumerate(manifest.get("utterances") or []):
        try:
            uid = str(Path(u["audio"]).with_suffix("")).replace("\\", "/")
            speech = [p for p in u["phonemes"] if not str(p[0]).startswith("_")]
        except (KeyError, TypeError) as e:
            raise DataError(f"utterance {i} has no usable 'audio'/'phonemes' entry ({e})", path=path,
                            field=f"utterances[{i}]") from None
        if speech:
            out[uid] = float(speech[0][1])
    return out


def attach_manifest_onsets(utterances: list, root) -> list:
    """The utterances with ``onset_s`` set from ``root/manifest.json`` where it lists them."""
    onsets = manifest_onsets(root)
    if not onsets:
        return list(utterances)
    out = [dataclasses.replace(u, onset_s=onsets[u.utterance_id]) if u.utterance_id in onsets else u
           for u in utterances]
    log.info("consonant onsets from %s for %d of %d utterances", Path(root) / "manifest.json",
             sum(u.utterance_id in onsets for u in utterances), len(out))
    return out


def energy_onset(wave, rate: int) -> float:
    """Start (s) of the first speech-active 20 ms frame of ``wave`` (see the module docstring)."""
    active = speech_active_mask(np.asarray(wave, dtype=np.float32), int(rate))
    return float(np.flatnonzero(active)[0]) / float(rate)


def consonant_onset(utterance) -> float:
    """The utterance's recorded onset (``onset_s``), else its energy onset."""
    if getattr(utterance, "onset_s", None) is not None:
        return float(utterance.onset_s)
    return energy_onset(utterance.audio, utterance.sample_rate)
