"""The built-in procedural sound-event bank: named, varied, seeded events at any sample rate.

This is the embedded default data set for the whole toolkit (mix-ups, the tiny models, the AudioLDM
recipe and the evaluation's event detector all start from it), so the classes are chosen to be easy to
tell apart by a tiny model on a CPU: they differ in spectrum (low hum vs. high ticks vs. broadband noise),
in pitch trajectory (rising chirp vs. falling whistle vs. wailing siren) and in envelope (steady beep vs.
decaying bell vs. trains of short impulses).

Every event is a function of ``(label, instance)`` only: the parameters (pitch, duration 0.3-1.5 s,
envelope times, level, repetition rate, ...) are drawn from a :class:`numpy.random.Generator` seeded with
``SeedSequence([crc32(label), instance])``, so an instance renders the same on every machine and at every
sample rate (the parameters do not depend on ``sr``; only the sampling does), and no two instances are
identical because every instance draws its own continuous parameters.

Instance split: instance ``i`` is **held out** when ``i % 5 == 4`` (one in five) and used for training
otherwise. Held-out instances never reach training mixes (see :func:`instance_split`,
:func:`instance_for_split`).

Every rendered event starts with energy at its first sample (attack <= 10 ms) and ends with a short
fade-out to zero, so the onset/offset written into a manifest is where the sound really starts and ends.
"""

from __future__ import annotations

import zlib
from typing import Callable, Literal

import numpy as np

from basekit.errors import UserError

Split = Literal["train", "heldout"]

#: label -> natural caption phrase (a noun phrase that reads well in "X followed by Y").
EVENT_PHRASES: dict[str, str] = {
    "beep": "a beep",
    "noise_burst": "a burst of noise",
    "rising_chirp": "a rising chirp",
    "knock": "a knock",
    "bell": "a ringing bell",
    "siren": "a siren",
    "clock_tick": "a ticking clock",
    "falling_whistle": "a falling whistle",
    "buzzer": "a buzzer",
    "drum_roll": "a drum roll",
    "bark": "a dog-like bark",
    "hum": "a low hum",
    "hand_clap": "a clap of hands",
}

#: the class labels, in a fixed order (index = class id).
EVENT_CLASSES: tuple[str, ...] = tuple(EVENT_PHRASES)

#: one in HELDOUT_EVERY instances (those with ``instance % HELDOUT_EVERY == HELDOUT_EVERY - 1``) is held out.
HELDOUT_EVERY = 5

MIN_DURATION_S = 0.3
MAX_DURATION_S = 1.5


def instance_split(instance: int) -> Split:
    """``"heldout"`` for one in five instances (``instance % 5 == 4``), ``"train"`` for the others."""
    if instance < 0:
        raise UserError(f"event instance numbers are >= 0, got {instance}")
    return "heldout" if instance % HELDOUT_EVERY == HELDOUT_EVERY - 1 else "train"


