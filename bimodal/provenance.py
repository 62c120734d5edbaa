"""What made a result: package versions, git commit, device, time."""
from __future__ import annotations

import datetime as _dt
import platform
import subprocess
from pathlib import Path


def git_commit(cwd=None) -> str | None:
    """The git commit of the source tree (``+dirty`` if it has uncommitted changes), or None."""
    cwd = cwd or Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10)
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in ("bimodal", "torch", "torchaudio", "numpy", "scipy", "scikit-learn", "opencv-python-headless",
                 "soundfile", "espeakng-loader"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def provenance(device=None, seed=None, config=None) -> dict:
    """A dict to store beside every result so it can be regenerated."""
    import torch

    dev = str(device) if device is not None else None
    info = {
        "time_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "versions": package_versions(),
        "platform": platform.platform(),
        "device": dev,
        "cuda_device_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch_threads": torch.get_num_threads(),
    }
    if seed is not None:
        info["seed"] = seed
    if config is not None:
        info["config"] = config
    return info
