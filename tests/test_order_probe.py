"""The order probe (``audioldm_cond.probe``, ``audioldm-cond probe-order``): its maths against a brute-force
reference, its verdict on UNets built to prefer one caption, and its CLI."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from audioldm_cond.cli import main
from audioldm_cond.components import build_tiny_components, save_components
from audioldm_cond.probe import ProbeItem, denoising_errors, probe_items, probe_order, resolve_timesteps, wilson
from basekit.errors import UserError

SMALL = dict(unet_channels=(16, 32), vae_channels=(16, 32), max_seconds=1.28)


@pytest.fixture(scope="module")
def comps():
    from tclap.models import load_clap

    # the shipped T-CLAP: its embeddings of a caption and its order-swapped twin differ (a random CLAP's barely do)
    return build_tiny_components(load_clap("tiny-tclap"), seed=0, **SMALL)


@pytest.fixture(scope="module")
def mixups(tmp_path_factory):
    from tclap.data.mixup import build_builtin_mixups
    from tclap.data.manifest import read_manifest

    path = build_builtin_mixups(tmp_path_factory.mktemp("probe") / "mix", n=16, seconds=1.28, sr=16000,
                                split="heldout", seed=3)
    return path, read_manifest(path)


def _alphas(sched, t):
    ab = sched.alphas_cumprod[t].double()
    return float(ab.sqrt()), float((1 - ab).sqrt())


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_denoising_errors_match_a_one_at_a_time_reference(comps, prediction):
    from diffusers import DDPMScheduler

    sched = DDPMScheduler.from_config(comps.scheduler.config, prediction_type=prediction)
    assert sched.config.prediction_type == prediction
    g = torch.Generator().manual_seed(0)
    n, k = 3, 2
    z = torch.randn((n, 4, 4, 4), generator=g)
    conds = torch.randn((k, n, comps.conditioner.output_dim), generator=g)
    ts = torch.tensor([10, 500, 990])
    noise = torch.randn((len(ts), *z.shape), generator=g)
    with torch.no_grad():
        got = denoising_errors(comps.unet, sched, z, conds, ts, noise)
    assert got.shape == (k, n, len(ts))
    for kk in range(k):
        for i in range(n):
            for j, t in enumerate(ts.tolist()):
                a, s = _alphas(sched, t)
                eps = noise[j, i].double()
                x = a * z[i].double() + s * eps
                target = eps if prediction == "epsilon" else a * eps - s * z[i].double()
                with torch.no_grad():
                    pred = comps.unet(x[None].float(), torch.tensor([t]), encoder_hidden_states=None,
                                      class_labels=conds[kk, i][None]).sample[0].double()
                want = float(((pred - target) ** 2).mean())
                assert got[kk, i, j].item() == pytest.approx(want, rel=1e-4, abs=1e-6), (kk, i, j)


class _PickyUNet(torch.nn.Module):
    """Predicts 0 (the noise's mean: error ~1) for a condition nearer to ``liked`` than to ``disliked``, 3 for any
    other (error ~10)."""

    def __init__(self, config, liked: torch.Tensor, disliked: torch.Tensor):
        super().__init__()
        self.config = config
        self.liked, self.disliked = liked, disliked
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, sample, t, encoder_hidden_states=None, class_labels=None):
        near = lambda ref: torch.cdist(class_labels.float(), ref.float()).min(dim=1).values  # noqa: E731
        hit = (near(self.liked) < near(self.disliked)).float()
        out = (1 - hit).view(-1, 1, 1, 1) * 3.0 + 0 * sample
        return SimpleNamespace(sample=out + self.w)


def _items(manifest_items):
    items, _ = probe_items(manifest_items)
    assert len(items) >= 6
    return items


@pytest.mark.parametrize("liked_field,order,identity", [("caption", 100.0, 100.0), ("swapped", 0.0, None)])
def test_probe_verdict_follows_what_the_unet_prefers(comps, mixups, liked_field, order, identity):
    other = "swapped" if liked_field == "caption" else "caption"
    # a UNet that likes a text likes it for every clip: keep clips whose liked text no kept clip dislikes
    items, liked_txt, disliked_txt = [], set(), set()
    for it in _items(mixups[1]):
        mine, not_mine = {getattr(it, liked_field)}, {getattr(it, other), it.other}
        if not (mine & (disliked_txt | not_mine)) and not (not_mine & liked_txt):
            items.append(it)
            liked_txt |= mine
            disliked_txt |= not_mine
    assert len(items) >= 4
    liked = comps.conditioner.encode_text([getattr(it, liked_field) for it in items]).float()
    disliked = comps.conditioner.encode_text([getattr(it, f) for it in items for f in (other, "other")]).float()
    assert torch.cdist(liked, disliked).min() > 1e-3  # the two captions' conditions can be told apart
    picky = SimpleNamespace(**{**comps.__dict__, "unet": _PickyUNet(comps.unet.config, liked, disliked)})
    picky = type(comps)(**{f: getattr(picky, f) for f in comps.__dataclass_fields__})
    res = probe_order(picky, items, timesteps=(0.3, 0.6), seed=1)
    assert res["order_preference"] == order
    if identity is not None:
        assert res["identity_preference"] == identity
    assert res["n_items"] == len(items) and len(res["items"]) == len(items)
    assert all(m > 0 for m in res["order_margin_per_t"]) == (order == 100.0)


def test_probe_of_a_real_tiny_model_is_deterministic_and_bounded(comps, mixups):
    items = _items(mixups[1])[:4]
    a = probe_order(comps, items, timesteps=(100, 700), noise_draws=2, seed=5)
    b = probe_order(comps, items, timesteps=(100, 700), noise_draws=2, seed=5)
    assert a["order_preference"] == b["order_preference"]
    assert a["items"][0]["error_caption"] == b["items"][0]["error_caption"]
    assert a["timesteps"] == [100, 700]
    lo, hi = a["order_preference_ci"]
    assert 0 <= lo <= a["order_preference"] <= hi <= 100


def test_probe_items_pairs_and_skips():
    rows = [
        {"id": "a", "audio": "a.wav", "captions": ["A beep then a knock"], "negative_captions": ["A knock then a beep"],
         "events": [{"label": "beep"}, {"label": "knock"}]},
        {"id": "b", "audio": "b.wav", "captions": ["A knock then a beep"], "negative_captions": ["A beep then a knock"],
         "events": [{"label": "knock"}, {"label": "beep"}]},
        {"id": "c", "audio": "c.wav", "captions": ["A siren with a bark"], "negative_captions": [],
         "events": [{"label": "siren"}, {"label": "bark"}]},
        {"id": "d", "audio": "d.wav", "captions": ["A bark then a siren"], "negative_captions": ["A siren then a bark"],
         "events": [{"label": "bark"}, {"label": "siren"}]},
    ]
    items, skipped = probe_items(rows)
    assert [it.id for it in items] == ["a", "b", "d"]
    assert skipped == {"no negative caption": 1}
    # a and b hold the same events: their "other" caption is d's, and d's is a's
    assert items[0].other == "A bark then a siren" and items[1].other == "A bark then a siren"
    assert items[2].other == "A beep then a knock"
    assert [it.id for it in probe_items(rows, n=2)[0]] == ["a", "b"]
    same = [rows[0], rows[1]]
    assert probe_items(same)[1] == {"no caption with other events": 2}


def test_wilson_interval_matches_hand_computation():
    lo, hi = wilson(8, 10)  # p = 0.8, z = 1.96: centre 0.71674, half-width 0.22658
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)


def test_timesteps_resolve_and_reject(comps):
    assert resolve_timesteps(comps.scheduler, (0.1, 0.5, 20)).tolist() == [100, 500, 20]
    with pytest.raises(UserError, match="outside the model's schedule"):
        resolve_timesteps(comps.scheduler, (1000,))
    with pytest.raises(UserError, match="no probe items"):
        probe_order(comps, [])


def test_cli_writes_json_and_table(comps, mixups, tmp_path, capsys):
    model = tmp_path / "model"
    save_components(comps, model)
    out = tmp_path / "probe"
    rc = main(["probe-order", "--model", str(model), "--data", str(mixups[0]), "--n", "5", "--timesteps", "0.2,0.8",
               "--noise-draws", "1", "--out", str(out), "--quiet"])
    assert rc == 0
    res = json.loads((out / "order_probe.json").read_text())[str(model)]
    assert res["n_items"] == 5 and res["timesteps"] == [200, 800]
    table = (out / "order_probe.md").read_text()
    assert "order preference" in table and str(model) in table
    assert "| " + str(model) in capsys.readouterr().out


def test_cli_bad_input_is_one_line_exit_2(comps, mixups, tmp_path, capsys):
    model = tmp_path / "model"
    save_components(comps, model)
    no_neg = tmp_path / "no_neg.jsonl"
    rows = [json.loads(line) for line in mixups[0].read_text().splitlines()]
    no_neg.write_text("".join(json.dumps({**r, "negative_captions": []}) + "\n" for r in rows))
    for args, msg in [(["--data", str(no_neg)], "no probe items"),
                      (["--timesteps", "0.1,x"], "--timesteps"),
                      (["--n", "0"], "--n 0")]:
        data = [] if "--data" in args else ["--data", str(mixups[0])]
        rc = main(["probe-order", "--model", str(model), "--out", str(tmp_path / "o"), "--quiet", *data, *args])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and msg in err[-1], err
