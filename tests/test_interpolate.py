"""``tclap interpolate`` (WiSE-FT): the written weights against a numpy reference, and the refusals."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from tclap.cli import main
from tclap.models.export import export_bundle
from tclap.models import configs, load_clap
from tclap.models.factory import from_config


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("wise")
    arch = configs.get_config("tiny")
    a, b = root / "a", root / "b"
    export_bundle(from_config(arch, seed=1), a)
    export_bundle(from_config(arch, seed=2), b)
    return a, b


@pytest.mark.parametrize("alpha", [0.0, 0.25, 1.0])
def test_weights_are_the_numpy_blend(two_models, tmp_path, alpha):
    a, b = two_models
    out = tmp_path / "mix"
    assert main(["interpolate", "--from", str(a), "--to", str(b), "--alpha", str(alpha), "--out", str(out)]) == 0
    wa, wb, wm = (load_file(str(d / "model.safetensors")) for d in (a, b, out))
    assert wm.keys() == wb.keys()
    n_float = 0
    for k, vb in wb.items():
        if np.issubdtype(vb.dtype, np.floating):
            n_float += 1
            ref = (1.0 - alpha) * wa[k].astype(np.float64) + alpha * vb.astype(np.float64)
            np.testing.assert_allclose(wm[k], ref, rtol=1e-5, atol=1e-6, err_msg=k)
        else:
            np.testing.assert_array_equal(wm[k], vb, err_msg=k)
    assert n_float > 50
    # the export loads like any other and, at alpha 0, embeds text exactly like --from
    mixed = load_clap(str(out))
    if alpha == 0.0:
        ref = load_clap(str(a))
        tok = ref.tokenizer(["a beep followed by a knock"], return_tensors="pt", padding=True)
        with torch.no_grad():
            e0 = ref.model.get_text_features(**tok)
            e1 = mixed.model.get_text_features(**tok)
        e0 = getattr(e0, "pooler_output", e0)
        e1 = getattr(e1, "pooler_output", e1)
        torch.testing.assert_close(e1, e0, rtol=1e-5, atol=1e-6)


def test_refusals_are_one_line_exit_2(two_models, tmp_path, capsys):
    a, b = two_models
    other = tmp_path / "other"
    arch = configs.get_config("tiny")
    export_bundle(from_config(dataclasses.replace(arch, projection_dim=arch.projection_dim * 2), seed=3), other)
    cases = [(["--from", str(a), "--to", str(b), "--alpha", "1.5"], "outside [0, 1]"),
             (["--from", str(a), "--to", str(other), "--alpha", "0.5"], "different architectures")]
    for args, msg in cases:
        rc = main(["interpolate", *args, "--out", str(tmp_path / "x")])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and msg in err[-1], err
        assert not (tmp_path / "x").exists()
