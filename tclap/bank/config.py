"""Settings of a bank build, the reasons a recording is left out, and the conversions a clip can go through.

:class:`BuildConfig` holds both kinds of settings: the conversion ones (:meth:`BuildConfig.conversion`) are fixed
for an output folder, since its converted clips depend on them; the choice ones (class sizes, hold-out) are not.
:class:`Rejected` is what every check raises for a recording that cannot enter the bank; ``REJECT_REASONS`` and
``CONVERSIONS`` are the keys ``bank.json`` counts under, in the order the summary lists them.
"""

from __future__ import annotations

from dataclasses import dataclass

from basekit.errors import UserError

FORMAT = "tclap-bank/1"
#: every reason a recording is left out, in the order the summary lists them.
REJECT_REASONS = {
    "licence_unknown": "licence unknown",
    "unreadable": "cannot be decoded",
    "low_rate": "sample rate below the minimum",
    "silent": "silent",
    "too_short": "too short after trimming silence",
    "duplicate": "same audio as another recording",
    "ambiguous_label": "claimed by two classes",
    "class_too_small": "its class has too few recordings",
}
CONVERSIONS = {
    "high_rate": "resampled down from above 48 kHz",
    "deep_bits": "24-bit / 32-bit / float written at 16 bits",
    "stereo": "several channels mixed to mono",
    "stereo_cancel": "channels cancel when mixed: left channel kept",
    "looped": "SoundFont loop played to 1 s",
    "cropped": "cut to the longest clip length",
}


@dataclass(frozen=True)
class BuildConfig:
    """Settings of one bank build (the conversion ones are fixed for an output folder; the choice ones are not).

    Attributes:
        sr: sample rate of the written clips.
        min_rate: recordings below this rate are rejected.
        min_seconds: least sound left after trimming silence.
        max_seconds: longer recordings are cut (a clip bank holds events, not soundscapes).
        trim_db: leading/trailing 10 ms frames this far below the loudest frame are trimmed.
        silence_dbfs: a recording whose peak is below this is silent.
        min_per_class: classes with fewer usable recordings are dropped (at least ``min_heldout + 2``, so that
            training keeps two recordings).
        max_per_class: at most this many recordings per class are kept.
        heldout_fraction / min_heldout: held-out recordings per class: ``max(min_heldout, round(f * n))``.
    """

    sr: int = 32000
    min_rate: int = 16000
    min_seconds: float = 0.25
    max_seconds: float = 10.0
    trim_db: float = 40.0
    silence_dbfs: float = -60.0
    min_per_class: int = 6
    max_per_class: int = 60
    heldout_fraction: float = 0.2
    min_heldout: int = 2

    def conversion(self) -> dict:
        """The settings that change the converted clips (a resumed build must use the same)."""
        keys = ("sr", "min_rate", "min_seconds", "max_seconds", "trim_db", "silence_dbfs")
        return {"format": FORMAT, **{k: getattr(self, k) for k in keys}}

    def check(self) -> None:
        if self.sr < 8000:
            raise UserError(f"--sr {self.sr}: use at least 8000 Hz")
        if self.min_heldout < 1:
            raise UserError("--min-heldout must be at least 1")
        if self.min_per_class < self.min_heldout + 2:
            raise UserError(
                f"--min-per-class {self.min_per_class} must be at least --min-heldout + 2 = {self.min_heldout + 2} "
                "(held-out recordings plus two for training)"
            )
        if self.max_per_class < self.min_per_class:
            raise UserError(f"--max-per-class {self.max_per_class} is below --min-per-class {self.min_per_class}")
        if not 0 <= self.heldout_fraction < 1:
            raise UserError(f"--heldout-fraction {self.heldout_fraction} must be in [0, 1)")
        if not 0 < self.min_seconds < self.max_seconds:
            raise UserError("need 0 < --min-seconds < --max-seconds")


class Rejected(Exception):
    """A recording that cannot enter the bank: ``reason`` (a key of REJECT_REASONS) and a detail line."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail

