"""tclap.audio: loading every format, resampling, BS.1770 loudness, pad/crop, bad input, atomic saves.

References are independent: scipy's polyphase resampler and the analytic sine for resampling, the published
BS.1770 / EBU Tech 3341 values for loudness, hand-worked arrays and transformers' ClapFeatureExtractor for
padding.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf
from scipy import signal as sps

from basekit.audio import (
    _k_weighting, list_audio_files, load_audio, load_audio_with_sr, loudness_lufs, loudness_normalize, pad_or_crop,
    peak_dbfs, peak_normalize, resample, save_audio, set_level,
)
from basekit.atomic import atomic_write_text
from basekit.errors import UserError


def _sine(freq: float, sr: int, seconds: float, amp: float = 1.0, phase: float = 0.0) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


# ---------------------------------------------------------------- loading


@pytest.mark.parametrize(
    "ext,fmt,subtype,sr,tol",
    [
        ("wav", "WAV", "FLOAT", 8000, 0.0),
        ("wav", "WAV", "PCM_16", 44100, 1 / 32768),
        ("flac", "FLAC", "PCM_24", 48000, 1 / 2**23),
        ("flac", "FLAC", "PCM_16", 22050, 1 / 32768),
    ],
)
@pytest.mark.parametrize("channels", [1, 2])
def test_load_lossless_formats_mono_and_stereo(tmp_path, ext, fmt, subtype, sr, tol, channels):
    left = _sine(440, sr, 0.5, 0.5)
    right = _sine(660, sr, 0.5, 0.25)
    data = left if channels == 1 else np.stack([left, right], axis=1)  # soundfile wants [T, C]
    path = tmp_path / f"clip.{ext}"
    sf.write(path, data, sr, format=fmt, subtype=subtype)

    wav, got_sr = load_audio_with_sr(path, mono=False)
    assert got_sr == sr and wav.dtype == np.float32
    assert wav.shape == (channels, len(left))
    np.testing.assert_allclose(wav[0], left, atol=tol + 1e-7)
    if channels == 2:
        np.testing.assert_allclose(wav[1], right, atol=tol + 1e-7)
    mono = load_audio(path)
    assert mono.shape == (len(left),)
    expected = left if channels == 1 else (left + right) / 2
    np.testing.assert_allclose(mono, expected, atol=tol + 1e-7)


@pytest.mark.parametrize("ext,fmt,sr", [("ogg", "OGG", 44100), ("mp3", "MP3", 22050), ("mp3", "MP3", 48000)])
@pytest.mark.parametrize("channels", [1, 2])
def test_load_lossy_formats(tmp_path, ext, fmt, sr, channels):
    x = _sine(440, sr, 1.0, 0.5)
    data = x if channels == 1 else np.stack([x, x], axis=1)
    path = tmp_path / f"clip.{ext}"
    sf.write(path, data, sr, format=fmt)
    wav, got_sr = load_audio_with_sr(path, mono=False)
    assert got_sr == sr and wav.shape[0] == channels and wav.dtype == np.float32
    # lossy codecs shift and shape the signal slightly: check length and the tone's level and pitch
    assert abs(wav.shape[1] - len(x)) < 0.1 * sr
    mid = wav[0, sr // 4 : 3 * sr // 4]
    assert np.sqrt(np.mean(mid**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)
    spec = np.abs(np.fft.rfft(mid * np.hanning(len(mid))))
    assert np.fft.rfftfreq(len(mid), 1 / sr)[spec.argmax()] == pytest.approx(440, abs=3)


def test_load_resamples_to_requested_rate(tmp_path):
    path = tmp_path / "a.flac"
    sf.write(path, _sine(1000, 44100, 1.0, 0.5), 44100)
    wav, sr = load_audio_with_sr(path, sr=16000)
    assert sr == 16000 and wav.shape == (16000,)
    np.testing.assert_allclose(wav[1000:-1000], _sine(1000, 16000, 1.0, 0.5)[1000:-1000], atol=2e-3)


# ---------------------------------------------------------------- resampling


@pytest.mark.parametrize("sr_in,sr_out", [(44100, 16000), (16000, 48000), (48000, 32000), (22050, 44100)])
def test_resample_matches_scipy_and_analytic_sine(sr_in, sr_out):
    seconds = 1.0
    # band-limited test signal: tones well inside the passband of both rates
    freqs = [220.0, 1234.5, 0.3 * min(sr_in, sr_out)]
    x = sum(_sine(f, sr_in, seconds, 0.2, phase=i) for i, f in enumerate(freqs))
    y = resample(x, sr_in, sr_out)
    assert y.dtype == np.float32 and len(y) == int(round(len(x) * sr_out / sr_in))
    g = np.gcd(sr_in, sr_out)
    ref = sps.resample_poly(x.astype(np.float64), sr_out // g, sr_in // g)
    analytic = sum(_sine(f, sr_out, seconds, 0.2, phase=i) for i, f in enumerate(freqs))
    core = slice(len(y) // 10, len(y) - len(y) // 10)  # skip filter edge transients
    assert np.abs(y[core] - ref[core]).max() < 2e-3
    assert np.abs(y[core] - analytic[core]).max() < 2e-3


def test_resample_stereo_equals_per_channel():
    x = np.stack([_sine(300, 44100, 0.3), _sine(700, 44100, 0.3, 0.5)])
    y = resample(x, 44100, 16000)
    assert y.shape == (2, resample(x[0], 44100, 16000).shape[0])
    np.testing.assert_allclose(y[0], resample(x[0], 44100, 16000), atol=1e-6)
    np.testing.assert_allclose(y[1], resample(x[1], 44100, 16000), atol=1e-6)
    np.testing.assert_array_equal(resample(x[0], 16000, 16000), x[0])  # same rate: unchanged
    with pytest.raises(UserError, match="positive"):
        resample(x[0], 0, 16000)


# ---------------------------------------------------------------- loudness


def test_k_weighting_reproduces_bs1770_48k_coefficients():
    # ITU-R BS.1770-4, tables 1 and 2 (48 kHz)
    (b1, a1), (b2, a2) = _k_weighting(48000)
    np.testing.assert_allclose(b1, [1.53512485958697, -2.69169618940638, 1.19839281085285], atol=1e-6)
    np.testing.assert_allclose(a1, [1.0, -1.69065929318241, 0.73248077421585], atol=1e-6)
    np.testing.assert_allclose(b2, [1.0, -2.0, 1.0])
    np.testing.assert_allclose(a2, [1.0, -1.99004745483398, 0.99007225036621], atol=1e-6)


@pytest.mark.parametrize("sr", [48000, 44100, 32000])
def test_loudness_reference_sines(sr):
    # BS.1770: a 0 dBFS 1 kHz sine in one channel reads -3.01 LKFS
    assert loudness_lufs(_sine(1000, sr, 2.0), sr) == pytest.approx(-3.01, abs=0.05)
    # 997 Hz at -20 dBFS: 20 dB lower
    assert loudness_lufs(_sine(997, sr, 2.0, 10 ** (-20 / 20)), sr) == pytest.approx(-23.01, abs=0.05)
    # EBU Tech 3341 case 1: stereo 1 kHz at -23 dBFS per channel reads -23.0 LUFS (channels are summed)
    s = _sine(1000, sr, 2.0, 10 ** (-23 / 20))
    assert loudness_lufs(np.stack([s, s]), sr) == pytest.approx(-23.0, abs=0.1)


def test_loudness_gating_ebu3341_case3_and_silence():
    sr = 48000
    quiet = _sine(1000, sr, 10.0, 10 ** (-36 / 20))
    loud = _sine(1000, sr, 60.0, 10 ** (-23 / 20))
    very_quiet = _sine(1000, sr, 10.0, 10 ** (-72 / 20))
    # EBU Tech 3341 case 3: 10 s at -36, 60 s at -23, 10 s at -36 dBFS (stereo) reads -23.0 +- 0.1 LUFS:
    # the relative gate drops the quiet parts
    x = np.concatenate([quiet, loud, quiet])
    assert loudness_lufs(np.stack([x, x]), sr) == pytest.approx(-23.0, abs=0.1)
    # case 4: -72 / -36 / -23 / -36 / -72 dBFS reads -23.0 too
    x = np.concatenate([very_quiet, quiet, loud, quiet, very_quiet])
    assert loudness_lufs(np.stack([x, x]), sr) == pytest.approx(-23.0, abs=0.1)
    # the absolute gate (-70 LUFS) ignores digital silence
    # 6 s of tone + 3 s of silence: 400 ms blocks every 100 ms; 57 blocks are all tone, 3 straddle the edge
    # (3/4, 1/2, 1/4 tone: all above both gates) and the rest are silent (below -70 LUFS, dropped).
    # Without the absolute gate the 27 silent blocks would pull the mean ~1.6 dB lower.
    y = np.concatenate([loud[: 6 * sr], np.zeros(3 * sr, np.float32)])
    expected = -23.01 + 10 * np.log10((57 + 0.75 + 0.5 + 0.25) / 60)
    assert loudness_lufs(np.stack([y, y]), sr) == pytest.approx(expected, abs=0.03)
    assert loudness_lufs(np.zeros(sr, np.float32), sr) == float("-inf")
    with pytest.raises(UserError, match="empty"):
        loudness_lufs(np.zeros(0, np.float32), sr)


@pytest.mark.parametrize("target", [-23.0, -16.0, -30.0])
def test_loudness_normalize_hits_target(target):
    sr = 16000
    rng = np.random.default_rng(1)
    x = (0.05 * rng.standard_normal(2 * sr)).astype(np.float32)
    y = loudness_normalize(x, sr, target)
    assert y.dtype == np.float32
    assert loudness_lufs(y, sr) == pytest.approx(target, abs=0.01)


def test_loudness_normalize_respects_peak_limit_and_silence():
    sr = 16000
    x = _sine(1000, sr, 1.0, 0.1)
    y = loudness_normalize(x, sr, target_lufs=0.0, peak_limit=0.5)  # +3 dB would clip: gain limited instead
    assert np.abs(y).max() == pytest.approx(0.5, rel=1e-4)
    silent = np.zeros(sr, np.float32)
    np.testing.assert_array_equal(loudness_normalize(silent, sr), silent)


def test_peak_normalize():
    x = np.array([0.1, -0.4, 0.2], np.float32)
    np.testing.assert_allclose(peak_normalize(x, 0.8), [0.2, -0.8, 0.4], rtol=1e-6)
    np.testing.assert_array_equal(peak_normalize(np.zeros(3, np.float32)), np.zeros(3))


# ---------------------------------------------------------------- pad / crop


def test_pad_or_crop_every_mode_hand_worked():
    x = np.array([1, 2, 3], np.float32)
    assert pad_or_crop(x, 8, "repeatpad").tolist() == [1, 2, 3, 1, 2, 3, 0, 0]
    assert pad_or_crop(x, 8, "repeat").tolist() == [1, 2, 3, 1, 2, 3, 1, 2]
    assert pad_or_crop(x, 8, "pad").tolist() == [1, 2, 3, 0, 0, 0, 0, 0]
    assert pad_or_crop(x, 8, "center").tolist() == [0, 0, 1, 2, 3, 0, 0, 0]
    assert pad_or_crop(x, 4, "repeatpad").tolist() == [1, 2, 3, 0]  # one whole copy, then zeros
    assert pad_or_crop(x, 3, "pad").tolist() == [1, 2, 3]
    long = np.arange(10, dtype=np.float32)
    for mode in ("repeatpad", "repeat", "pad", "center"):
        assert pad_or_crop(long, 4, mode).tolist() == [3, 4, 5, 6]  # centre crop: offset (10 - 4) // 2
    stereo = np.stack([x, -x])
    assert pad_or_crop(stereo, 7, "repeatpad").tolist() == [[1, 2, 3, 1, 2, 3, 0], [-1, -2, -3, -1, -2, -3, 0]]


def test_repeatpad_matches_clap_feature_extractor():
    from transformers import ClapFeatureExtractor

    fe = ClapFeatureExtractor(
        feature_size=16, sampling_rate=8000, hop_length=160, max_length_s=1, fft_window_size=256,
        frequency_max=4000, truncation="rand_trunc", padding="repeatpad",
    )
    x = _sine(500, 8000, 0.37, 0.5) + _sine(1300, 8000, 0.37, 0.2)
    ours = pad_or_crop(x, 8000, "repeatpad")
    a = fe([x], sampling_rate=8000, return_tensors="np").input_features
    b = fe([ours], sampling_rate=8000, return_tensors="np").input_features
    np.testing.assert_allclose(a, b, atol=1e-5)  # the extractor repeat-pads x internally exactly as we did


def test_random_crop_reproducible_with_generator():
    x = np.arange(1000, dtype=np.float32)
    a = pad_or_crop(x, 100, "random", np.random.default_rng(5))
    b = pad_or_crop(x, 100, "random", np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert np.all(np.diff(a) == 1) and 0 <= a[0] <= 900  # a contiguous slice
    g = np.random.default_rng(6)
    starts = {int(pad_or_crop(x, 100, "random", g)[0]) for _ in range(50)}
    assert len(starts) > 20
    assert pad_or_crop(x[:3], 7, "random", g).tolist() == [0, 1, 2, 0, 1, 2, 0]  # short: repeat-pad
    with pytest.raises(ValueError, match="Generator"):
        pad_or_crop(x, 100, "random")


def test_pad_or_crop_bad_arguments():
    with pytest.raises(ValueError, match="unknown pad mode"):
        pad_or_crop(np.arange(10.0), 4, "mirror")  # rejected even when only a crop is needed
    with pytest.raises(UserError, match="positive"):
        pad_or_crop(np.arange(10.0), 0)
    with pytest.raises(UserError, match="empty"):
        pad_or_crop(np.zeros(0), 4)


# ---------------------------------------------------------------- bad files


def test_bad_files_raise_user_error_naming_the_path(tmp_path):
    missing = tmp_path / "nope.wav"
    with pytest.raises(UserError, match="not found") as e:
        load_audio(missing)
    assert str(missing) in str(e.value)

    folder = tmp_path / "dir.wav"
    folder.mkdir()
    with pytest.raises(UserError, match="folder"):
        load_audio(folder)

    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(UserError, match="empty") as e:
        load_audio(empty)
    assert str(empty) in str(e.value)

    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(UserError, match="cannot decode") as e:
        load_audio(corrupt)
    assert str(corrupt) in str(e.value) and "\n" not in str(e.value)

    short = tmp_path / "short.wav"
    sf.write(short, _sine(440, 16000, 0.1), 16000)
    with pytest.raises(UserError, match="too short") as e:
        load_audio(short, min_seconds=0.5)
    assert str(short) in str(e.value)
    assert load_audio(short, min_seconds=0.1).shape == (1600,)

    no_samples = tmp_path / "nosamples.wav"
    sf.write(no_samples, np.zeros(0, np.float32), 16000)
    with pytest.raises(UserError, match="no samples"):
        load_audio(no_samples)

    nan = tmp_path / "nan.wav"
    sf.write(nan, np.array([0.0, np.nan, 0.1] * 100, np.float32), 16000, subtype="FLOAT")
    with pytest.raises(UserError, match="NaN"):
        load_audio(nan)


# ---------------------------------------------------------------- saving


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg"])
def test_save_audio_atomic_round_trip_and_overwrite(tmp_path, ext):
    path = tmp_path / "sub" / f"out.{ext}"
    x = _sine(440, 16000, 0.5, 0.5)
    assert save_audio(path, x, 16000) == path
    tol = 0.05 if ext == "ogg" else 1 / 32768 + 1e-7
    y, sr = load_audio_with_sr(path)
    assert sr == 16000
    if ext == "ogg":  # lossy: compare the level only
        assert np.sqrt(np.mean(y**2)) == pytest.approx(np.sqrt(np.mean(x**2)), rel=0.05)
    else:
        np.testing.assert_allclose(y, x, atol=tol)
    save_audio(path, np.stack([x, -x]) * 0.5, 16000)  # overwrite with a different, stereo clip
    z = load_audio(path, mono=False)
    assert z.shape[0] == 2
    if ext != "ogg":
        np.testing.assert_allclose(z[1], -0.5 * x, atol=tol)
    assert sorted(os.listdir(path.parent)) == [path.name]  # no temp files left behind


def test_save_audio_warns_or_refuses_beyond_full_scale_and_rejects_bad_arrays(tmp_path):
    with pytest.warns(UserWarning, match=r"2 sample\(s\) beyond full scale \(peak \+9\.5 dBFS\)"):  # 20 log10 3
        p = save_audio(tmp_path / "loud.wav", np.array([2.0, -3.0, 0.5], np.float32), 8000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(p), [1.0, -1.0, 0.5])
    with pytest.raises(UserError, match="beyond full scale"):
        save_audio(tmp_path / "refused.wav", np.array([1.5, 0.0], np.float32), 8000, on_overload="error")
    with pytest.raises(UserError, match="NaN"):
        save_audio(tmp_path / "bad.wav", np.array([0.0, np.nan]), 8000)
    with pytest.raises(UserError, match="mp3"):
        save_audio(tmp_path / "x.mp3", np.zeros(10), 8000)
    with pytest.raises(UserError, match="shape"):
        save_audio(tmp_path / "x.wav", np.zeros((1, 2, 3)), 8000)
    assert sorted(os.listdir(tmp_path)) == ["loud.wav"]


# ---------------------------------------------------------------- level policy
CEIL = 10 ** (-1 / 20)  # -1 dBFS as a linear amplitude


def test_peak_dbfs_hand_values():
    assert peak_dbfs(np.array([0.5, -1.0])) == pytest.approx(0.0)
    assert peak_dbfs(np.array([0.0, 0.1])) == pytest.approx(-20.0)
    assert peak_dbfs(np.zeros(4)) == float("-inf")


def test_set_level_default_only_turns_down_past_the_ceiling():
    loud = _sine(997, 16000, 1.0, amp=2.0)  # +6.02 dBFS: would clip
    y, rec = set_level(loud, 16000)
    assert np.max(np.abs(y)) == pytest.approx(CEIL, rel=1e-5)
    assert rec["gain_db"] == pytest.approx(-1 - 20 * np.log10(2.0), abs=0.01)
    assert rec["would_clip"] and not rec["silent"] and rec["policy"] == "none"
    assert rec["peak_dbfs_before"] == pytest.approx(6.02, abs=0.01) and rec["peak_dbfs_after"] == pytest.approx(-1.0)
    quiet = _sine(997, 16000, 1.0, amp=0.1)
    y, rec = set_level(quiet, 16000)  # -20 dBFS: left alone, never turned up
    np.testing.assert_array_equal(y, quiet)
    assert rec["gain_db"] == 0.0 and not rec["would_clip"]


def test_set_level_peak_and_loudness_with_gain_cap():
    sr = 48000
    quiet = _sine(997, sr, 1.0, amp=0.1)  # peak -20 dBFS; BS.1770: a full-scale 997 Hz sine reads -3.01 LUFS
    y, rec = set_level(quiet, sr, normalize="peak")
    assert np.max(np.abs(y)) == pytest.approx(CEIL, rel=1e-5) and rec["gain_db"] == pytest.approx(19.0, abs=0.01)
    y, rec = set_level(quiet, sr, normalize="peak", max_gain_db=10.0)  # capped
    assert np.max(np.abs(y)) == pytest.approx(0.1 * 10 ** 0.5, rel=1e-5)
    assert rec["lufs_before"] == pytest.approx(-23.01, abs=0.02)
    y, rec = set_level(_sine(997, sr, 1.0, amp=0.5), sr, normalize="loudness", target_lufs=-30.0)
    assert rec["gain_db"] == pytest.approx(-30.0 - (-3.01 - 20 * np.log10(2)), abs=0.03)
    assert loudness_lufs(y, sr) == pytest.approx(-30.0, abs=0.03)
    assert rec["lufs_after"] == pytest.approx(-30.0, abs=0.03)
    # -3 LUFS would need a +6 dB gain: the ceiling limits it to a -1 dBFS peak instead
    y, rec = set_level(_sine(997, sr, 1.0, amp=0.5), sr, normalize="loudness", target_lufs=-3.0)
    assert np.max(np.abs(y)) == pytest.approx(CEIL, rel=1e-5)
    assert rec["gain_db"] == pytest.approx(-1 + 20 * np.log10(2), abs=0.01)


def test_set_level_near_silence_is_flagged_and_never_turned_up():
    hiss = (np.random.default_rng(0).uniform(-1, 1, 16000) * 1.8e-4).astype(np.float32)  # ~ -75 dBFS
    for mode in ("none", "peak", "loudness"):
        y, rec = set_level(hiss, 16000, normalize=mode)
        np.testing.assert_array_equal(y, hiss)
        assert rec["silent"] and rec["gain_db"] == 0.0 and rec["peak_dbfs_before"] < -60
    y, rec = set_level(np.zeros(100, np.float32), 16000, normalize="peak")
    assert rec["silent"] and rec["peak_dbfs_before"] is None and rec["lufs_before"] is None
    assert not set_level(_sine(997, 16000, 0.5, amp=0.002), 16000)[1]["silent"]  # -54 dBFS: quiet, not silent
    with pytest.raises(UserError, match="normalize"):
        set_level(hiss, 16000, normalize="rms")
    with pytest.raises(UserError, match="below 0 dBFS"):
        set_level(hiss, 16000, ceiling_dbfs=0.5)


def test_save_audio_failure_leaves_no_temp_file(tmp_path):
    target = tmp_path / "keep.wav"
    save_audio(target, _sine(440, 8000, 0.1), 8000)
    before = target.read_bytes()
    with pytest.raises(Exception):
        save_audio(target, _sine(440, 8000, 0.1), 8000, subtype="NOT_A_SUBTYPE")
    assert target.read_bytes() == before  # the old file survives a failed write
    assert sorted(os.listdir(tmp_path)) == ["keep.wav"]


def test_atomic_write_text_and_list_audio_files(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "one")
    atomic_write_text(tmp_path / "a.txt", "two")
    assert (tmp_path / "a.txt").read_text() == "two"
    for name in ("b.wav", "a.flac", "c.MP3", ".b.wav.tmp123.wav"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "d.ogg").mkdir()
    assert [p.name for p in list_audio_files(tmp_path)] == ["a.flac", "b.wav", "c.MP3"]
    with pytest.raises(UserError, match="not a folder"):
        list_audio_files(tmp_path / "a.txt")
