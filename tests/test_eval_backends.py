"""Embedding backends: public weight-file layouts, front ends vs numpy references, loading errors, cache."""

import numpy as np
import pytest
import torch

from eval_gen.backends import get_backend
from eval_gen.backends.mel import vggish_mel_matrix
from eval_gen.cache import EmbeddingCache
from basekit.errors import UserError

# The key names of the public files, written out by hand (torchvggish vggish-10086976.pth; PANNs Cnn14_mAP=0.431.pth).
VGGISH_KEYS = {f"features.{i}.{p}" for i in (0, 3, 6, 8, 11, 13) for p in ("weight", "bias")} | {
    f"embeddings.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")}
CNN14_SHAPES = {
    "spectrogram_extractor.stft.conv_real.weight": (513, 1, 1024),
    "spectrogram_extractor.stft.conv_imag.weight": (513, 1, 1024),
    "logmel_extractor.melW": (513, 64),
    "bn0.running_mean": (64,),
    "conv_block1.conv1.weight": (64, 1, 3, 3),
    "conv_block1.bn2.num_batches_tracked": (),
    "conv_block6.conv2.weight": (2048, 2048, 3, 3),
    "fc1.weight": (2048, 2048),
    "fc_audioset.weight": (527, 2048),
    "fc_audioset.bias": (527,),
}


def _tone(sr, f=440.0, seconds=2.0):
    t = np.arange(int(sr * seconds)) / sr
    return (0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32)


def test_vggish_state_dict_has_the_public_keys_and_loads_a_file(tmp_path):
    from eval_gen.backends.vggish import VGGish

    sd = VGGish().state_dict()
    assert set(sd) == VGGISH_KEYS
    assert tuple(sd["embeddings.0.weight"].shape) == (4096, 512 * 4 * 6)
    torch.manual_seed(3)
    src = VGGish().state_dict()
    torch.save(src, tmp_path / "vggish-10086976.pth")
    rng = np.random.default_rng(0)
    pca = {"pca_eigen_vectors": rng.standard_normal((128, 128)).astype(np.float32),
           "pca_means": rng.standard_normal(128).astype(np.float32)}
    torch.save({k: torch.from_numpy(v) for k, v in pca.items()}, tmp_path / "vggish_pca_params.pth")
    b = get_backend("vggish", weights=str(tmp_path / "vggish-10086976.pth"))
    assert all(torch.equal(b.model.state_dict()[k], src[k]) for k in src)
    wav = _tone(16000, seconds=3.0)
    e1 = b.embed([wav], 16000)[0]
    assert e1.shape == (3, 128)  # 298 frames of 10 ms -> three 96-frame examples
    np.testing.assert_array_equal(e1, b.embed([wav], 16000)[0])  # deterministic
    post = get_backend("vggish", weights=str(tmp_path / "vggish-10086976.pth"),
                       pca_weights=str(tmp_path / "vggish_pca_params.pth"), postprocess=True).embed([wav], 16000)[0]
    # PCA + 8-bit quantisation by hand (vggish_postprocess.Postprocessor)
    pc = (pca["pca_eigen_vectors"].astype(np.float64) @ (e1.T.astype(np.float64) - pca["pca_means"][:, None])).T
    expected = np.round((np.clip(pc, -2, 2) + 2) * (255.0 / 4.0))
    assert np.mean(np.abs(post - expected) <= 1) == 1.0  # float32 vs float64 may move a value across .5


def test_vggish_mel_matrix_matches_transformers_htk_mel_in_mel_space():
    from transformers.audio_utils import mel_filter_bank

    ours = vggish_mel_matrix()
    ref = mel_filter_bank(257, 64, 125.0, 7500.0, 16000, norm=None, mel_scale="htk", triangularize_in_mel_space=True)
    assert np.all(ours[0] == 0)  # VGGish zeroes the DC bin
    np.testing.assert_allclose(ours[1:], ref[1:], atol=1e-6)


