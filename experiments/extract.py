"""Utterance features from a trained model, for downstream classifiers (``bimodal extract``)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from bimodal.errors import ConfigError, DataError
from bimodal.io import atomic_savez, atomic_write_bytes

from .pipeline import label_strings, utterance_features

log = logging.getLogger(__name__)

LAYERS = ("shared", "input")


def load_model(path, device=None):
    """Load any checkpoint written by bimodal (the file records the model class)."""
    import importlib

    from bimodal.rbm import Persistable

    importlib.import_module("bimodal")  # imports every model class, so Persistable knows them all

    path = Path(path)
    if not path.is_file():
        raise DataError("model checkpoint not found", path=path)
    return Persistable.load(path, device=device)


def window_features(model, ds, layer: str, modalities: tuple[str, ...]) -> np.ndarray:
    """Window-level features of ``ds`` from ``model`` at ``layer`` given the chosen input modalities."""
    from bimodal.autoencoder import BimodalAutoencoder
    from bimodal.dbn import BimodalDBN

    if layer not in LAYERS:
        raise ConfigError(f"--layer {layer!r} unknown; choose one of {', '.join(LAYERS)}")
    inputs = {m: getattr(ds, m) for m in modalities}
    if layer == "input":
        return np.concatenate([inputs[m] for m in modalities], axis=1)
    with torch.no_grad():
        if isinstance(model, BimodalAutoencoder):
            return np.asarray(model.encode(**inputs))
        if isinstance(model, BimodalDBN):
            if len(modalities) != 2:
                raise ConfigError("a bimodal DBN's joint layer needs both modalities (--modalities audio video)")
            return np.asarray(model.transform(**inputs))
        if len(modalities) != 1:
            raise ConfigError(f"a {type(model).__name__} takes one modality: give --modalities audio or video")
        return np.asarray(model.transform(inputs[modalities[0]]))


def extract_features(model_path, data_dir, out, layer: str = "shared", slices=(1, 3),
                     modalities=("audio", "video"), preprocessor=None, device=None, progress=True) -> Path:
    """Write utterance features (pooled over ``slices``), labels, speakers and utterance ids to ``out``."""
    from data_prep.dataset import Preprocessor
    from data_prep.readers import read_folder

    model_path = Path(model_path)
    if not model_path.is_file():
        raise DataError("model file not found (a checkpoint .pt written by bimodal demo / reproduce)",
                        path=model_path, field="--model")
    prep_path = Path(preprocessor) if preprocessor else model_path.parent / "preprocessor.npz"
    if not prep_path.is_file():
        raise DataError("preprocessor (whitening) file not found; pass --preprocessor", path=prep_path)
    model = load_model(model_path, device=device)
    prep = Preprocessor.load(prep_path, device=device)
    ds = prep.transform(read_folder(data_dir, progress=progress), progress=progress)
    codes = window_features(model, ds, layer, tuple(modalities))
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
                     layer=np.asarray(layer), modalities=np.asarray(modalities))
    log.info("wrote %d utterance features of dim %d to %s", *feats.shape, out)
    return out