def instance_for_split(j: int, split: Split) -> int:
    """The ``j``-th instance number (j >= 0) that belongs to ``split``.

    ``train``: 0, 1, 2, 3, 5, 6, 7, 8, 10, ...; ``heldout``: 4, 9, 14, ... so that
    ``instance_split(instance_for_split(j, s)) == s`` for every ``j``.
    """
    if j < 0:
        raise ValueError(f"j must be >= 0, got {j}")
    if split == "train":
        per = HELDOUT_EVERY - 1
        return HELDOUT_EVERY * (j // per) + j % per
    if split == "heldout":
        return HELDOUT_EVERY * j + HELDOUT_EVERY - 1
    raise UserError(f"unknown split {split!r}; use 'train' or 'heldout'")


def event_rng(label: str, instance: int) -> np.random.Generator:
    """The generator behind one event instance: ``SeedSequence([crc32(label), instance])``.

    crc32 (not Python's ``hash``) keeps the seed stable across processes and Python versions, and keying by
    the label (not its index) means adding a class never changes the instances of the others.
    """
    return np.random.default_rng(np.random.SeedSequence([zlib.crc32(label.encode("utf-8")), int(instance)]))


# ----------------------------------------------------------------------------------------------------------
# Building blocks. ``t`` is time in seconds ``[T]``; everything returns float64 ``[T]``.


def _time(duration: float, sr: int) -> np.ndarray:
    return np.arange(max(1, int(round(duration * sr)))) / sr


def _ar_envelope(t: np.ndarray, attack: float, release: float) -> np.ndarray:
    """Linear attack to 1, flat, linear release to 0 at the end."""
    dt = t[1] - t[0] if len(t) > 1 else 1.0
    dur = t[-1] + dt
    # The first sample is already above zero (t + dt), so energy starts at the event's first sample.
    env = np.minimum(1.0, (t + dt) / max(attack, 1e-4))
    env = np.minimum(env, (dur - t) / max(release, 1e-4))
    return np.clip(env, 0.0, 1.0)


def _decay_envelope(t: np.ndarray, attack: float, tau: float) -> np.ndarray:
    """Fast attack then exponential decay with time constant ``tau``."""
    return np.minimum(1.0, (t + 1e-4) / max(attack, 1e-4)) * np.exp(-t / tau)


def _sweep(t: np.ndarray, f0: float, f1: float, curve: float) -> np.ndarray:
    """Sine whose frequency goes from f0 to f1 along ``(t/T)**curve`` (phase = integral of frequency)."""
    dur = t[-1] if t[-1] > 0 else 1.0
    freq = f0 + (f1 - f0) * (t / dur) ** curve
    phase = 2 * np.pi * np.cumsum(freq) * (t[1] - t[0] if len(t) > 1 else 0.0)
    return np.sin(phase)


def _impulse_train(t: np.ndarray, times: np.ndarray, make_hit: Callable[[np.ndarray], np.ndarray], sr: int) -> np.ndarray:
    """Place copies of ``make_hit(local_t)`` (a short sound) at the given start times."""
    out = np.zeros_like(t)
    for start in times:
        i0 = int(round(start * sr))
        if i0 >= len(t):
            break
        local = t[: len(t) - i0]
        out[i0:] += make_hit(local)
    return out


def _bandpass_noise(rng: np.random.Generator, n: int, sr: int, lo: float, hi: float) -> np.ndarray:
    """White noise band-limited to [lo, hi] Hz by zeroing FFT bins (no filter state, exact at any sr)."""
    x = rng.standard_normal(n)
    spec = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    spec[(freqs < lo) | (freqs > min(hi, sr / 2))] = 0.0
    y = np.fft.irfft(spec, n)
    return y / (np.max(np.abs(y)) + 1e-12)


# ----------------------------------------------------------------------------------------------------------
# The classes. Each takes (rng, sr) and returns float64 [T] with peak ~1; level is applied afterwards.
# Frequencies are capped below Nyquist so that low sample rates (8 kHz) still render every class.


def _nyq_cap(f: float, sr: int) -> float:
    return min(f, 0.45 * sr)


def _beep(rng, sr):
    t = _time(rng.uniform(0.3, 0.9), sr)
    f = _nyq_cap(rng.uniform(700, 1300), sr)
    return np.sin(2 * np.pi * f * t) * _ar_envelope(t, rng.uniform(0.003, 0.008), rng.uniform(0.01, 0.03))


def _noise_burst(rng, sr):
    t = _time(rng.uniform(0.3, 0.8), sr)
    tilt = rng.uniform(0.0, 0.5)  # spectral colour: mix white with a low-passed copy
    white = rng.standard_normal(len(t))
    low = np.convolve(white, np.ones(4) / 4, mode="same")
    x = (1 - tilt) * white + tilt * low
    return x / np.max(np.abs(x)) * _decay_envelope(t, 0.002, rng.uniform(0.08, 0.25)) * _ar_envelope(t, 0.001, 0.01)


def _rising_chirp(rng, sr):
    t = _time(rng.uniform(0.4, 1.2), sr)
    f0 = _nyq_cap(rng.uniform(250, 500), sr)
    f1 = _nyq_cap(rng.uniform(2000, 3500), sr)
    return _sweep(t, f0, f1, rng.uniform(0.8, 1.6)) * _ar_envelope(t, 0.005, rng.uniform(0.02, 0.05))


def _knock(rng, sr):
    n_hits = int(rng.integers(2, 5))
    spacing = rng.uniform(0.1, 0.22)
    dur = min(MAX_DURATION_S, max(MIN_DURATION_S, spacing * (n_hits - 1) + 0.15))
    t = _time(dur, sr)
    f = rng.uniform(140, 260)
    tau = rng.uniform(0.015, 0.035)
    times = np.arange(n_hits) * spacing * (1 + rng.uniform(-0.1, 0.1, n_hits))
    times[0] = 0.0
    hit = lambda lt: np.sin(2 * np.pi * f * lt) * _decay_envelope(lt, 0.001, tau)  # noqa: E731
    return _impulse_train(t, np.sort(times), hit, sr) * _ar_envelope(t, 0.001, 0.01)


def _bell(rng, sr):
    t = _time(rng.uniform(0.8, 1.5), sr)
    f = rng.uniform(450, 900)
    tau = rng.uniform(0.3, 0.6)
    x = np.zeros_like(t)
    # Inharmonic partials of a church-bell-like spectrum, higher partials decay faster.
    for ratio, amp in ((1.0, 1.0), (2.76, 0.5), (5.40, 0.3), (8.93, 0.15)):
        fr = f * ratio
        if fr < 0.45 * sr:
            x += amp * np.sin(2 * np.pi * fr * t + rng.uniform(0, 2 * np.pi)) * np.exp(-t * ratio**0.5 / tau)
    return x / np.max(np.abs(x)) * np.minimum(1.0, (t + 1e-4) / 0.002) * _ar_envelope(t, 0.001, 0.02)


def _siren(rng, sr):
    t = _time(rng.uniform(0.9, 1.5), sr)
    centre = rng.uniform(800, 1100)
    depth = rng.uniform(250, 400)
    rate = rng.uniform(2.0, 4.0)
    freq = np.minimum(centre + depth * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)), 0.45 * sr)
    phase = 2 * np.pi * np.cumsum(freq) / sr
    x = np.sin(phase) + 0.3 * np.sin(2 * phase)
    return x / np.max(np.abs(x)) * _ar_envelope(t, 0.008, rng.uniform(0.03, 0.08))


