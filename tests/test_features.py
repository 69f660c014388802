"""Mel front ends against independent references.

* ``ClapMelFrontEnd`` against transformers' ``ClapFeatureExtractor(truncation="rand_trunc")`` (the reference
  implementation, numpy float64), max abs difference <= 1e-3 dB.
* ``AudioLDMMelFrontEnd`` against a numpy STFT + a loop-built Slaney filterbank written here from the formula.
* Both filterbanks against ``transformers.audio_utils.mel_filter_bank(norm="slaney", mel_scale="slaney")``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import ClapFeatureExtractor
from transformers.audio_utils import mel_filter_bank

from basekit.errors import UserError
from audioldm_cond.mel import AudioLDMMelFrontEnd
from tclap.features import ClapMelFrontEnd
from basekit.mel import fit_length, slaney_mel_filterbank

TOL_DB = 1e-3
TINY = dict(n_fft=512, hop_length=320, n_mels=32, f_min=20, f_max=8000)  # a tiny-model setting at 16 kHz


def tiny_front(max_length_s: float, **kw) -> ClapMelFrontEnd:
    return ClapMelFrontEnd(sample_rate=16000, max_length_s=max_length_s, **TINY, **kw)


# ---------------------------------------------------------------- independent references (test-only code)


def ref_slaney_mel(n_fft: int, n_mels: int, fmin: float, fmax: float, sr: int) -> np.ndarray:
    """Slaney mel filterbank built filter by filter from the textbook formula: [n_freqs, n_mels]."""

    def hz2mel(f):
        # linear 0..1000 Hz at 3/200 mel per Hz, then log steps of ln(6.4)/27 per mel
        return 3.0 * f / 200.0 if f < 1000.0 else 15.0 + np.log(f / 1000.0) * 27.0 / np.log(6.4)

    def mel2hz(m):
        return 200.0 * m / 3.0 if m < 15.0 else 1000.0 * np.exp((m - 15.0) * np.log(6.4) / 27.0)

    lo, hi = hz2mel(fmin), hz2mel(fmax)
    pts = [mel2hz(lo + (hi - lo) * i / (n_mels + 1)) for i in range(n_mels + 2)]
    n_freqs = n_fft // 2 + 1
    out = np.zeros((n_freqs, n_mels))
    for m in range(n_mels):
        left, centre, right = pts[m], pts[m + 1], pts[m + 2]
        height = 2.0 / (right - left)  # unit-area triangle
        for k in range(n_freqs):
            f = k * sr / n_fft
            if left < f <= centre:
                out[k, m] = height * (f - left) / (centre - left)
            elif centre < f < right:
                out[k, m] = height * (right - f) / (right - centre)
    return out


def ref_audioldm_mel(x: np.ndarray, sr=16000, n_fft=1024, hop=160, n_mels=64, fmin=0.0, fmax=8000.0) -> np.ndarray:
    """numpy TacotronSTFT: reflect pad, periodic Hann, |rfft|, Slaney mel, log(max(., 1e-5)); [frames, n_mels]."""
    x = np.asarray(x, dtype=np.float64)
    xp = np.pad(x, (n_fft // 2, n_fft // 2), mode="reflect")
    win = np.hanning(n_fft + 1)[:-1]  # periodic Hann
    n_frames = 1 + (len(xp) - n_fft) // hop
    frames = np.stack([xp[i * hop : i * hop + n_fft] * win for i in range(n_frames)])
    mag = np.abs(np.fft.rfft(frames, axis=1))
    mel = mag @ ref_slaney_mel(n_fft, n_mels, fmin, fmax, sr)
    return np.log(np.maximum(mel, 1e-5))[: len(x) // hop]


def _signals(sr: int, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    env = np.exp(-3.0 * t)
    return {
        "noise": (0.1 * rng.standard_normal(n)).astype(np.float32),
        "tone": np.sin(2 * np.pi * 1000.0 * t).astype(np.float32),
        "chirp_env": (0.5 * env * np.sin(2 * np.pi * (200.0 + 1500.0 * t) * t)).astype(np.float32),
        "mix_with_silence": np.where(t < t[-1] / 2, 0.3 * rng.standard_normal(n), 0.0).astype(np.float32),
    }


# ---------------------------------------------------------------- filterbanks


@pytest.mark.parametrize(
    "n_fft,n_mels,fmin,fmax,sr",
    [(1024, 64, 50.0, 14000.0, 48000), (1024, 64, 0.0, 8000.0, 16000), (512, 32, 20, 8000, 16000)],
)
def test_slaney_filterbank_matches_transformers_and_formula(n_fft, n_mels, fmin, fmax, sr):
    ours = slaney_mel_filterbank(n_fft // 2 + 1, n_mels, fmin, fmax, sr)
    hf = mel_filter_bank(n_fft // 2 + 1, n_mels, fmin, fmax, sr, norm="slaney", mel_scale="slaney")
    loop = ref_slaney_mel(n_fft, n_mels, fmin, fmax, sr)
    assert ours.shape == (n_fft // 2 + 1, n_mels)
    np.testing.assert_allclose(ours, hf, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours, loop, rtol=1e-9, atol=1e-12)


def test_audioldm_mel_matrix_matches_transformers():
    fe = AudioLDMMelFrontEnd()
    hf = mel_filter_bank(513, 64, 0.0, 8000.0, 16000, norm="slaney", mel_scale="slaney")
    np.testing.assert_allclose(fe.mel_fb.double().numpy(), hf, rtol=1e-6, atol=1e-9)


# ---------------------------------------------------------------- CLAP front end vs ClapFeatureExtractor


@pytest.fixture(scope="module")
def clap_default():
    fe = ClapFeatureExtractor(frequency_min=50, frequency_max=14000, truncation="rand_trunc", padding="repeatpad")
    return fe, ClapMelFrontEnd.from_feature_extractor(fe)


def test_clap_defaults_follow_contract(clap_default):
    _, front = clap_default
    assert ClapMelFrontEnd().to_dict() == front.to_dict()
    assert front.num_frames == 1001
    assert "window" not in front.state_dict() and "mel_fb" not in front.state_dict()


def test_clap_matches_feature_extractor_48k(clap_default):
    """Full LAION setting: 10 s clips (no crop), a 7.5 s clip and a 0.3 s clip (repeat-pad + zero tail)."""
    fe, front = clap_default
    sr = 48000
    sig = _signals(sr, 10 * sr)
    clips = [
        sig["tone"], sig["noise"][: int(7.5 * sr) + 17], sig["chirp_env"][: int(0.3 * sr)], sig["mix_with_silence"]
    ]
    ref = fe(clips, sampling_rate=sr, return_tensors="np").input_features  # [B, 1, 1001, 64]
    out = front(clips)
    assert out.dtype == torch.float32
    assert tuple(out.shape) == ref.shape == (4, 1, 1001, 64)
    assert np.abs(out.numpy() - ref).max() <= TOL_DB


@pytest.mark.parametrize("padding", ["repeatpad", "repeat", "pad"])
def test_clap_tiny_config_all_paddings(padding):
    """A tiny-model setting (16 kHz, hop 320, 32 mels, 1 s) built from a feature extractor, every padding."""
    sr = 16000
    fe = ClapFeatureExtractor(
        feature_size=32, sampling_rate=sr, hop_length=320, max_length_s=1, fft_window_size=512,
        frequency_min=20, frequency_max=8000, truncation="rand_trunc", padding=padding,
    )
    front = ClapMelFrontEnd.from_feature_extractor(fe)
    assert (front.sample_rate, front.hop_length, front.n_mels, front.max_length) == (sr, 320, 32, sr)
    sig = _signals(sr, sr, seed=3)
    clips = [sig["noise"][:3001], sig["tone"][:7000], sig["chirp_env"], sig["mix_with_silence"][:16000 - 1]]
    ref = fe(clips, sampling_rate=sr, return_tensors="np").input_features
    out = front(clips).numpy()
    assert out.shape == ref.shape == (4, 1, 51, 32)
    assert np.abs(out - ref).max() <= TOL_DB


def test_clap_long_clip_centre_crop_is_deterministic(clap_default):
    fe, front = clap_default
    sr = 48000
    long = _signals(sr, 13 * sr + 1001, seed=1)["chirp_env"] + _signals(sr, 13 * sr + 1001, seed=2)["noise"]
    start = (len(long) - 10 * sr) // 2
    ref = fe([long[start : start + 10 * sr]], sampling_rate=sr, return_tensors="np").input_features
    a, b = front([long]), front([long])
    assert torch.equal(a, b)
    assert np.abs(a.numpy() - ref).max() <= TOL_DB


def test_clap_random_crop_uses_generator_and_matches_same_offset():
    sr, n_max = 16000, 16000
    front = tiny_front(1.0)
    fe = ClapFeatureExtractor(
        feature_size=32, sampling_rate=sr, hop_length=320, max_length_s=1, fft_window_size=512,
        frequency_min=20, frequency_max=8000, truncation="rand_trunc",
    )
    n = n_max + 40
    ramp = np.arange(n, dtype=np.float32) / n  # strictly increasing: the offset can be read off the crop
    x = torch.from_numpy(ramp)[None].repeat(64, 1)
    crops = front.prepare(x, generator=torch.Generator().manual_seed(7))
    offsets = np.rint(crops[:, 0].numpy() * n).astype(int)
    for off, row in zip(offsets, crops.numpy()):
        np.testing.assert_array_equal(row, ramp[off : off + n_max])
    assert offsets.min() >= 0 and offsets.max() <= 40 and len(set(offsets.tolist())) > 10
    again = front.prepare(x, generator=torch.Generator().manual_seed(7))
    other = front.prepare(x, generator=torch.Generator().manual_seed(8))
    assert torch.equal(crops, again) and not torch.equal(crops, other)
    # features of a random crop equal the reference's features of the same crop
    sig = _signals(sr, n, seed=4)["noise"]
    g = torch.Generator().manual_seed(11)
    off = int(front.prepare([np.arange(n, dtype=np.float64)], generator=g)[0, 0])
    feats = front([sig], generator=torch.Generator().manual_seed(11)).numpy()
    ref = fe([sig[off : off + n_max]], sampling_rate=sr, return_tensors="np").input_features
    assert np.abs(feats - ref).max() <= TOL_DB


def test_fit_length_hand_worked():
    x = torch.tensor([[1.0, 2.0, 3.0, 0.0, 0.0, 0.0, 0.0], [1, 2, 3, 4, 5, 6, 7]])
    lens = torch.tensor([3, 7])
    rp = fit_length(x, lens, 8, "repeatpad")
    assert rp.tolist() == [[1, 2, 3, 1, 2, 3, 0, 0], [1, 2, 3, 4, 5, 6, 7, 0]]
    assert fit_length(x, lens, 8, "repeat").tolist() == [[1, 2, 3, 1, 2, 3, 1, 2], [1, 2, 3, 4, 5, 6, 7, 1]]
    assert fit_length(x, lens, 8, "pad").tolist() == [[1, 2, 3, 0, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6, 7, 0]]
    # centre crop of 7 -> 4: offset (7 - 4) // 2 = 1; the 3-sample row gets one whole copy + a zero
    assert fit_length(x, lens, 4, "repeatpad").tolist() == [[1, 2, 3, 0], [2, 3, 4, 5]]


def test_clap_ragged_list_equals_one_by_one():
    front = tiny_front(0.5)
    sig = _signals(16000, 9000, seed=5)
    clips = [sig["noise"][:1234], sig["chirp_env"], sig["tone"][:8000]]
    batch = front(clips)
    for i, c in enumerate(clips):
        assert torch.allclose(batch[i], front(torch.from_numpy(c)[None])[0], atol=1e-5)
    padded = torch.zeros(3, 9000)
    for i, c in enumerate(clips):
        padded[i, : len(c)] = torch.from_numpy(c)
    assert torch.allclose(front(padded, lengths=[len(c) for c in clips]), batch, atol=1e-5)


def test_clap_float32_mode_close_on_noise():
    front32 = tiny_front(1.0, dtype=torch.float32)
    front64 = tiny_front(1.0)
    x = torch.from_numpy(_signals(16000, 16000, seed=6)["noise"])[None]
    assert (front32(x) - front64(x)).abs().max() <= TOL_DB


def test_front_end_survives_parent_dtype_cast():
    front = tiny_front(0.5)
    x = torch.from_numpy(_signals(16000, 8000)["noise"])[None]
    ref = front(x)
    front.to(torch.float16)
    assert front.window.dtype == torch.float64 and front.mel_fb.dtype == torch.float32
    assert torch.equal(front(x), ref)


def test_clap_bad_input_is_user_error():
    front = tiny_front(0.5)
    with pytest.raises(UserError, match="shape"):
        front(torch.zeros(2, 2, 100))
    with pytest.raises(UserError, match="NaN"):
        front(torch.tensor([[0.0, float("nan")] * 100]))
    with pytest.raises(UserError, match="empty"):
        front([np.zeros(100, np.float32), np.zeros(0, np.float32)])
    with pytest.raises(UserError, match="empty batch"):
        front([])
    with pytest.raises(UserError, match="mono"):
        front([np.zeros((2, 100), np.float32)])
    with pytest.raises(UserError, match="dtype"):
        front(torch.zeros(1, 100, dtype=torch.long))
    with pytest.raises(UserError, match="lengths"):
        front(torch.zeros(2, 100), lengths=[10])
    with pytest.raises(UserError, match="fusion"):
        ClapMelFrontEnd.from_feature_extractor(ClapFeatureExtractor())  # saved with the fusion default
    with pytest.raises(UserError, match="mel range"):
        ClapMelFrontEnd(sample_rate=16000, f_max=14000)
    with pytest.raises(UserError, match="padding"):
        ClapMelFrontEnd(padding="mirror")
    # an extractor saved with the fusion default but paired with an unfused model: explicit override works
    assert ClapMelFrontEnd.from_feature_extractor(ClapFeatureExtractor(), truncation="rand_trunc").n_mels == 64


# ---------------------------------------------------------------- AudioLDM front end


def test_audioldm_matches_numpy_reference():
    front = AudioLDMMelFrontEnd()
    sr = 16000
    sig = _signals(sr, 2 * sr + 77, seed=9)
    batch = np.stack([sig["noise"], sig["chirp_env"] + 0.01 * sig["noise"], sig["mix_with_silence"]])
    out = front(torch.from_numpy(batch))
    assert tuple(out.shape) == (3, 1, front.mel_frames(batch.shape[1]), 64)
    for i in range(3):
        ref = ref_audioldm_mel(batch[i])
        assert ref.shape == out[i, 0].shape
        # float32 STFT: natural-log differences are relative errors; 1e-3 is ~0.004 dB
        assert np.abs(out[i, 0].numpy() - ref).max() < 1e-3
    assert float(out[2, 0, -20:].max()) == pytest.approx(np.log(1e-5), abs=1e-6)  # silent tail hits the floor


def test_audioldm_frame_count_and_float64_mode():
    front = AudioLDMMelFrontEnd(dtype=torch.float64)
    assert front.mel_frames(163840) == 1024 and front.num_samples(1024) == 163840  # 10.24 s -> 1024 frames
    assert front.mel_frames(16000) == 100
    x = _signals(16000, 16000, seed=2)["tone"]
    out = front(x)
    assert tuple(out.shape) == (1, 1, 100, 64)
    np.testing.assert_allclose(out[0, 0].numpy(), ref_audioldm_mel(x), atol=1e-5)


def test_audioldm_bad_input():
    front = AudioLDMMelFrontEnd()
    with pytest.raises(UserError, match="too short"):
        front(torch.zeros(1, 300))
    with pytest.raises(UserError, match="shape"):
        front(torch.zeros(1, 1, 2000))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_front_ends_on_cuda_match_cpu():
    sig = _signals(48000, 480000, seed=12)
    x = torch.from_numpy(np.stack([sig["noise"], sig["tone"]]))
    clap = ClapMelFrontEnd()
    assert (clap.cuda()(x.cuda()).cpu() - ClapMelFrontEnd()(x)).abs().max() <= TOL_DB
    ldm = AudioLDMMelFrontEnd()
    y = x[:, :32000]
    assert (ldm.cuda()(y.cuda()).cpu() - AudioLDMMelFrontEnd()(y)).abs().max() < 1e-3


def test_cpu_blocking_does_not_change_the_result():
    front = tiny_front(1.0)
    x = torch.from_numpy(np.stack(list(_signals(16000, 16000, seed=13).values())))
    ref = front(x)  # default blocks
    for block in (1, 7, 10**9):  # one frame per block, ragged blocks, a single block (as on accelerators)
        front.cpu_block_frames = block
        assert torch.allclose(front(x), ref, rtol=0, atol=1e-5)  # BLAS may sum in another order
