"""Arguments that need no weights are checked before any model loads (issue 21: ``--seconds 10`` on a model
trained for 4 s used to fail after the load). The loaders are replaced by a stub that fails the test if called."""

from __future__ import annotations

import json

import numpy as np
import pytest

from basekit.audio import save_audio


@pytest.fixture
def no_loading(monkeypatch):
    import audioldm_cond.components as components
    import eval_gen.backends as backends
    import tclap.models as models

    def forbidden(*a, **k):
        raise AssertionError("a model was loaded before the arguments were checked")

    monkeypatch.setattr(components, "load_components", forbidden)
    monkeypatch.setattr(models, "load_clap", forbidden)
    monkeypatch.setattr(backends, "get_backend", forbidden)


@pytest.mark.parametrize("extra,pattern", [
    (["--seconds", "10"], "--seconds 10 is beyond model tiny-tclap's limit of 4 s"),
    (["--seconds", "-1"], "--seconds -1 must be a positive length"),
    (["--guidance", "-2"], "--guidance -2 must be a number >= 0"),
    (["--steps", "0"], "--steps 0 must be at least 1"),
    (["--adapter"], "--adapter needs --text-encoder"),
    (["--text-encoder", "my-clap/"], "--text-encoder my-clap/: not found"),
    (["--scorer", "./nope"], "--scorer ./nope: not found"),
    (["--negative-prompt", " "], "--negative-prompt is empty"),
    (["--model", "no-such-model"], "neither a shipped name"),
    (["--device", "gpu"], "--device 'gpu' is not a device"),
])
def test_generate_checks_before_loading(no_loading, tmp_path, capsys, extra, pattern):
    from audioldm_cond.cli import main

    assert main(["generate", "a beep followed by a knock", "--out", str(tmp_path / "o"), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("audioldm-cond: error: ") and pattern in err, err
    assert not (tmp_path / "o").exists()


def test_model_max_seconds_reads_configs_only(tmp_path):
    """Both layouts: this project's ``audioldm_cond.json``, and a plain diffusers folder (frames from the UNet's
    sample size x the VAE's downsampling, hop from the vocoder's upsampling: AudioLDM-s is 10.24 s)."""
    from audioldm_cond.cli import model_max_seconds

    assert model_max_seconds("tiny-tclap") == 4.0
    d = tmp_path / "audioldm-s"
    for sub, cfg in {"unet": {"sample_size": 128}, "vae": {"block_out_channels": [128, 256, 384, 640]},
                     "vocoder": {"upsample_rates": [5, 4, 2, 2, 2], "sampling_rate": 16000}}.items():
        (d / sub).mkdir(parents=True)
        (d / sub / "config.json").write_text(json.dumps(cfg))
    (d / "model_index.json").write_text("{}")
    assert model_max_seconds(str(d)) == pytest.approx(128 * 8 * 160 / 16000)  # 1024 frames of hop 160 = 10.24 s


def test_probe_order_checks_before_loading(no_loading, tmp_path, capsys):
    from audioldm_cond.cli import main

    assert main(["probe-order", "--model", "tiny-tclap", "--seconds", "10", "--out", str(tmp_path / "p")]) == 2
    assert "limit of 4 s" in capsys.readouterr().err
    assert main(["probe-order", "--data", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "p")]) == 2
    assert "no such manifest" in capsys.readouterr().err


def test_evaluate_and_score_check_before_loading(no_loading, tmp_path, capsys):
    from conductor.cli import main as tclap_main
    from eval_gen.cli import main as eval_main

    assert tclap_main(["evaluate", "--model", "tiny-tclap", "--data", str(tmp_path / "none.jsonl"),
                       "--out", str(tmp_path / "e")]) == 2
    assert "no such manifest" in capsys.readouterr().err
    save_audio(tmp_path / "g" / "a.wav", np.full(1600, 0.1, np.float32), 16000)
    base = ["score", "--gen", str(tmp_path / "g"), "--ref", str(tmp_path / "g"), "--out", str(tmp_path / "o"),
            "--quiet", "--cache-dir", ""]
    for extra, pattern in [(["--metrics", "fad,clap"], "need prompts"), (["--backend", "nosuch"], "unknown"),
                           (["--metrics", "kl", "--classifier", "nosuch"], "--classifier 'nosuch' is unknown"),
                           (["--metrics", "fad,fid"], "unknown metric"),
                           (["--metrics", "clap", "--prompts", str(tmp_path / "p.jsonl")], "prompts file not found")]:
        assert eval_main(base + extra) == 2
        err = capsys.readouterr().err
        assert "eval-gen: error: " in err and pattern in err, err
