"""The one check of a user-given torch device (``--device``), before anything is loaded onto it."""

from __future__ import annotations

import torch

from .errors import ConfigError

CHOICES = "use cpu, cuda, cuda:N or mps"


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device that exists on this machine; otherwise a one-line ConfigError.

    Without this an unknown name (``tpu``) surfaced as a 'corrupt safetensors file' and ``cuda`` on a
    CPU-only machine as a pinned-memory traceback.
    """
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"device {str(device)[:40]!r} is not a torch device; {CHOICES}") from None
    if resolved.type == "cpu":
        return torch.device("cpu")
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {str(device)!r}: no CUDA device is available on this machine; use cpu")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ConfigError(f"device {str(device)!r}: this machine has {torch.cuda.device_count()} CUDA "
                              f"device(s), numbered from 0")
        return resolved
    if resolved.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"device {str(device)!r}: MPS is not available on this machine; use cpu")
        return resolved
    raise ConfigError(f"device {str(device)!r} is not supported; {CHOICES}")
