"""Save / load of every model: one file holds the model's class name, constructor config,
state dict and training history.

Every subclass of :class:`Persistable` is recorded by class name when it is defined, so
``Persistable.load(path)`` rebuilds whichever model the file holds.
"""
from __future__ import annotations

import copy
import importlib

import torch

from .errors import DataError
from .io import atomic_torch_save

_REGISTRY: dict[str, type] = {}  # class name -> Persistable subclass
_MODEL_MODULES = (".rbm", ".dbn", ".autoencoder", ".conv_frontend")


class Persistable:
    """Save / load for models whose constructor arguments are returned by ``config()``.

    The file holds ``{"class", "config", "state_dict", "history"}`` and is written atomically,
    so a crash never leaves half a model on disk.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    def config(self) -> dict:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    def save(self, path):
        """Write the constructor config, the state dict and ``history`` to ``path`` atomically."""
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        payload = {"class": type(self).__name__, "config": self.config(), "state_dict": state,
                   "history": copy.deepcopy(self.history)}
        return atomic_torch_save(payload, path)

    @classmethod
    def load(cls, path, device=None):
        """Rebuild a model saved with :meth:`save` on ``device`` (default: CUDA if available).

        ``Persistable.load(path)`` loads whichever model class the file records."""
        try:
            payload = torch.load(path, map_location="cpu", weights_only=False)
        except (OSError, RuntimeError, EOFError) as exc:
            raise DataError(f"cannot read a saved model: {exc}", path=path) from exc
        if not isinstance(payload, dict) or "config" not in payload or "state_dict" not in payload:
            raise DataError("not a bimodal model file (expected keys 'class', 'config', 'state_dict')",
                            path=path)
        if cls is Persistable:
            cls = model_class(payload.get("class"), path)
        if payload.get("class") != cls.__name__:
            raise DataError(f"holds a {payload.get('class')!r}, expected {cls.__name__!r}", path=path,
                            field="class")
        model = cls._from_config(dict(payload["config"]), device=device)
        model.load_state_dict(payload["state_dict"])
        model._set_history(payload.get("history", []))
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