def test_cnn14_keys_shapes_stft_and_checkpoint_loading(tmp_path):
    from eval_gen.backends.panns import Cnn14

    torch.manual_seed(0)
    model = Cnn14()
    sd = model.state_dict()
    for k, shape in CNN14_SHAPES.items():
        assert tuple(sd[k].shape) == shape, k
    # The conv STFT equals a numpy rfft of reflect-padded Hann frames.
    x = np.random.default_rng(1).standard_normal(4000).astype(np.float32)
    power = model.spectrogram_extractor(torch.from_numpy(x)[None]).numpy()[0, 0]
    xp = np.pad(x.astype(np.float64), 512, mode="reflect")
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(1024) / 1024)
    frames = np.stack([xp[s : s + 1024] for s in range(0, len(xp) - 1024 + 1, 320)])
    ref = np.abs(np.fft.rfft(frames * win, axis=1)) ** 2
    np.testing.assert_allclose(power, ref, rtol=1e-3, atol=1e-3 * ref.max())
    # BatchNorm statistics must be loaded, not only parameters: give them non-default values.
    for k in sd:
        if k.endswith("running_var"):
            sd[k] = torch.rand_like(sd[k]) + 0.5
    torch.save({"model": sd, "iteration": 1}, tmp_path / "Cnn14_mAP=0.431.pth")
    b = get_backend("panns-cnn14", weights=str(tmp_path / "Cnn14_mAP=0.431.pth"))
    assert torch.equal(b.model.bn0.running_var, sd["bn0.running_var"])
    wav = _tone(32000, seconds=1.5)
    emb = b.embed([wav, wav], 32000)
    assert emb[0].shape == (1, 2048) and np.array_equal(emb[0], emb[1])
    lg = b.logits([wav], 32000)
    assert lg.shape == (1, 527) and b.activation == "sigmoid"


def test_wrong_model_weights_name_the_file_and_the_expected_model(tmp_path):
    from eval_gen.backends.vggish import VGGish

    torch.save(VGGish().state_dict(), tmp_path / "vggish.pth")
    with pytest.raises(UserError, match=r"vggish.pth is not a PANNs CNN14"):
        get_backend("panns-cnn14", weights=str(tmp_path / "vggish.pth"))
    torch.save({"model": {"fc1.weight": torch.zeros(2, 2)}}, tmp_path / "cnn.pth")
    with pytest.raises(UserError, match=r"cnn.pth is not a VGGish"):
        get_backend("vggish", weights=str(tmp_path / "cnn.pth"))
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(UserError, match=r"cannot load VGGish weights from .*junk.pth"):
        get_backend("vggish", weights=str(tmp_path / "junk.pth"))
    with pytest.raises(UserError, match="not found"):
        get_backend("vggish", weights=str(tmp_path / "missing.pth"))
    with pytest.raises(UserError, match="unknown backend"):
        get_backend("openl3")


def test_backends_resample_their_input():
    b = get_backend("mel-stats")
    e16 = b.embed([_tone(16000)], 16000)[0]
    e44 = b.embed([_tone(44100)], 44100)[0]
    assert e16.shape == e44.shape == (4, 64)
    # band means agree; the spreads of near-empty bands (log of ~1e-6) differ by resampler noise only
    np.testing.assert_allclose(e16[:, :32], e44[:, :32], atol=0.05)
    # a different tone is far away, so the match above is not trivial
    assert np.abs(b.embed([_tone(16000, f=2000.0)], 16000)[0][:, :32] - e16[:, :32]).max() > 1.0


def test_cache_is_keyed_by_content_and_backend_settings(tmp_path):
    b1, b2 = get_backend("mel-stats"), get_backend("mel-stats", n_mels=16)
    c1, c2 = EmbeddingCache(tmp_path, b1), EmbeddingCache(tmp_path, b2)
    assert c1.dir != c2.dir
    e = np.arange(6, dtype=np.float32).reshape(3, 2)
    c1.dim = 2
    assert c1.get("abc") is None
    c1.put("abc", e)
    np.testing.assert_array_equal(c1.get("abc"), e)
    assert c1.hits == 1 and c1.misses == 1
    assert not list(c1.dir.glob(".tmp-*"))  # atomic write left no temp file
    (c1.dir / "abc.npy").write_bytes(b"damaged")
    assert c1.get("abc") is None  # a damaged entry is recomputed, never trusted


def test_backend_reports_the_name_it_was_asked_for(tmp_path, capsys):
    """``--backend tclap`` says ``backend: tclap`` in scores.md / scores.json (it used to say ``clap``)."""
    import json

    from basekit.audio import save_audio
    from eval_gen.backends import get_backend
    from eval_gen.cli import main

    assert get_backend("tclap").name == "tclap" and get_backend("clap").name == "clap"
    assert get_backend("tclap").cache_key() != get_backend("clap").cache_key()
    rng = np.random.default_rng(0)
    for folder in ("g", "r"):
        for i in range(3):
            save_audio(tmp_path / folder / f"c{i}.wav", (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
    assert main(["score", "--gen", str(tmp_path / "g"), "--ref", str(tmp_path / "r"), "--backend", "tclap",
                 "--metrics", "fad", "--n-boot", "0", "--quiet", "--no-plot", "--cache-dir", "",
                 "--out", str(tmp_path / "o")]) == 0
    assert "- backend: tclap (dim 128" in capsys.readouterr().out
    assert json.loads((tmp_path / "o" / "scores.json").read_text())["backend"]["name"] == "tclap"
