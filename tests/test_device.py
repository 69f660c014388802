"""``--device auto`` (the default of generation, scoring and evaluation): CUDA when torch sees one, else CPU; a
device that is not there is one line and exit 2 before any model loads (issue 21)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from basekit.audio import save_audio
from basekit.device import resolve_device
from basekit.errors import UserError


def test_auto_follows_cuda_availability(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and resolve_device(None) == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    assert resolve_device("CPU") == "cpu"


def test_bad_or_absent_devices_are_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="no CUDA device"):
        resolve_device("cuda")
    with pytest.raises(UserError, match="is not a device"):
        resolve_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(UserError, match="only 1 CUDA device"):
        resolve_device("cuda:3")


class _Loaded(Exception):
    pass


def test_generate_scoring_and_evaluation_default_to_auto(monkeypatch, tmp_path, capsys):
    """With a (pretend) GPU visible, each command's default asks for CUDA; the model loaders are stubbed to
    record the device they were given."""
    import audioldm_cond.components as components
    import tclap.models as models
    from audioldm_cond.cli import main as ldm_main
    from conductor.cli import main as tclap_main
    from eval_gen.cli import main as eval_main

    seen = []

    def fake_load(*a, device="cpu", **k):
        seen.append(str(device))
        raise _Loaded

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(components, "load_components", fake_load)
    monkeypatch.setattr(models, "load_clap", fake_load)
    with pytest.raises(_Loaded):
        ldm_main(["generate", "a beep", "--out", str(tmp_path / "g")])
    with pytest.raises(_Loaded):
        tclap_main(["evaluate", "--model", "tiny-tclap", "--data", "builtin-heldout", "--out", str(tmp_path / "e")])
    save_audio(tmp_path / "a" / "x.wav", np.full(1600, 0.1, np.float32), 16000)
    with pytest.raises(_Loaded):
        eval_main(["score", "--gen", str(tmp_path / "a"), "--ref", str(tmp_path / "a"), "--backend", "clap",
                   "--metrics", "fad", "--n-boot", "0", "--quiet", "--no-plot", "--cache-dir", "",
                   "--out", str(tmp_path / "o")])
    assert seen == ["cuda", "cuda", "cuda"]


def test_cli_refuses_a_missing_gpu_before_loading(monkeypatch, tmp_path, capsys):
    from audioldm_cond.cli import main as ldm_main
    from conductor.cli import main as tclap_main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert ldm_main(["generate", "a beep", "--out", str(tmp_path / "g"), "--device", "cuda"]) == 2
    assert "audioldm-cond: error: --device cuda: torch sees no CUDA device here" in capsys.readouterr().err
    assert tclap_main(["evaluate", "--model", "tiny-tclap", "--data", "builtin-heldout", "--out", str(tmp_path / "e"),
                       "--device", "gpu"]) == 2
    assert "tclap: error: --device 'gpu' is not a device" in capsys.readouterr().err
