"""Atomic file writing: a results or model file is either complete or absent, never half-written;
and reading back ``.npz`` files with errors that name the file."""
from __future__ import annotations

import io
import json
import math
import os
import stat
import tempfile
import threading
from pathlib import Path


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder and an atomic rename.

    The file gets the mode a plain ``open(path, "w")`` would give it: an existing file keeps its
    mode, a new one gets ``0o666`` less the umask.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = final_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file 0600 whatever the umask; give it the mode open() would have.
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def final_mode(path: Path) -> int:
    """Permission bits for ``path``: its current ones if it exists, else ``0o666 & ~umask``."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    # Elsewhere the only way to read it is to set it and put it back. That is process-wide: the window
    # is two calls, serialised with other writers here, and the mask set meanwhile (0o077) can only make
    # a file another thread creates in it more private, never less.
    with _UMASK_LOCK:
        old = os.umask(0o077)
        os.umask(old)
    return old


def atomic_write_text(path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj, indent: int = 2) -> Path:
    """Serialise ``obj`` as strict JSON (numpy scalars/arrays converted) and write it atomically.

    A NaN or infinity anywhere in ``obj`` raises :class:`~bimodal.errors.DataError` naming its key
    path (e.g. ``runs[0].metrics.fusion/clean/raw.audio``), and nothing is written.
    """
    where = _non_finite_at(obj, "")
    if where is not None:
        from .errors import DataError

        key, value = where
        raise DataError(f"value {value!r} is not allowed: strict JSON has no NaN or Infinity; nothing was written",
                        path=path, field=key or None)
    return atomic_write_text(path, json.dumps(obj, indent=indent, default=_json_default, allow_nan=False) + "\n")


def _non_finite_at(obj, where: str):
    """``(key path, value)`` of the first NaN / infinity in ``obj``, or None if every number is finite."""
    if isinstance(obj, float):  # numpy float64 included
        return None if math.isfinite(obj) else (where, float(obj))
    if obj is None or isinstance(obj, (str, int)):
        return None
    if isinstance(obj, dict):
        items = ((f"{where}.{k}" if where else str(k), v) for k, v in obj.items())
    elif isinstance(obj, (list, tuple)):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(obj))
    else:
        try:
            converted = _json_default(obj)  # what json.dumps will write for it
        except TypeError:
            return None  # json.dumps raises its own error for it
        return _non_finite_at(converted, where)
    for key, value in items:
        found = _non_finite_at(value, key)
        if found is not None:
            return found
    return None


def atomic_torch_save(obj, path) -> Path:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def atomic_savez(path, **arrays) -> Path:
    import numpy as np

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())


def read_npz(path, what: str) -> dict:
    """Every array of the ``.npz`` file ``path``, read eagerly, pickled objects refused.

    ``what`` names the kind of file ("preprocessor file", ...) in the
    :class:`~bimodal.errors.DataError` raised for a missing, corrupt, truncated or non-npz file.
    """
    import numpy as np

    from .errors import DataError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} does not exist", path=path)
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError("it holds a single .npy array, not an .npz archive")
        with z:
            return {k: z[k] for k in z.files}
    # numpy, zipfile and zlib raise many kinds of error for damaged bytes (BadZipFile, zlib.error,
    # EOFError, ValueError, ...); whatever the kind, the file cannot be used.
    except Exception as exc:  # noqa: BLE001
        # first sentence only: numpy goes on to suggest allow_pickle=True, which is not a fix here
        detail = str(exc).split(". ")[0]
        raise DataError(f"not a readable {what} (corrupt, truncated or not an .npz archive: "
                        f"{type(exc).__name__}: {detail})", path=path) from exc


def _json_default(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    try:
        import torch

        if isinstance(o, torch.Tensor):
            return o.detach().cpu().tolist()
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
