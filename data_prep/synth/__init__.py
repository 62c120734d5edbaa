"""The embedded audio-visual speech corpus: eSpeak NG audio + rendered mouth video.

See docs/corpus.md. Main entry points: :func:`generate_corpus`, :func:`default_corpus_dir`.
Submodules are imported lazily, so ``data_prep.synth.espeak`` does not pull in OpenCV.
"""
import importlib

_EXPORTS = {
    "corpus": ("DEFAULT_VOCABULARY", "default_corpus_dir", "generate_corpus", "main", "make_speakers",
               "synth_utterance"),
    "espeak": ("Phoneme", "Synthesis", "espeak_version", "synthesize", "voice_variants"),
    "render": ("Appearance", "read_avi_gray", "render_video", "write_avi"),
    "visemes": ("PHONEME_TO_VISEME", "VISEMES", "phoneme_visemes", "viseme_track"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
