"""Third-party progress bars (transformers' "Loading weights 137/137", diffusers', huggingface_hub's) off inside a
command unless it was asked for ``--verbose``, and put back as they were when the command ends.

Nothing changes at import time: :func:`quiet_third_party` is a context manager a command enters around its work.
Each library keeps its own switch, so the block turns off huggingface_hub's (which transformers copies when it
is first imported) and those of transformers / diffusers that are imported by then; ``load`` names libraries to
import now, for a command that is about to load them anyway, so that their switches can be set too.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from typing import Iterator, Sequence

# library -> its logging module (each has is_progress_bar_enabled / enable_progress_bar / disable_progress_bar)
_LIBS = {"transformers": "transformers.utils.logging", "diffusers": "diffusers.utils.logging"}


def _logging_module(lib: str):
    return importlib.import_module(_LIBS[lib])


@contextlib.contextmanager
def quiet_third_party(verbose: bool = False, load: Sequence[str] = ()) -> Iterator[None]:
    """Inside the block, no progress bars from huggingface_hub / transformers / diffusers (unless ``verbose``).

    Args:
        verbose: leave everything as it is.
        load: libraries (``"transformers"``, ``"diffusers"``) to import now, so that their bars are switched off
            too; the others are switched only if already imported.
    """
    if verbose:
        yield
        return
    try:
        from huggingface_hub import utils as hub  # noqa: PLC0415 - light; a dependency of transformers/diffusers
    except ImportError:  # no hub library: nothing of theirs can draw a bar
        hub = None
    for lib in load:
        try:
            _logging_module(lib)
        except ImportError:
            pass
    hub_was_off = hub.are_progress_bars_disabled() if hub is not None else True
    before = {lib: _logging_module(lib).is_progress_bar_enabled() for lib in _LIBS if lib in sys.modules}
    if hub is not None and not hub_was_off:
        hub.disable_progress_bars()
    for lib in before:
        _logging_module(lib).disable_progress_bar()
    try:
        yield
    finally:
        for lib in _LIBS:
            if lib not in sys.modules:
                continue
            # a library first imported inside the block gets the state it would have had outside it
            on = before.get(lib, not hub_was_off)
            mod = _logging_module(lib)
            mod.enable_progress_bar() if on else mod.disable_progress_bar()
        if hub is not None and not hub_was_off:
            hub.enable_progress_bars()


__all__ = ["quiet_third_party"]
