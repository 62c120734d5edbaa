"""Utterance features from a trained model, for downstream classifiers (``bimodal extract``)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from bimodal.device import resolve_device
from bimodal.errors import DataError
from bimodal.io import atomic_savez, atomic_write_bytes

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


def extract_features(model, data_dir, out, feature: str = "bimodal_dae.both", slices=(1, 3), preprocessor=None,
                     device=None, progress=True) -> Path:
    """Write utterance features of the registry feature ``feature`` (pooled over ``slices``), labels,
    speakers and utterance ids of the corpus at ``data_dir`` to ``out`` (.npz, or .parquet).

    ``model``: a run's checkpoint folder (``checkpoints/seed{S}_fold{F}``; the feature's model is
    read from ``<model>.pt`` there) or that checkpoint file itself. The
    windows are whitened by ``preprocessor`` (default: ``preprocessor.npz`` in that folder).
    """
    from data_prep.dataset import Preprocessor
    from data_prep.readers import read_folder

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
        raise DataError("preprocessor (whitening) file not found; pass --preprocessor", path=prep_path)
    if feat.model is not None:
        models[feat.model] = load_model(path, device=device)
    prep = Preprocessor.load(prep_path, device=device)
    ds = prep.transform(read_folder(data_dir, progress=progress), progress=progress)
    dev = next(iter(models.values())).device if models else resolve_device(device)
    codes = window_codes(models, ds, [feat.name], device=dev)[feat.name]
    feats = utterance_features(codes, ds, slices)
    labels = label_strings(ds).astype(str)
    out = Path(out)
    if out.suffix == ".parquet":
        import io

        import pandas as pd

        df = pd.DataFrame(feats, columns=[f"f{i}" for i in range(feats.shape[1])])
        df.insert(0, "utterance_id", np.asarray(ds.utterance_ids).astype(str))
        df.insert(1, "speaker", np.asarray(ds.speakers).astype(str))
        df.insert(2, "label", labels)
        buf = io.BytesIO()
        df.to_parquet(buf)
        atomic_write_bytes(out, buf.getvalue())
    else:
        atomic_savez(out, features=feats, labels=labels, speakers=np.asarray(ds.speakers).astype(str),
                     utterance_ids=np.asarray(ds.utterance_ids).astype(str), slices=np.asarray(slices),
                     feature=np.asarray(feat.name))
    log.info("wrote %d utterance features of dim %d to %s", *feats.shape, out)
    return out
