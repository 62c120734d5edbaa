"""Utterance features from a trained model, for downstream classifiers (``bimodal extract``)."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from bimodal.device import resolve_device
from bimodal.errors import ConfigError, DataError
from bimodal.io import atomic_savez, atomic_write_bytes

from data_prep import readers

from . import registry
from .pipeline import label_strings, utterance_features, window_codes

log = logging.getLogger(__name__)


def load_model(path, device=None):
    """Load any checkpoint written by bimodal (the file records the model class)."""
    from bimodal.persist import Persistable

    path = Path(path)
    if not path.is_file():
        raise DataError("model checkpoint not found", path=path)
    return Persistable.load(path, device=device)


def parquet_available() -> bool:
    """Whether pandas and pyarrow import, so ``.parquet`` output can be written."""
    try:
        import pandas  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def check_out(out) -> Path:
    """``Path(out)`` if extract can write there, else a ConfigError naming ``--out``.

    The suffix must be ``.npz``, or ``.parquet`` with pandas and pyarrow installed; ``out`` must not
    be a folder, and its nearest existing parent must be a folder this process can write in (the
    missing ones are created when the file is written).
    """
    out = Path(out)
    parquet = parquet_available()
    accepted = ".npz, .parquet" if parquet else ".npz (.parquet needs pandas and pyarrow, not installed here)"
    suffix = out.suffix.lower()
    if suffix not in (".npz", ".parquet"):
        raise ConfigError(f"--out {out}: cannot write {suffix or 'a file without a suffix'}; "
                          f"accepted suffixes: {accepted}")
    if suffix == ".parquet" and not parquet:
        raise ConfigError(f"--out {out}: .parquet needs pandas and pyarrow (pip install 'bimodal[parquet]'); "
                          f"accepted suffixes: {accepted}")
    if out.is_dir():
        raise ConfigError(f"--out {out}: is an existing folder; name the file to write (e.g. {out / 'features.npz'})")
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"--out {out}: cannot create its folder, {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: cannot write in the folder {parent} (permission denied)")
    return out


def extract_features(model, data_dir, out, feature: str = "bimodal_dae.both", slices=(1, 3), preprocessor=None,
                     device=None, progress=True) -> Path:
    """Write utterance features of the registry feature ``feature`` (pooled over ``slices``), labels,
    speakers and utterance ids of the corpus at ``data_dir`` to ``out`` (.npz, or .parquet).

    ``model``: a run's checkpoint folder (``checkpoints/seed{S}_fold{F}``; the feature's model is
    read from ``<model>.pt`` there) or that checkpoint file itself. The
    windows are whitened by ``preprocessor`` (default: ``preprocessor.npz`` in that folder).

    ``out``, ``model`` and ``preprocessor`` are checked before anything is loaded (:func:`check_out`).
    Clips that cannot be used (undecodable, audio and video of different lengths, too short for a
    window) are skipped as ``bimodal reproduce`` skips them, each named with the reason in a warning,
    and listed in ``out``: in a .npz as the string arrays ``skipped_utterance_ids``, ``skipped_paths``
    and ``skipped_reasons`` (empty when none was skipped); in a .parquet as the JSON list of
    ``{"utterance_id", "path", "reason"}`` under the file metadata key ``skipped``
    (``json.loads(pyarrow.parquet.read_schema(out).metadata[b"skipped"])``). No usable clip at all
    is a DataError naming ``data_dir``.
    """
    from data_prep.dataset import Preprocessor

    out = check_out(out)
    device = resolve_device(device)  # a missing GPU is said as such, before any file is read
    feat = registry.feature(feature)
    model = Path(model)
    folder = model if model.is_dir() else model.parent
    models = {}
    if feat.model is not None:
        path = folder / f"{feat.model}.pt" if model.is_dir() else model
        if not path.is_file():
            raise DataError(f"model file not found (feature {feat.name!r} reads the checkpoint {feat.model}.pt "
                            "written by bimodal demo / reproduce)", path=path, field="--model")
        if path.stem != feat.model:
            raise DataError(f"feature {feat.name!r} reads the checkpoint {feat.model}.pt, not {path.name}; pass the "
                            "run's checkpoint folder or that file", path=path, field="--model")
    elif not model.exists():
        raise DataError("no such checkpoint folder or file", path=model, field="--model")
    prep_path = Path(preprocessor) if preprocessor else folder / "preprocessor.npz"
    if not prep_path.is_file():
        raise DataError("preprocessor (whitening) file not found; pass --preprocessor", path=prep_path,
                        field="--preprocessor")
    if feat.model is not None:
        models[feat.model] = load_model(path, device=device)
    prep = Preprocessor.load(prep_path, device=device)
    skipped: list[dict] = []  # the reader's, then the preprocessing's (Preprocessor.skipped has the same form)
    utts = readers.read_folder(data_dir, progress=progress, skipped=skipped)
    try:
        ds = prep.transform(utts, progress=progress, strict=False)
    except DataError as exc:
        if len(prep.skipped) < len(utts):  # not the every-clip-skipped case: the error says what is wrong
            raise
        raise DataError(f"no usable clip: all {len(skipped) + len(utts)} skipped (listed in the warnings)",
                        path=data_dir, field="--data") from exc
    skipped += prep.skipped
    dev = next(iter(models.values())).device if models else resolve_device(device)
    codes = window_codes(models, ds, [feat.name], device=dev)[feat.name]
    feats = utterance_features(codes, ds, slices)
    labels = label_strings(ds).astype(str)
    if out.suffix.lower() == ".parquet":
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq

        df = pd.DataFrame(feats, columns=[f"f{i}" for i in range(feats.shape[1])])
        df.insert(0, "utterance_id", np.asarray(ds.utterance_ids).astype(str))
        df.insert(1, "speaker", np.asarray(ds.speakers).astype(str))
        df.insert(2, "label", labels)
        table = pa.Table.from_pandas(df, preserve_index=False)
        # In the schema metadata, not pandas' DataFrame.attrs: those reach parquet only from pandas 2.1.
        meta = {**(table.schema.metadata or {}), b"skipped": json.dumps(skipped).encode()}
        buf = pa.BufferOutputStream()
        pq.write_table(table.replace_schema_metadata(meta), buf)
        atomic_write_bytes(out, buf.getvalue().to_pybytes())
    else:
        atomic_savez(out, features=feats, labels=labels, speakers=np.asarray(ds.speakers).astype(str),
                     utterance_ids=np.asarray(ds.utterance_ids).astype(str), slices=np.asarray(slices),
                     feature=np.asarray(feat.name),
                     **{f"skipped_{k}s": np.array([d[k] for d in skipped], dtype=str)
                        for k in ("utterance_id", "path", "reason")})
    log.info("wrote %d utterance features of dim %d to %s (%d clips skipped)", *feats.shape, out, len(skipped))
    return out
