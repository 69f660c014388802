"""tclap export: a directory that transformers and diffusers' AudioLDM load, written atomically."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tclap.cli import main as tclap_main
from basekit.errors import UserError
from tclap.models.export import export_bundle
from tclap.models import load_clap

TEXTS = ["a beep followed by a knock", "a knock followed by a beep", "rain falls"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("exp") / "tiny-export"
    assert tclap_main(["export", "--model", "tiny", "--out", str(out)]) == 0
    return out, load_clap("tiny")


def test_transformers_loads_both_classes_with_same_text_embeddings(exported):
    from transformers import AutoTokenizer, ClapModel, ClapProcessor, ClapTextModelWithProjection

    out, bundle = exported
    ref = bundle.embed_text(TEXTS)
    tok = AutoTokenizer.from_pretrained(out)
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        full = ClapModel.from_pretrained(out).eval()
        t_full = F.normalize(full.get_text_features(**enc).pooler_output, dim=-1)
        text_only = ClapTextModelWithProjection.from_pretrained(out).eval()
        t_text = F.normalize(text_only(**enc).text_embeds, dim=-1)
    torch.testing.assert_close(t_full, ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(t_text, ref, atol=1e-6, rtol=0)
    proc = ClapProcessor.from_pretrained(out)
    assert proc.feature_extractor.sampling_rate == 16000 and proc.feature_extractor.hop_length == 320
    # the processor's features feed the exported model and match our front end's embedding
    wave = np.random.default_rng(0).standard_normal(16000 * 4).astype(np.float32) * 0.1
    feats = proc.feature_extractor(wave, sampling_rate=16000, return_tensors="pt")["input_features"]
    with torch.no_grad():
        a = F.normalize(full.get_audio_features(input_features=feats).pooler_output, dim=-1)
    torch.testing.assert_close(a, bundle.embed_audio([wave]), atol=1e-4, rtol=0)


def test_provenance_and_round_trip(exported):
    out, bundle = exported
    meta = json.loads((out / "tclap_config.json").read_text())
    assert meta["config_name"] == "tiny" and meta["arch"]["projection_dim"] == 128
    assert meta["frontend"]["sample_rate"] == 16000 and meta["provenance"]["exported_from"] == "tiny"
    assert meta["arch"]["text"]["vocab_size"] == len(bundle.tokenizer)
    again = load_clap(out)
    assert again.config_name == "tiny"
    torch.testing.assert_close(again.embed_text(TEXTS), bundle.embed_text(TEXTS), atol=1e-6, rtol=0)


def test_atomic_overwrite_and_refusals(exported, tmp_path, monkeypatch):
    _, bundle = exported
    out = tmp_path / "m"
    export_bundle(bundle, out)
    first = (out / "model.safetensors").read_bytes()
    # an interrupted export leaves the previous one intact and no temp dirs behind
    import tclap.models.export as ex

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ex, "make_feature_extractor", boom)
    with pytest.raises(RuntimeError):
        export_bundle(bundle, out)
    monkeypatch.undo()
    assert (out / "model.safetensors").read_bytes() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    export_bundle(bundle, out)  # overwriting an export is allowed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="not a tclap export"):
        export_bundle(bundle, other)
    assert (other / "keep.txt").read_text() == "mine"


def test_audioldm_pipeline_accepts_exported_text_encoder(exported):
    from diffusers import AudioLDMPipeline, AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import ClapTextModelWithProjection, RobertaTokenizerFast, SpeechT5HifiGan, SpeechT5HifiGanConfig

    out, bundle = exported
    text_encoder = ClapTextModelWithProjection.from_pretrained(out)
    tokenizer = RobertaTokenizerFast.from_pretrained(out)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=(8, 16), norm_num_groups=4, attention_head_dim=4,
        class_embed_type="simple_projection", projection_class_embeddings_input_dim=bundle.embed_dim,
        class_embeddings_concat=True,
    )
    vae = AutoencoderKL(
        block_out_channels=[8, 16], in_channels=1, out_channels=1, norm_num_groups=4,
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2, latent_channels=4,
    )
    vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(
        model_in_dim=8, sampling_rate=16000, upsample_initial_channel=16, upsample_rates=[2, 2],
        upsample_kernel_sizes=[4, 4], resblock_kernel_sizes=[3, 7], resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5]],
        normalize_before=False,
    ))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False)
    pipe = AudioLDMPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                            vocoder=vocoder)
    pipe.set_progress_bar_config(disable=True)
    audio = pipe(TEXTS[:1], num_inference_steps=2, guidance_scale=2.0, generator=torch.Generator().manual_seed(0),
                 output_type="np").audios
    assert audio.ndim == 2 and audio.shape[0] == 1 and audio.shape[1] > 0 and np.isfinite(audio).all()
    # the pipeline conditions on our text embedding
    emb = pipe._encode_prompt(TEXTS[:1], "cpu", 1, False)
    torch.testing.assert_close(emb, bundle.embed_text(TEXTS[:1]), atol=1e-6, rtol=0)
