"""Save / load of every model: one file holds the model's class name, constructor config,
state dict and training history.

Every subclass of :class:`Persistable` is recorded by class name when it is defined, so
``Persistable.load(path)`` rebuilds whichever model the file holds.
"""
from __future__ import annotations

import importlib
import pickle
import warnings
import zipfile

import numpy as np
import torch

from .errors import ConfigError, DataError
from .io import atomic_torch_save

_REGISTRY: dict[str, type] = {}  # class name -> Persistable subclass
_MODEL_MODULES = (".rbm", ".dbn", ".autoencoder", ".conv_frontend")


class Persistable:
    """Save / load for models whose constructor arguments are returned by ``config()``.

    The file holds ``{"class", "config", "state_dict", "history"}``: tensors and plain data
    (dict / list / str / int / float / bool / None) only, so it loads with
    ``torch.load(..., weights_only=True)``. It is written atomically, so a crash never leaves half
    a model on disk.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    def config(self) -> dict:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    def save(self, path):
        """Write the constructor config, the state dict and ``history`` to ``path`` atomically.

        Tuples become lists and numpy scalars python numbers; any other non-plain value in the
        config or history raises :class:`DataError` and nothing is written."""
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        payload = {"class": type(self).__name__, "config": _plain(self.config(), "config", path),
                   "state_dict": state, "history": _plain(self.history, "history", path)}
        return atomic_torch_save(payload, path)

    @classmethod
    def load(cls, path, device=None):
        """Rebuild a model saved with :meth:`save` on ``device`` (default: CUDA if available).

        ``Persistable.load(path)`` loads whichever model class the file records. A file holding
        anything but tensors and plain data is refused (unpickling it could run code), as is one
        that is not a bimodal model file; both raise :class:`DataError`."""
        payload = _read_payload(path)
        if cls is Persistable:
            cls = model_class(payload["class"], path)
        if payload["class"] != cls.__name__:
            raise DataError(f"holds a {payload['class']!r}, expected {cls.__name__!r}", path=path,
                            field="class")
        try:
            model = cls._from_config(dict(payload["config"]), device=device)
            model.load_state_dict(payload["state_dict"])
        except ConfigError:  # the device asked for is not here: said as such, not as a bad file
            raise
        except (TypeError, ValueError, RuntimeError, KeyError) as exc:  # config / state that do not fit the class
            raise DataError(f"not a loadable {cls.__name__}: {exc}", path=path) from exc
        model._set_history(payload["history"])
        return model

    def _set_history(self, history) -> None:
        self.history = list(history)

    @classmethod
    def _from_config(cls, config: dict, device=None):
        config["device"] = device
        return cls(**config)


def model_class(name, path=None) -> type:
    """The :class:`Persistable` subclass called ``name``; ``path`` only names the file in errors."""
    if name not in _REGISTRY:
        # Classes register when their module is imported; import the model modules in case the
        # caller has not (importing them again is a no-op).
        for module in _MODEL_MODULES:
            importlib.import_module(module, __package__)
    if name not in _REGISTRY:
        raise DataError(f"holds a {name!r}, not one of {sorted(_REGISTRY)}", path=path, field="class")
    return _REGISTRY[name]


_REFUSED = ("holds objects other than tensors and plain data{names}, so it is not loaded: unpickling them could "
            "run code. A model file written by an older bimodal version can hold such objects too: retrain the "
            "model, or, only if the file comes from a source you trust, load it with torch.load(path, "
            "weights_only=False) and save the model again with this version")
_NOT_MODEL = "is not a bimodal model file (corrupt, truncated or not written by Persistable.save{detail})"


def _read_payload(path) -> dict:
    """The ``{"class", "config", "state_dict", "history"}`` dict of a model file, checked to be plain."""
    try:
        with warnings.catch_warnings():
            # a pickle not written by torch.save draws this warning first; the error below says it all
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        raise DataError(f"cannot read a saved model: {exc.strerror}", path=path) from None
    except pickle.UnpicklingError as exc:
        if "weights only load failed" in str(exc).lower() and zipfile.is_zipfile(path):
            raise DataError(_REFUSED.format(names=_unsafe_names(path)), path=path) from None
        raise DataError(_NOT_MODEL.format(detail=""), path=path) from None
    # torch.load raises many kinds of error for damaged bytes (RuntimeError from the zip reader,
    # EOFError, KeyError, ...); whatever the kind, the file is not a usable model.
    except Exception as exc:  # noqa: BLE001
        raise DataError(_NOT_MODEL.format(detail=f"; {type(exc).__name__}"), path=path) from None
    if not isinstance(payload, dict) or not {"class", "config", "state_dict"} <= set(payload) \
            or not isinstance(payload["class"], str) or not isinstance(payload["config"], dict) \
            or not isinstance(payload["state_dict"], dict):
        raise DataError(_NOT_MODEL.format(detail="; expected a dict with keys 'class', 'config', 'state_dict'"),
                        path=path)
    payload.setdefault("history", [])
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in payload["state_dict"].items()):
        raise DataError(_REFUSED.format(names=" (state_dict entries that are not tensors)"), path=path,
                        field="state_dict")
    for key in ("config", "history"):
        bad = _non_plain_at(payload[key], key)
        if bad is not None:
            raise DataError(_REFUSED.format(names=f" ({bad})"), path=path, field=key)
    return payload


def _unsafe_names(path) -> str:
    """`` (module.name, ...)``: the globals the pickle in ``path`` would import, or "" if unknown."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # noqa: BLE001 - the names only decorate the message
        return ""
    return f" ({', '.join(names)})" if names else ""


_PLAIN_SCALARS = (type(None), bool, int, float, str)


def _plain(value, where: str, path):
    """``value`` as plain data: tuples -> lists, numpy scalars -> python numbers; anything else raises."""
    if isinstance(value, np.generic):
        value = value.item()
    if type(value) in _PLAIN_SCALARS:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]", path) for i, v in enumerate(value)]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _plain(v, f"{where}.{k}", path) for k, v in value.items()}
    raise DataError(f"cannot save a {type(value).__name__} ({value!r}): a model file holds only tensors and "
                    "plain data (dict / list / str / int / float / bool / None)", path=path, field=where)


def _non_plain_at(value, where: str):
    """Key path and type of the first value in ``value`` that is not plain data, or None."""
    if type(value) in _PLAIN_SCALARS:
        return None
    if isinstance(value, (list, tuple)):  # tuples: files of earlier versions may hold them
        items = ((f"{where}[{i}]", v) for i, v in enumerate(value))
    elif isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            return f"{where}: a key that is not a string"
        items = ((f"{where}.{k}", v) for k, v in value.items())
    else:
        return f"{where}: {type(value).__module__}.{type(value).__qualname__}"
    for key, v in items:
        found = _non_plain_at(v, key)
        if found is not None:
            return found
    return None
