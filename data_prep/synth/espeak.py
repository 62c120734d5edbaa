"""eSpeak NG speech synthesis through ctypes, with phoneme timings.

The shared library and its voice data come from the ``espeakng-loader`` wheel
(``espeakng_loader.get_library_path()`` / ``get_data_path()``), so no system install is needed.
The library is used in ``AUDIO_OUTPUT_SYNCHRONOUS`` mode with ``espeakINITIALIZE_PHONEME_EVENTS``
so that the synthesis callback receives the audio and one ``espeakEVENT_PHONEME`` per phoneme
(its start in ms and its eSpeak mnemonic).

Why the library is reloaded for every utterance
-----------------------------------------------
eSpeak keeps synthesis state in C globals (pitch flutter counter, waveform phase, echo buffer)
that survive ``espeak_Terminate``: the same text synthesised twice in one process gives different
samples depending on what was said before. To make every utterance a pure function of its own
parameters (and so the corpus independent of how utterances are spread over worker processes)
each synthesis starts from a freshly ``dlopen``-ed copy of the library. The copy lives in a
private temporary file, so no other user of ``libespeak-ng`` in the process can keep it loaded.
A reload costs under a millisecond.

The library is global state: one synthesis at a time per process (a lock guards it); for
parallel generation use processes.
"""
from __future__ import annotations

import atexit
import ctypes
import logging
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bimodal.errors import ConfigError, DataError

log = logging.getLogger(__name__)

