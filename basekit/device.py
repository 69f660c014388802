"""``--device`` for every command that runs a model: ``auto`` (the default) picks CUDA when torch sees a GPU.

``resolve_device("auto")`` is ``"cuda"`` when ``torch.cuda.is_available()``, else ``"cpu"``; any other name is
checked here, so a typo or a GPU that is not there is one line before a model loads, not a traceback after.
torch is imported only when a device is resolved.
"""

from __future__ import annotations

from basekit.errors import UserError

DEVICE_HELP = "torch device: auto (default: cuda when a GPU is visible, else cpu), cpu, cuda or cuda:N"


def resolve_device(name: str | None, flag: str = "--device") -> str:
    """``auto`` / ``None`` -> ``"cuda"`` or ``"cpu"``; ``cpu``, ``cuda``, ``cuda:N``, ``mps`` are checked and returned."""
    import torch  # noqa: PLC0415 - lazy: basekit imports without torch

    s = "auto" if name is None else str(name).strip().lower()
    if s == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(s)
    except (RuntimeError, ValueError):
        raise UserError(f"{flag} {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"{flag} {name}: torch sees no CUDA device here; use {flag} auto or cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"{flag} {name}: only {torch.cuda.device_count()} CUDA device(s) are visible "
                            f"(cuda:0 .. cuda:{torch.cuda.device_count() - 1})")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise UserError(f"{flag} {name}: torch sees no Apple MPS device here; use {flag} auto or cpu")
    elif dev.type != "cpu":
        raise UserError(f"{flag} {name!r}: use auto, cpu, cuda or cuda:N")
    return str(dev)


__all__ = ["DEVICE_HELP", "resolve_device"]