def _clock_tick(rng, sr):
    period = rng.uniform(0.12, 0.22)
    n_ticks = int(rng.integers(4, 8))
    t = _time(min(MAX_DURATION_S, max(MIN_DURATION_S, period * (n_ticks - 1) + 0.04)), sr)
    f = _nyq_cap(rng.uniform(2800, 4200), sr)
    tau = rng.uniform(0.003, 0.006)
    tock = rng.uniform(0.7, 0.9)  # alternate tick / tock pitch, as in a real clock
    x = np.zeros_like(t)
    for k in range(n_ticks):
        i0 = int(round(k * period * sr))
        if i0 >= len(t):
            break
        lt = t[: len(t) - i0]
        fk = f * (1.0 if k % 2 == 0 else tock)  # alternate tick / tock
        x[i0:] += np.sin(2 * np.pi * fk * lt + np.pi / 2) * _decay_envelope(lt, 0.0005, tau)
    return x * _ar_envelope(t, 0.0005, 0.005)


def _falling_whistle(rng, sr):
    t = _time(rng.uniform(0.5, 1.3), sr)
    f0 = _nyq_cap(rng.uniform(2200, 3200), sr)
    f1 = _nyq_cap(rng.uniform(600, 1000), sr)
    x = _sweep(t, f0, f1, rng.uniform(0.7, 1.4))
    return x * _ar_envelope(t, 0.005, rng.uniform(0.02, 0.06))


def _buzzer(rng, sr):
    t = _time(rng.uniform(0.4, 1.2), sr)
    f = rng.uniform(90, 180)
    x = np.zeros_like(t)
    for k in range(1, 40):  # band-limited square wave: odd harmonics only
        if (2 * k - 1) * f >= 0.45 * sr:
            break
        x += np.sin(2 * np.pi * (2 * k - 1) * f * t) / (2 * k - 1)
    return x / np.max(np.abs(x)) * _ar_envelope(t, 0.004, 0.02)


def _drum_roll(rng, sr):
    t = _time(rng.uniform(0.6, 1.5), sr)
    rate = rng.uniform(14, 22)
    f = rng.uniform(70, 120)
    times = np.arange(0, t[-1] - 0.02, 1.0 / rate)
    noise = _bandpass_noise(rng, len(t), sr, 60, 600)
    hit = lambda lt: np.sin(2 * np.pi * f * lt) * _decay_envelope(lt, 0.001, 0.03)  # noqa: E731
    x = _impulse_train(t, times, hit, sr) + 0.25 * noise * (1 - np.exp(-t / 0.05))
    # clip: sin() can round to a tiny negative at the end, and a negative base ** fraction is NaN
    swell = 0.6 + 0.4 * np.clip(np.sin(np.pi * t / t[-1]), 0.0, 1.0) ** rng.uniform(0.5, 2.0)
    x = x * swell
    return x / np.max(np.abs(x)) * _ar_envelope(t, 0.001, 0.02)