# ---- constants from espeak-ng src/include/espeak-ng/speak_lib.h (API revision 12) ----------
AUDIO_OUTPUT_SYNCHRONOUS = 2
espeakINITIALIZE_PHONEME_EVENTS = 0x0001
espeakEVENT_LIST_TERMINATED = 0
espeakEVENT_PHONEME = 7
espeakCHARS_UTF8 = 1
POS_CHARACTER = 1
espeakRATE, espeakVOLUME, espeakPITCH, espeakRANGE, espeakWORDGAP = 1, 2, 3, 4, 7
EE_OK = 0


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """``espeak_EVENT`` (speak_lib.h)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms within the generated speech
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class Phoneme:
    """One phoneme event: eSpeak mnemonic (stress marks included) and its interval in seconds."""

    name: str
    start: float
    end: float


@dataclass
class Synthesis:
    """The result of :func:`synthesize`.

    Attributes
    ----------
    audio : float32 array, shape (n_samples,), in [-1, 1].
    sample_rate : int, eSpeak's native rate (22050 Hz).
    phonemes : list of :class:`Phoneme` in time order, pauses (``_``, ``_:``) included.
    text, voice, rate, pitch, pitch_range : the request.
    """

    audio: np.ndarray
    sample_rate: int
    phonemes: list = field(default_factory=list)
    text: str = ""
    voice: str = ""
    rate: int = 175
    pitch: int = 50
    pitch_range: int = 50

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate


class _Engine:
    """A private, reloadable instance of libespeak-ng (see the module docstring)."""

    def __init__(self):
        import espeakng_loader

        self.data_path = str(espeakng_loader.get_data_path())
        src = Path(espeakng_loader.get_library_path())
        if not src.is_file():
            raise DataError("espeakng-loader's shared library is missing", path=src)
        self._tmpdir = tempfile.mkdtemp(prefix="bimodal-espeak-")
        self.lib_path = Path(self._tmpdir) / src.name
        shutil.copyfile(src, self.lib_path)
        atexit.register(shutil.rmtree, self._tmpdir, True)
        self.lib = None
        self.sample_rate = None
        self._chunks: list = []
        self._events: list = []
        self._callback = _CALLBACK(self._on_synth)  # kept alive for the library's lifetime

    def _on_synth(self, wav, n, events):
        if wav and n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != espeakEVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == espeakEVENT_PHONEME:
                self._events.append((ev.audio_position, bytes(ev.id.string).split(b"\0")[0].decode("utf-8", "replace")))
            i += 1
        return 0

    def reload(self) -> None:
        import _ctypes

        if self.lib is not None:
            self.lib.espeak_Terminate()
            _ctypes.dlclose(self.lib._handle)
            self.lib = None
        lib = ctypes.CDLL(str(self.lib_path), mode=ctypes.RTLD_LOCAL)
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        lib.espeak_Info.restype = ctypes.c_char_p
        rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, self.data_path.encode(), espeakINITIALIZE_PHONEME_EVENTS)
        if rate <= 0:
            raise DataError(f"espeak_Initialize failed (returned {rate})", path=self.data_path)
        lib.espeak_SetSynthCallback(self._callback)
        self.lib, self.sample_rate = lib, rate

    def version(self) -> str:
        if self.lib is None:
            self.reload()
        return self.lib.espeak_Info(None).decode()

    def synthesize(self, text, voice, rate, pitch, pitch_range):
        self.reload()
        lib = self.lib
        if lib.espeak_SetVoiceByName(voice.encode()) != EE_OK:
            raise ConfigError(f"eSpeak has no voice named {voice!r} (see {self.data_path}/voices/!v for variants)")
        for param, value in ((espeakRATE, rate), (espeakPITCH, pitch), (espeakRANGE, pitch_range)):
            if lib.espeak_SetParameter(param, int(value), 0) != EE_OK:
                raise ConfigError(f"espeak_SetParameter({param}, {value}) failed")
        self._chunks, self._events = [], []
        data = text.encode("utf-8")
        err = lib.espeak_Synth(data, len(data) + 1, 0, POS_CHARACTER, 0, espeakCHARS_UTF8, None, None)
        if err != EE_OK:
            raise DataError(f"espeak_Synth failed with error {err}", field=f"text {text!r}")
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return audio, self._events


_engine: _Engine | None = None
_lock = threading.Lock()


def _get_engine() -> _Engine:
    global _engine
    if _engine is None:
        _engine = _Engine()
    return _engine


def espeak_version() -> str:
    """The version string of the bundled eSpeak NG library (``espeak_Info``), e.g. ``"1.52.0"``."""
    with _lock:
        return _get_engine().version()


def voice_variants() -> list[str]:
    """Names of the voice variants shipped in the data folder (``voices/!v``), sorted."""
    import espeakng_loader

    folder = Path(espeakng_loader.get_data_path()) / "voices" / "!v"
    return sorted(p.name for p in folder.iterdir() if p.is_file())


def synthesize(text: str, voice: str = "en", rate: int = 175, pitch: int = 50, pitch_range: int = 50) -> Synthesis:
    """Speak ``text`` with eSpeak NG and return the audio with its phoneme timings.

    Parameters
    ----------
    text : UTF-8 text; a single capital letter is spoken as the letter's name ("B" -> /bi:/).
    voice : eSpeak voice name, optionally with a variant, e.g. ``"en"``, ``"en-us+m3"``, ``"en+f2"``.
    rate : words per minute, 80..450 (175 normal).
    pitch : base pitch 0..100 (50 normal).
    pitch_range : pitch range 0..100 (50 normal).

    Returns
    -------
    Synthesis with ``audio`` float32 (n_samples,) at eSpeak's native rate and ``phonemes``
    (start/end in seconds; each phoneme ends where the next starts, the last at the audio end).

    The output depends only on the arguments (the library is reloaded for each call).
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"text must be a non-empty string, got {text!r}")
    if not 80 <= int(rate) <= 450:
        raise ConfigError(f"rate must be within 80..450 words per minute, got {rate}")
    for name, v in (("pitch", pitch), ("pitch_range", pitch_range)):
        if not 0 <= int(v) <= 100:
            raise ConfigError(f"{name} must be within 0..100, got {v}")
    with _lock:
        eng = _get_engine()
        raw, events = eng.synthesize(text, voice, rate, pitch, pitch_range)
        sr = eng.sample_rate
    if raw.size == 0:
        raise DataError("eSpeak produced no audio", field=f"text {text!r} voice {voice!r}")
    audio = raw.astype(np.float32) / 32768.0
    duration = len(audio) / sr
    starts = [min(max(ms / 1000.0, 0.0), duration) for ms, _ in events]
    phonemes = []
    for i, (_, name) in enumerate(events):
        end = starts[i + 1] if i + 1 < len(events) else duration
        phonemes.append(Phoneme(name=name, start=starts[i], end=max(end, starts[i])))
    return Synthesis(audio=audio, sample_rate=sr, phonemes=phonemes, text=text, voice=voice,
                     rate=int(rate), pitch=int(pitch), pitch_range=int(pitch_range))
