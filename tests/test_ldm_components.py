"""audioldm_cond conditioning, components (build/save/load) and vocoders, on tiny seeded models.

References are independent: diffusers' own ``AudioLDMPipeline._encode_prompt`` for the text condition, the
``ClapBundle`` API for audio embeddings, an FFT-based check for the Griffin-Lim vocoder.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from audioldm_cond.components import build_tiny_components, load_components, save_components
from audioldm_cond.conditioning import ClapConditioner
from audioldm_cond.vocoder import GriffinLimConfig, GriffinLimVocoder, build_tiny_hifigan
from basekit.errors import UserError
from audioldm_cond.mel import AudioLDMMelConfig, AudioLDMMelFrontEnd

SMALL = dict(unet_channels=(16, 32), vae_channels=(16, 32), max_seconds=1.28)


@pytest.fixture(scope="module")
def bundle():
    from tclap.models import load_clap

    return load_clap("tiny")


@pytest.fixture(scope="module")
def comps(bundle):
    return build_tiny_components(bundle, seed=0, vocoder="hifigan", **SMALL)


@pytest.fixture(scope="module")
def saved(comps, tmp_path_factory):
    d = tmp_path_factory.mktemp("ldm") / "model"
    save_components(comps, d)
    return d


def _diffusers_embeds(comps, prompts, negative=None):
    pipe = comps.to_diffusers()
    out = pipe._encode_prompt(prompts, torch.device("cpu"), 1, True, negative_prompt=negative)
    return out.chunk(2)  # (uncond, cond)


def test_text_condition_matches_diffusers_audioldm(comps):
    prompts = ["a beep followed by a knock", "a knock and then a beep"]
    uncond_ref, cond_ref = _diffusers_embeds(comps, prompts)
    cond = comps.conditioner.encode_text(prompts)
    assert cond.shape == (2, comps.conditioner.output_dim)
    torch.testing.assert_close(cond, cond_ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(comps.conditioner.unconditional(2), uncond_ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(cond.norm(dim=-1), torch.ones(2))
    # order matters to the encoder: the two prompts give different vectors
    assert (cond[0] - cond[1]).abs().max() > 1e-4


def test_audio_condition_is_the_bundle_embedding(comps, bundle):
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(bundle.sample_rate).astype(np.float32) * 0.1 for _ in range(2)]
    ref = torch.nn.functional.normalize(torch.as_tensor(bundle.embed_audio(waves)).float(), dim=-1)
    torch.testing.assert_close(comps.conditioner.encode_audio(waves), ref, atol=1e-6, rtol=0)


def test_training_condition_dropout_only_in_training(bundle):
    cond = ClapConditioner(bundle, source="text", cfg_dropout=0.25)
    caps = ["a beep followed by a knock"] * 400
    out = cond.training_condition(None, caps, generator=torch.Generator().manual_seed(1))
    text = cond.encode_text(caps[:1])
    null = cond.unconditional(1)
    is_null = torch.isclose(out, null, atol=1e-6).all(-1)
    is_text = torch.isclose(out, text, atol=1e-6).all(-1)
    assert bool((is_null | is_text).all())
    # Binomial(400, 0.25): mean 100, sd 8.7; the seeded draw must land within 4 sd
    assert 65 <= int(is_null.sum()) <= 135
    # the same generator state gives the same rows (exact resume)
    again = cond.training_condition(None, caps, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, again)
    # inference paths never drop
    torch.testing.assert_close(cond.encode_text(caps[:3]), text.expand(3, -1))


def test_mix_source_picks_audio_or_text(bundle):
    rng = np.random.default_rng(1)
    waves = torch.from_numpy(rng.standard_normal((3, bundle.sample_rate)).astype(np.float32) * 0.1)
    caps = ["a beep", "a knock", "a dog barks"]
    all_audio = ClapConditioner(bundle, source="mix", cfg_dropout=0.0, audio_prob=1.0)
    all_text = ClapConditioner(bundle, source="mix", cfg_dropout=0.0, audio_prob=0.0)
    g = torch.Generator().manual_seed(0)
    torch.testing.assert_close(all_audio.training_condition(waves, caps, g), all_audio.encode_audio(waves))
    torch.testing.assert_close(all_text.training_condition(waves, caps, g), all_text.encode_text(caps))


def test_wrong_encoder_size_is_one_line_error_or_adapter(comps, bundle):
    wrong = ClapConditioner(bundle, adapter_dim=comps.conditioner.output_dim + 8)
    with pytest.raises(UserError, match=r"gives \d+-d embeddings but the UNet expects \d+-d.*adapter"):
        wrong.check_fits(comps.unet)
    fitted = ClapConditioner(bundle, adapter_dim=comps.conditioner.output_dim)
    fitted.check_fits(comps.unet)
    assert fitted.encode_text(["a beep"]).shape == (1, comps.conditioner.output_dim)
    assert [n for n, _ in fitted.named_parameters()] == ["adapter.weight", "adapter.bias"]
    with pytest.raises(UserError, match="source 'speech' is unknown"):
        ClapConditioner(bundle, source="speech")


def test_save_load_roundtrip_in_diffusers_layout(comps, saved):
    index = json.loads((saved / "model_index.json").read_text())
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]
    assert index["text_encoder"] == ["transformers", "ClapTextModelWithProjection"]
    for sub in ("vae", "unet", "scheduler", "vocoder", "text_encoder", "tokenizer", "clap"):
        assert (saved / sub).is_dir(), sub
    loaded = load_components(saved)
    for a, b in ((comps.unet, loaded.unet), (comps.vae, loaded.vae), (comps.vocoder, loaded.vocoder)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    p = ["a beep followed by a knock"]
    torch.testing.assert_close(loaded.conditioner.encode_text(p), comps.conditioner.encode_text(p))
    assert loaded.config.max_seconds == comps.config.max_seconds
    assert type(loaded.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert type(load_components(saved, scheduler="ddim").scheduler).__name__ == "DDIMScheduler"


def test_adapter_weights_survive_save_load(bundle, tmp_path):
    c = build_tiny_components(bundle, seed=3, adapter_dim=24, **SMALL)
    with torch.no_grad():
        c.conditioner.adapter.weight.add_(1.0)  # as if trained
    save_components(c, tmp_path / "m")
    back = load_components(tmp_path / "m")
    torch.testing.assert_close(back.conditioner.adapter.weight, c.conditioner.adapter.weight)
    torch.testing.assert_close(back.conditioner.encode_text(["a knock"]), c.conditioner.encode_text(["a knock"]))


def test_plain_diffusers_dir_and_missing_folders(saved, tmp_path):
    plain = tmp_path / "plain"
    shutil.copytree(saved, plain)
    shutil.rmtree(plain / "clap")
    (plain / "audioldm_cond.json").unlink()
    c = load_components(plain)  # text_encoder/ + tokenizer/ only, settings derived from the vocoder and UNet
    assert not c.conditioner.has_audio
    assert c.config.mel.n_mels == 64 and c.config.mel.hop_length == 160
    assert c.config.max_seconds == pytest.approx(c.unet.config.sample_size * c.vae_scale_factor * 160 / 16000)
    for sub in ("unet", "vae", "tokenizer"):
        broken = tmp_path / f"no_{sub}"
        shutil.copytree(plain, broken)
        shutil.rmtree(broken / sub)
        with pytest.raises(UserError, match=f"missing the '{sub}/' folder"):
            load_components(broken)
    with pytest.raises(UserError, match="neither a shipped name"):
        load_components(tmp_path / "nowhere")


def test_text_encoder_swap_checks_size(saved, bundle):
    from tclap.models import ClapBundle

    swapped = load_components(saved, text_encoder=bundle)
    assert swapped.conditioner.clap is bundle
    # an encoder with another projection size: a clear error, or an adapter when asked for
    from tclap.models import from_config, get_config

    import dataclasses

    arch = dataclasses.replace(get_config("tiny"), projection_dim=bundle.embed_dim // 2)
    other = from_config(arch)
    assert isinstance(other, ClapBundle)
    with pytest.raises(UserError, match="projection_class_embeddings_input_dim"):
        load_components(saved, text_encoder=other)
    adapted = load_components(saved, text_encoder=other, adapter_dim=bundle.embed_dim)
    assert adapted.conditioner.encode_text(["a beep"]).shape == (1, bundle.embed_dim)


def test_griffin_lim_inverts_a_log_mel():
    sr = 16000
    t = np.arange(sr) / sr
    x = (0.5 * np.sin(2 * np.pi * 440 * t) * np.sin(2 * np.pi * 1.5 * t) + 0.3 * np.sin(2 * np.pi * 2000 * t))
    fe = AudioLDMMelFrontEnd()
    mel = fe(torch.from_numpy(x.astype(np.float32))[None])[:, 0]  # [1, frames, 64]

    def mel_error(n_iter):
        y = GriffinLimVocoder(GriffinLimConfig(n_iter=n_iter))(mel)
        assert y.shape == (1, mel.shape[1] * 160)
        m2 = fe(y)[:, 0]
        return float((m2.exp() - mel.exp()).norm() / mel.exp().norm())

    err0, err = mel_error(0), mel_error(16)
    # phase retrieval must recover most of the magnitude: far better than zero-phase, within 35% overall
    assert err < 0.35 and err < 0.5 * err0
    # unbatched input gives [T]
    assert GriffinLimVocoder(GriffinLimConfig(n_iter=2))(mel[0]).shape == (mel.shape[1] * 160,)


def test_tiny_hifigan_gives_hop_samples_per_frame():
    voc = build_tiny_hifigan(AudioLDMMelConfig())
    assert int(np.prod(voc.config.upsample_rates)) == 160
    with torch.no_grad():
        assert voc(torch.zeros(2, 25, 64)).shape == (2, 25 * 160)


def test_replace_unet_keeps_the_interfaces_and_checks_widths():
    from audioldm_cond.components import build_tiny_components, build_unet, replace_unet
    from basekit.errors import UserError

    comps = build_tiny_components("tiny", seed=0, unet_channels=(16, 32), vae_channels=(16, 32))
    old = comps.unet.config
    replace_unet(comps, [16, 32, 64], layers_per_block=1, seed=3)
    new = comps.unet.config
    assert list(new.block_out_channels) == [16, 32, 64]
    assert (new.in_channels, new.out_channels, new.sample_size) == (old.in_channels, old.out_channels, old.sample_size)
    assert new.projection_class_embeddings_input_dim == comps.conditioner.output_dim
    # seeded: the same call twice gives the same weights
    a = build_unet(4, 16, [16, 32], 8, seed=1).state_dict()
    b = build_unet(4, 16, [16, 32], 8, seed=1).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(UserError, match="UNet channels"):
        build_unet(4, 16, [4, 8], 8)


def test_ldm_unet_setting_is_validated():
    from audioldm_cond.train.config import DataConfig, LdmStageConfig, TrainConfig
    from basekit.errors import UserError

    cfg = TrainConfig(stage="ldm", out_dir="x", model="tiny", data=DataConfig(train_manifest="t.jsonl"),
                      ldm=LdmStageConfig(unet={"chans": [16]}))
    with pytest.raises(UserError, match="channels"):
        cfg.validate()


# ------------------------------------------------------------------------------------- time-position channels
def test_time_position_features_match_a_hand_computation():
    from audioldm_cond.components import time_position_features

    got = time_position_features(5, 3).numpy()
    i = np.arange(5) + 0.5
    want = np.stack([np.cos(np.pi * k * i / 5) for k in (1, 2, 3)])
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert np.all(np.diff(got[0]) < 0)  # channel 0 falls monotonically: every frame's place is unambiguous


def test_position_channels_are_appended_by_the_unet_hook(bundle):
    comps = build_tiny_components(bundle, seed=0, position_channels=3, **SMALL)
    unet = comps.unet
    assert (unet.config.in_channels, unet.config.out_channels) == (4 + 3, 4)
    x = torch.randn(2, 4, 16, 8)
    t = torch.tensor([10, 500])
    cond = torch.randn(2, comps.conditioner.output_dim)
    with torch.no_grad():
        got = unet(x, t, encoder_hidden_states=None, class_labels=cond).sample
        got_kw = unet(sample=x, timestep=t, encoder_hidden_states=None, class_labels=cond).sample
        # Reference: the same weights without the hook, fed the numpy-made channels by hand.
        plain = type(unet).from_config(unet.config)
        plain.load_state_dict(unet.state_dict())
        i = np.arange(16) + 0.5
        pos = np.stack([np.cos(np.pi * k * i / 16) for k in (1, 2, 3)]).astype(np.float32)  # [3, 16]
        pos = torch.from_numpy(pos)[None, :, :, None].expand(2, 3, 16, 8)
        want = plain(torch.cat([x, pos], 1), t, encoder_hidden_states=None, class_labels=cond).sample
    assert got.shape == x.shape
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got_kw, want)


def _assert_same_unet_output(a, b) -> None:
    """Two components' UNets (hooks included) give the same output for one random latent and condition."""
    x, t = torch.randn(1, 4, 16, 8), torch.tensor([100])
    cond = torch.randn(1, a.conditioner.output_dim)
    with torch.no_grad():
        ya = a.unet(x, t, encoder_hidden_states=None, class_labels=cond).sample
        yb = b.unet(x, t, encoder_hidden_states=None, class_labels=cond).sample
    torch.testing.assert_close(ya, yb)