def _bark(rng, sr):
    n_barks = int(rng.integers(1, 3))
    bark_len = rng.uniform(0.15, 0.25)
    gap = rng.uniform(0.12, 0.25)
    t = _time(max(MIN_DURATION_S, n_barks * bark_len + (n_barks - 1) * gap), sr)
    f = rng.uniform(350, 600)
    x = np.zeros_like(t)
    for b in range(n_barks):
        i0 = int(round(b * (bark_len + gap) * sr))
        lt = _time(bark_len, sr)
        # Pitch falls quickly inside each bark; a few harmonics plus breath noise, formant-ish weighting.
        freq = f * (1.3 - 0.5 * lt / bark_len)
        phase = 2 * np.pi * np.cumsum(freq) / sr
        voice = sum(np.sin(h * phase) / h**0.7 for h in range(1, 7) if h * f * 1.3 < 0.45 * sr)
        breath = 0.3 * rng.standard_normal(len(lt))
        env = np.minimum(1.0, (lt + 1e-4) / 0.004) * np.exp(-lt / (bark_len * 0.45))
        seg = (voice + breath) * env
        seg = seg[: len(t) - i0]
        x[i0 : i0 + len(seg)] += seg
    return x / np.max(np.abs(x)) * _ar_envelope(t, 0.001, 0.01)


def _hum(rng, sr):
    t = _time(rng.uniform(0.6, 1.5), sr)
    f = rng.uniform(55, 120)
    x = np.sin(2 * np.pi * f * t) + 0.5 * np.sin(2 * np.pi * 2 * f * t) + 0.25 * np.sin(2 * np.pi * 3 * f * t)
    x *= 1 + 0.15 * np.sin(2 * np.pi * rng.uniform(3, 6) * t)  # slow tremolo
    return x / np.max(np.abs(x)) * _ar_envelope(t, 0.01, rng.uniform(0.04, 0.1))


def _hand_clap(rng, sr):
    n_claps = int(rng.integers(1, 4))
    spacing = rng.uniform(0.18, 0.35)
    t = _time(max(MIN_DURATION_S, (n_claps - 1) * spacing + 0.12), sr)
    noise = _bandpass_noise(rng, len(t), sr, 900, 4000)
    tau = rng.uniform(0.012, 0.025)
    env = np.zeros_like(t)
    for c in range(n_claps):
        i0 = int(round(c * spacing * sr))
        lt = t[: len(t) - i0]
        env[i0:] += _decay_envelope(lt, 0.0008, tau)
    return noise * env / np.max(env) * _ar_envelope(t, 0.0005, 0.005)


_RENDERERS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "beep": _beep,
    "noise_burst": _noise_burst,
    "rising_chirp": _rising_chirp,
    "knock": _knock,
    "bell": _bell,
    "siren": _siren,
    "clock_tick": _clock_tick,
    "falling_whistle": _falling_whistle,
    "buzzer": _buzzer,
    "drum_roll": _drum_roll,
    "bark": _bark,
    "hum": _hum,
    "hand_clap": _hand_clap,
}
assert set(_RENDERERS) == set(EVENT_CLASSES)


def render_event(label: str, instance: int, sr: int = 16000) -> np.ndarray:
    """Render one instance of a built-in event class.

    Args:
        label: one of :data:`EVENT_CLASSES`.
        instance: instance number >= 0 (see :func:`instance_split` for which are held out).
        sr: sample rate in Hz (>= 4000).

    Returns:
        float32 ``[T]`` with ``0.3 s <= T / sr <= 1.5 s``, peak level in [0.35, 0.9] (per-instance), energy
        from the first sample (attack <= 10 ms) and a fade to exactly 0 at the end.
    """
    if label not in _RENDERERS:
        raise UserError(f"unknown built-in event {label!r}; known: {', '.join(EVENT_CLASSES)}")
    if instance < 0:
        raise UserError(f"event instance numbers are >= 0, got {instance}")
    if sr < 4000:
        raise UserError(f"sample rate {sr} Hz is too low for the built-in bank; use >= 4000 Hz")
    rng = event_rng(label, instance)
    # Draw the level first so that it does not depend on how many draws the renderer makes.
    level = rng.uniform(0.35, 0.9)
    x = _RENDERERS[label](rng, int(sr))
    n_max = int(round(MAX_DURATION_S * sr))
    x = x[:n_max]
    peak = np.max(np.abs(x))
    x = x * (level / peak)
    x[-1] = 0.0  # the envelope reaches 0 at the end; make it exact
    return x.astype(np.float32)


def event_phrase(label: str) -> str:
    """The caption phrase of a built-in label (``"beep"`` -> ``"a beep"``)."""
    try:
        return EVENT_PHRASES[label]
    except KeyError:
        raise UserError(f"unknown built-in event {label!r}; known: {', '.join(EVENT_CLASSES)}") from None
