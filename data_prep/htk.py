"""Reading HTK parameter files (``.mfcc``, ``.fbank``, ``.plp``, ...): precomputed audio feature frames.

An HTK file is a 12-byte header followed by ``nSamples`` frames of ``sampSize`` bytes:

========== ======= ===================================================================
field      type    meaning
========== ======= ===================================================================
nSamples   int32   number of frames
sampPeriod int32   frame period in 100 ns units (100000 = 10 ms, 200000 = 20 ms)
sampSize   int16   bytes per frame (4 per float coefficient; 2 for WAVEFORM samples)
parmKind   int16   base kind in the low 6 bits plus qualifier bits (_E, _D, ...)
========== ======= ===================================================================

HTK writes big-endian by default; ``byteorder="auto"`` takes the byte order whose header agrees
with the file size. Compressed (``_C``) and CRC-checked (``_K``) files are refused with a
:class:`DataError` naming the file and field; so are unknown base kinds, a ``sampSize`` that
cannot hold the kind's coefficient blocks, and truncated files.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bimodal.errors import DataError

#: Base parameter kinds (parmKind & 0o77), HTK Book §5.10.
BASE_KINDS = {0: "WAVEFORM", 1: "LPC", 2: "LPREFC", 3: "LPCEPSTRA", 4: "LPDELCEP", 5: "IREFC", 6: "MFCC",
              7: "FBANK", 8: "MELSPEC", 9: "USER", 10: "DISCRETE", 11: "PLP", 12: "ANON"}

#: Qualifier bits in the order HTK prints them in a kind name such as ``MFCC_E_D_A``.
QUALIFIERS = (("E", 0o100), ("N", 0o200), ("D", 0o400), ("A", 0o1000), ("T", 0o100000), ("Z", 0o4000),
              ("K", 0o10000), ("C", 0o2000), ("0", 0o20000), ("V", 0o40000))

HEADER_BYTES = 12


@dataclass(frozen=True)
class HTKHeader:
    """The decoded header of an HTK parameter file."""

    n_samples: int
    samp_period_100ns: int
    samp_size: int
    parm_kind: int
    byteorder: str  # ">" big-endian or "<" little-endian

    @property
    def base_kind(self) -> str:
        return BASE_KINDS.get(self.parm_kind & 0o77, f"unknown({self.parm_kind & 0o77})")

    @property
    def qualifiers(self) -> tuple[str, ...]:
        return tuple(q for q, bit in QUALIFIERS if self.parm_kind & bit)

    @property
    def kind_name(self) -> str:
        """E.g. ``'MFCC_E_D'`` for parmKind 326."""
        return "_".join((self.base_kind, *self.qualifiers))

    @property
    def frame_rate(self) -> float:
        """Frames per second (1 / sampPeriod)."""
        return 1e7 / self.samp_period_100ns


def parm_kind_name(parm_kind: int) -> str:
    """Name of an HTK parameter kind code, e.g. ``parm_kind_name(326) == 'MFCC_E_D'``."""
    return HTKHeader(0, 1, 0, int(parm_kind) & 0xFFFF, ">").kind_name


def _parse_header(raw: bytes, order: str) -> HTKHeader:
    n, period = np.frombuffer(raw[:8], dtype=f"{order}i4").tolist()
    size, = np.frombuffer(raw[8:10], dtype=f"{order}i2").tolist()
    kind, = np.frombuffer(raw[10:12], dtype=f"{order}u2").tolist()  # _T is the sign bit: read unsigned
    return HTKHeader(int(n), int(period), int(size), int(kind), order)


def read_htk_header(path, byteorder: str = "auto") -> HTKHeader:
    """The header of an HTK file (see :func:`read_htk` for ``byteorder``)."""
    path = Path(path)
    return _header_and_size(path, byteorder)[0]


def _header_and_size(path: Path, byteorder: str) -> tuple[HTKHeader, int]:
    if not path.is_file():
        raise DataError("HTK feature file does not exist", path=path)
    size = path.stat().st_size
    if size < HEADER_BYTES:
        raise DataError(f"truncated HTK file: {size} bytes, shorter than the {HEADER_BYTES}-byte header",
                        path=path, field="header")
    with open(path, "rb") as f:
        raw = f.read(HEADER_BYTES)
    if byteorder in (">", "big"):
        return _parse_header(raw, ">"), size
    if byteorder in ("<", "little"):
        return _parse_header(raw, "<"), size
    if byteorder != "auto":
        raise DataError(f"byteorder must be 'auto', 'big' or 'little', got {byteorder!r}", path=path,
                        field="byteorder")
    big, little = _parse_header(raw, ">"), _parse_header(raw, "<")

    def plausible(h):
        return h.n_samples >= 0 and h.samp_size > 0 and h.samp_period_100ns > 0 and \
            HEADER_BYTES + h.n_samples * h.samp_size == size

    # HTK's own default is big-endian; little-endian only when big-endian does not fit the file.
    return (little if plausible(little) and not plausible(big) else big), size


def read_htk(path, byteorder: str = "auto", expected_dims: int | None = None) -> tuple[np.ndarray, HTKHeader]:
    """Frames of an HTK parameter file.

    Parameters
    ----------
    path : the file.
    byteorder : "auto" (default: big-endian, HTK's default, unless only little-endian agrees with
        the file size), "big" or "little".
    expected_dims : if given, the number of coefficients per frame the caller needs.

    Returns
    -------
    frames : (nSamples, sampSize / 4) float32 (WAVEFORM and DISCRETE: (nSamples, 1) int16 values as float32).
    header : :class:`HTKHeader` (``kind_name``, ``frame_rate`` ...).

    Raises
    ------
    DataError naming the file and the offending header field for: an unknown base kind, a
    compressed (_C) or CRC-checked (_K) file, a ``sampSize`` that does not fit the kind, a
    frame period or sample count that is not positive, a file shorter or longer than the header
    says, non-finite values, or ``expected_dims`` not met.
    """
    path = Path(path)
    h, size = _header_and_size(path, byteorder)
    base = h.parm_kind & 0o77
    if base not in BASE_KINDS:
        raise DataError(f"unknown HTK parameter base kind {base} (parmKind {h.parm_kind}); known: "
                        f"{', '.join(f'{k}={v}' for k, v in BASE_KINDS.items())}", path=path, field="parmKind")
    quals = set(h.qualifiers)
    for q, what in (("C", "compressed (_C)"), ("K", "CRC-checked (_K)")):
        if q in quals:
            raise DataError(f"{what} HTK files are not supported (parmKind {h.parm_kind} = {h.kind_name}); "
                            "write them uncompressed without a CRC (HCopy with SAVECOMPRESSED=F, SAVEWITHCRC=F)",
                            path=path, field="parmKind")
    if h.n_samples <= 0:
        raise DataError(f"nSamples is {h.n_samples}; a feature file needs at least one frame", path=path,
                        field="nSamples")
    if h.samp_period_100ns <= 0:
        raise DataError(f"sampPeriod is {h.samp_period_100ns} (100 ns units); must be positive", path=path,
                        field="sampPeriod")
    integer_kind = h.base_kind in ("WAVEFORM", "DISCRETE")
    if integer_kind:
        if h.samp_size != 2:
            raise DataError(f"sampSize is {h.samp_size} bytes but {h.kind_name} stores one 2-byte integer per "
                            "sample", path=path, field="sampSize")
        n_coef = 1
    else:
        if h.samp_size <= 0 or h.samp_size % 4:
            raise DataError(f"sampSize is {h.samp_size} bytes, not a whole number of 4-byte floats, for kind "
                            f"{h.kind_name}", path=path, field="sampSize")
        n_coef = h.samp_size // 4
        # The static block repeats once per derivative qualifier (_D, _A, _T); _N drops the static
        # energy coefficient, so the static block is one longer than stored.
        n_blocks = 1 + ("D" in quals) + ("A" in quals) + ("T" in quals)
        if "N" in quals and not ("E" in quals and "D" in quals):
            raise DataError(f"kind {h.kind_name}: _N (suppress absolute energy) needs _E and _D", path=path,
                            field="parmKind")
        static_total = n_coef + (1 if "N" in quals else 0)
        min_static = 1 + ("E" in quals) + ("0" in quals)
        if static_total % n_blocks or static_total // n_blocks < min_static:
            raise DataError(f"sampSize {h.samp_size} bytes = {n_coef} floats per frame does not fit kind "
                            f"{h.kind_name} ({n_blocks} equal coefficient blocks"
                            + (", minus the suppressed energy" if "N" in quals else "") + ")",
                            path=path, field="sampSize")
    expected_size = HEADER_BYTES + h.n_samples * h.samp_size
    if size < expected_size:
        raise DataError(f"truncated HTK file: header says {h.n_samples} frames of {h.samp_size} bytes "
                        f"({expected_size} bytes in all) but the file has {size} bytes", path=path,
                        field="nSamples")
    if size > expected_size:
        raise DataError(f"HTK file has {size - expected_size} bytes beyond the {h.n_samples} frames of "
                        f"{h.samp_size} bytes its header announces", path=path, field="nSamples")
    if expected_dims is not None and n_coef != expected_dims:
        raise DataError(f"{n_coef} coefficients per frame ({h.kind_name}), expected {expected_dims}", path=path,
                        field="sampSize")
    dtype = f"{h.byteorder}i2" if integer_kind else f"{h.byteorder}f4"
    data = np.fromfile(path, dtype=dtype, count=h.n_samples * n_coef, offset=HEADER_BYTES)
    frames = data.reshape(h.n_samples, n_coef).astype(np.float32)
    if not np.isfinite(frames).all():
        raise DataError(f"{h.kind_name} frames hold NaN or infinite values", path=path, field="data")
    return frames, h


def write_htk(path, frames, samp_period_100ns: int, parm_kind: int, byteorder: str = ">") -> Path:
    """Write float32 frames (T, D) as an HTK parameter file (uncompressed, no CRC); for tests and exports."""
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 2:
        raise DataError(f"expected (T, D) frames, got shape {frames.shape}", path=path, field="frames")
    order = ">" if byteorder in (">", "big") else "<"
    header = (np.array([frames.shape[0], samp_period_100ns], dtype=f"{order}i4").tobytes()
              + np.array([frames.shape[1] * 4], dtype=f"{order}i2").tobytes()
              + np.array([parm_kind], dtype=f"{order}u2").tobytes())
    path = Path(path)
    path.write_bytes(header + frames.astype(f"{order}f4").tobytes())
    return path