def test_position_channels_survive_save_and_load(bundle, tmp_path):
    comps = build_tiny_components(bundle, seed=0, position_channels=2, **SMALL)
    save_components(comps, tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "audioldm_cond.json").read_text())
    assert cfg["position_channels"] == 2
    back = load_components(tmp_path / "m")
    assert back.config.position_channels == 2 and back.unet.time_position_channels == 2
    _assert_same_unet_output(comps, back)
    # a config that forgets the channels does not fit the UNet: one line naming both sides
    cfg["position_channels"] = 0
    (tmp_path / "m" / "audioldm_cond.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="4 latent channels but the UNet takes 6"):
        load_components(tmp_path / "m")


def test_position_channel_models_refuse_the_diffusers_pipeline_and_bad_counts(bundle):
    from audioldm_cond.components import build_unet, replace_unet
    from audioldm_cond.train.config import parse_unet_channels

    comps = build_tiny_components(bundle, seed=0, **SMALL)
    replace_unet(comps, [16, 32], seed=1, position_channels=4)
    assert comps.config.position_channels == 4 and comps.unet.config.in_channels == 8
    with pytest.raises(UserError, match="4 time-position and 0 condition-map channels"):
        comps.to_diffusers()
    with pytest.raises(UserError, match="position channels 99"):
        build_unet(4, 16, [16, 32], 8, position_channels=99)
    with pytest.raises(UserError, match="--unet-position-channels -1"):
        parse_unet_channels("16,32", 1, -1)
    assert parse_unet_channels("16,32", 1, 4)["position_channels"] == 4
    assert "position_channels" not in parse_unet_channels("16,32", 1, 0)  # configs of older runs stay equal


def test_cond_map_lays_the_condition_out_over_time(bundle):
    """The hook's extra channels equal a numpy linear interpolation of the map's anchors, after the positions."""
    comps = build_tiny_components(bundle, seed=0, position_channels=2, cond_map_channels=3, cond_map_segments=4,
                                  **SMALL)
    unet = comps.unet
    assert unet.config.in_channels == 4 + 2 + 3
    x, t = torch.randn(2, 4, 16, 8), torch.tensor([10, 700])
    cond = torch.randn(2, comps.conditioner.output_dim)
    W = unet.time_cond_map.proj.weight.detach().numpy()
    bias = unet.time_cond_map.proj.bias.detach().numpy()
    anchors = (cond.numpy() @ W.T + bias).reshape(2, 3, 4)  # [B, M, S]
    # anchors sit at frames 0, 5, 10, 15 (align_corners): np.interp between them
    xs = np.linspace(0, 15, 4)
    layout = np.stack([[np.interp(np.arange(16), xs, anchors[b, m]) for m in range(3)] for b in range(2)])
    i = np.arange(16) + 0.5
    pos = np.stack([np.cos(np.pi * k * i / 16) for k in (1, 2)])
    extra = np.concatenate([np.broadcast_to(pos, (2, 2, 16)), layout], 1).astype(np.float32)  # [B, 5, 16]
    with torch.no_grad():
        got = unet(x, t, encoder_hidden_states=None, class_labels=cond).sample
        plain = type(unet).from_config(unet.config)
        plain.load_state_dict({k: v for k, v in unet.state_dict().items() if not k.startswith("time_cond_map.")})
        feed = torch.cat([x, torch.from_numpy(extra)[..., None].expand(2, 5, 16, 8)], 1)
        want = plain(feed, t, encoder_hidden_states=None, class_labels=cond).sample
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    # the map is trained with the UNet: it is among its parameters
    assert any(p is unet.time_cond_map.proj.weight for p in unet.parameters())
    with pytest.raises(UserError, match="pass class_labels"):
        unet(x, t, encoder_hidden_states=None)


def test_cond_map_survives_save_and_load_and_is_checked(bundle, tmp_path):
    from audioldm_cond.train.config import parse_cond_map, parse_unet_channels

    comps = build_tiny_components(bundle, seed=0, cond_map_channels=2, cond_map_segments=3, **SMALL)
    save_components(comps, tmp_path / "m")
    back = load_components(tmp_path / "m")
    assert (back.config.cond_map_channels, back.config.cond_map_segments) == (2, 3)
    _assert_same_unet_output(comps, back)
    with pytest.raises(UserError, match="condition-map channels"):
        back.to_diffusers()
    cfg = json.loads((tmp_path / "m" / "audioldm_cond.json").read_text())
    cfg["cond_map_channels"] = 0
    (tmp_path / "m" / "audioldm_cond.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="4 latent channels but the UNet takes 6"):
        load_components(tmp_path / "m")
    assert parse_cond_map("8x4") == (8, 4) and parse_cond_map("6") == (6, 8) and parse_cond_map(None) == (0, 8)
    for bad in ("axb", "1x2x3"):
        with pytest.raises(UserError, match="--unet-cond-map"):
            parse_cond_map(bad)
    with pytest.raises(UserError, match="--unet-cond-map 8x1"):
        parse_unet_channels("16,32", 1, 0, 8, 1)
    u = parse_unet_channels("16,32", 1, 0, 8, 4)
    assert (u["cond_map_channels"], u["cond_map_segments"]) == (8, 4)
