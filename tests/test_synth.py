"""The built-in sound-event bank: named classes, seeded variation, split rule, distinct spectra."""

import hashlib

import numpy as np
import pytest

from basekit.errors import UserError
from tclap.synth import (
    EVENT_CLASSES,
    EVENT_PHRASES,
    instance_for_split,
    instance_split,
    render_event,
)

REQUIRED_PHRASES = ["a beep", "a burst of noise", "a rising chirp", "a knock", "a ringing bell", "a siren", "a ticking clock"]


def test_at_least_twelve_named_classes_with_the_required_phrases():
    assert len(EVENT_CLASSES) >= 12
    assert set(EVENT_CLASSES) == set(EVENT_PHRASES)
    phrases = list(EVENT_PHRASES.values())
    for p in REQUIRED_PHRASES:
        assert p in phrases
    assert len(set(phrases)) == len(phrases)
    for p in phrases:  # natural noun phrases that start with an article
        assert p.split()[0] in ("a", "an")


@pytest.mark.parametrize("label", EVENT_CLASSES)
def test_instances_are_deterministic_varied_and_within_bounds(label):
    sr = 16000
    waves = [render_event(label, i, sr) for i in range(12)]
    digests = set()
    for i, w in enumerate(waves):
        assert w.dtype == np.float32 and w.ndim == 1
        assert 0.3 <= len(w) / sr <= 1.5
        assert np.all(np.isfinite(w))
        peak = float(np.max(np.abs(w)))
        assert 0.34 <= peak <= 0.91
        # energy starts at the first samples (attack <= 10 ms) and the event ends at exactly zero
        assert np.sqrt(np.mean(w[: int(0.012 * sr)] ** 2)) > 1e-3
        assert w[-1] == 0.0
        assert np.array_equal(w, render_event(label, i, sr))
        digests.add(hashlib.sha256(w.tobytes()).hexdigest())
    assert len(digests) == len(waves)  # no two instances identical
    durations = {len(w) for w in waves}
    assert len(durations) > 3  # the duration varies per instance


@pytest.mark.parametrize("sr", [8000, 22050, 48000])
def test_any_sample_rate_gives_the_same_event(sr):
    # Parameters do not depend on sr: the duration matches 16 kHz to within a sample or two.
    for label in ("beep", "siren", "clock_tick", "hum"):
        a = render_event(label, 3, 16000)
        b = render_event(label, 3, sr)
        assert abs(len(a) / 16000 - len(b) / sr) < 2.0 / min(sr, 16000)
        assert np.isclose(np.max(np.abs(a)), np.max(np.abs(b)), rtol=0.05)


def _band_energy_share(w, sr, lo, hi):
    spec = np.abs(np.fft.rfft(w.astype(np.float64))) ** 2
    f = np.fft.rfftfreq(len(w), 1 / sr)
    return spec[(f >= lo) & (f < hi)].sum() / spec.sum()


def _centroid(w, sr):
    spec = np.abs(np.fft.rfft(w.astype(np.float64))) ** 2
    f = np.fft.rfftfreq(len(w), 1 / sr)
    return float((spec * f).sum() / spec.sum())


def test_classes_differ_in_spectrum_and_trajectory():
    sr = 16000
    for i in range(5):
        hum = render_event("hum", i, sr)
        assert _band_energy_share(hum, sr, 0, 400) > 0.9
        tick = render_event("clock_tick", i, sr)
        assert _band_energy_share(tick, sr, 2000, 8000) > 0.8
        beep = render_event("beep", i, sr)
        assert _band_energy_share(beep, sr, 650, 1350) > 0.9
        noise = render_event("noise_burst", i, sr)
        assert _band_energy_share(noise, sr, 2000, 8000) > 0.3  # broadband
        up = render_event("rising_chirp", i, sr)
        half = len(up) // 2
        assert _centroid(up[:half], sr) < _centroid(up[half:], sr) - 500
        down = render_event("falling_whistle", i, sr)
        half = len(down) // 2
        assert _centroid(down[:half], sr) > _centroid(down[half:], sr) + 500
        bell = render_event("bell", i, sr)
        q = len(bell) // 4
        assert np.sqrt(np.mean(bell[:q] ** 2)) > 4 * np.sqrt(np.mean(bell[-q:] ** 2))  # decays


def test_impulse_classes_have_silent_gaps_between_hits():
    sr = 16000
    w = render_event("knock", 0, sr)
    frames = np.sqrt(np.mean(w[: len(w) // 160 * 160].reshape(-1, 160) ** 2, axis=1))
    assert (frames < 0.01 * frames.max()).sum() >= 2
    assert (frames > 0.1 * frames.max()).sum() >= 2


def test_many_instances_are_finite_and_bounded():
    # A wide sweep at a low rate (cheap) catches parameter corners such as NaN from a negative base ** x.
    for label in EVENT_CLASSES:
        for i in range(150):
            w = render_event(label, i, 8000)
            assert np.all(np.isfinite(w)), (label, i)
            assert 0.3 <= len(w) / 8000 <= 1.5 and np.max(np.abs(w)) <= 0.9 + 1e-6, (label, i)


def test_instance_split_holds_out_one_in_five():
    brute = ["heldout" if i % 5 == 4 else "train" for i in range(100)]
    assert [instance_split(i) for i in range(100)] == brute
    train = [i for i in range(200) if i % 5 != 4]
    held = [i for i in range(200) if i % 5 == 4]
    assert [instance_for_split(j, "train") for j in range(len(train))] == train
    assert [instance_for_split(j, "heldout") for j in range(len(held))] == held


def test_bad_input_is_a_user_error():
    with pytest.raises(UserError, match="unknown built-in event"):
        render_event("trumpet", 0)
    with pytest.raises(UserError, match=">= 0"):
        render_event("beep", -1)
    with pytest.raises(UserError, match="too low"):
        render_event("beep", 0, sr=1000)
    with pytest.raises(UserError):
        instance_for_split(0, "test")
