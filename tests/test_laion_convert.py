"""LAION-CLAP ``.pt`` checkpoints: write tiny ones in LAION's layout, load them, compare embeddings.

The LAION-layout file is produced from a transformers ``ClapModel`` by an *inverse* mapping written here,
independently of ``tclap.models.laion``; a hard-coded list of real LAION-CLAP key names (as they appear in
``630k-audioset-best.pt``, HTSAT-tiny + RoBERTa) checks that the inverse mapping speaks LAION's layout.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from tclap.cli import main as tclap_main
from basekit.errors import UserError
from tclap.models import load_clap
from tclap.models.factory import from_config

# Real key names of a LAION-CLAP HTSAT + RoBERTa checkpoint (DDP "module." prefix included).
REAL_LAION_KEYS = [
    "module.logit_scale_a",
    "module.logit_scale_t",
    "module.audio_branch.bn0.running_mean",
    "module.audio_branch.patch_embed.proj.weight",
    "module.audio_branch.patch_embed.norm.bias",
    "module.audio_branch.layers.0.blocks.0.norm1.weight",
    "module.audio_branch.layers.0.blocks.0.attn.qkv.weight",
    "module.audio_branch.layers.0.blocks.0.attn.relative_position_bias_table",
    "module.audio_branch.layers.0.blocks.0.attn.proj.bias",
    "module.audio_branch.layers.0.blocks.1.attn_mask",
    "module.audio_branch.layers.0.blocks.0.mlp.fc1.weight",
    "module.audio_branch.layers.0.blocks.0.mlp.fc2.bias",
    "module.audio_branch.layers.0.downsample.reduction.weight",
    "module.audio_branch.norm.weight",
    "module.audio_branch.spectrogram_extractor.stft.conv_real.weight",
    "module.audio_branch.logmel_extractor.melW",
    "module.audio_branch.tscam_conv.weight",
    "module.audio_branch.head.weight",
    "module.text_branch.embeddings.word_embeddings.weight",
    "module.text_branch.encoder.layer.0.attention.self.query.weight",
    "module.text_branch.encoder.layer.1.output.LayerNorm.bias",
    "module.text_branch.pooler.dense.weight",
    "module.text_transform.sequential.0.weight",
    "module.audio_transform.sequential.3.bias",
    "module.audio_projection.0.weight",
    "module.audio_projection.2.bias",
    "module.text_projection.0.bias",
    "module.text_projection.2.weight",
]


def hf_to_laion(model) -> dict[str, torch.Tensor]:
    """Inverse mapping (ClapModel -> LAION ``module.``-prefixed keys), plus LAION's extra tensors."""
    sd = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    enc = "audio_model.audio_encoder."
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in sd.items():
        if k.startswith("text_model."):
            out["text_branch." + k[len("text_model."):]] = v
        elif k.startswith(("audio_projection.", "text_projection.")):
            out[k.replace(".linear1.", ".0.").replace(".linear2.", ".2.")] = v
        elif k in ("logit_scale_a", "logit_scale_t"):
            out[k] = v
        elif k.startswith(enc):
            rest = k[len(enc):]
            m = re.match(r"(layers\.\d+\.blocks\.\d+\.)attention\.self\.(query|key|value)\.(weight|bias)$", rest)
            if m:
                qkv.setdefault(m.group(1) + "attn.qkv." + m.group(3), {})[m.group(2)] = v
                continue
            rest = (rest.replace("batch_norm.", "bn0.").replace("layernorm_before", "norm1")
                    .replace("layernorm_after", "norm2").replace("attention.output.dense", "attn.proj")
                    .replace("attention.self.relative_position", "attn.relative_position")
                    .replace("intermediate.dense", "mlp.fc1").replace("blocks.0.output.dense", "blocks.0.mlp.fc2")
                    .replace("blocks.1.output.dense", "blocks.1.mlp.fc2"))
            out["audio_branch." + rest] = v
        else:
            raise AssertionError(f"unmapped key {k}")
    for k, parts in qkv.items():
        out["audio_branch." + k] = torch.cat([parts["query"], parts["key"], parts["value"]], dim=0)
    # tensors LAION saves that have no ClapModel counterpart
    g = torch.Generator().manual_seed(5)
    out["audio_branch.spectrogram_extractor.stft.conv_real.weight"] = torch.randn(513, 1, 1024, generator=g)
    out["audio_branch.logmel_extractor.melW"] = torch.randn(513, 64, generator=g)
    for i, depth in enumerate(model.config.audio_config.depths):
        for j in range(depth):
            if j % 2 == 1:  # shifted-window blocks keep their attention mask as a buffer
                out[f"audio_branch.layers.{i}.blocks.{j}.attn_mask"] = torch.zeros(4, 64, 64)
    out["audio_branch.tscam_conv.weight"] = torch.randn(527, 128, 2, 3, generator=g)
    out["audio_branch.head.weight"] = torch.randn(527, 128, generator=g)
    d = model.config.projection_dim
    for side in ("text", "audio"):
        out[f"{side}_transform.sequential.0.weight"] = torch.randn(d, d, generator=g)
        out[f"{side}_transform.sequential.3.bias"] = torch.randn(d, generator=g)
    return {"module." + k: v for k, v in out.items()}


@pytest.fixture(scope="module")
def tiny_model():
    bundle = from_config("tiny", seed=7)
    # non-trivial BatchNorm statistics and logit scales, so that a dropped buffer would show
    bn = bundle.model.audio_model.audio_encoder.batch_norm
    g = torch.Generator().manual_seed(2)
    bn.running_mean.copy_(torch.randn(64, generator=g) * 5)
    bn.running_var.copy_(torch.rand(64, generator=g) * 30 + 1)
    with torch.no_grad():
        bundle.model.logit_scale_a.fill_(2.5)
        bundle.model.logit_scale_t.fill_(3.0)
    return bundle


@pytest.fixture(scope="module")
def laion_ckpt(tiny_model, tmp_path_factory):
    sd = hf_to_laion(tiny_model.model)
    path = tmp_path_factory.mktemp("laion") / "tiny-laion.pt"
    torch.save({"epoch": 3, "name": "tiny", "state_dict": sd}, path)
    return path, sd


def _clips():
    g = np.random.default_rng(0)
    return [g.standard_normal(16000 * 4).astype(np.float32) * 0.1, g.standard_normal(16000 * 3).astype(np.float32) * 0.3]


def test_inverse_mapping_writes_real_laion_key_names(laion_ckpt):
    _, sd = laion_ckpt
    missing = [k for k in REAL_LAION_KEYS if k not in sd]
    assert not missing
    assert sd["module.audio_branch.layers.0.blocks.0.attn.qkv.weight"].shape == (3 * 64, 64)


def test_converted_checkpoint_gives_the_same_embeddings(tiny_model, laion_ckpt):
    path, _ = laion_ckpt
    texts = ["a beep followed by a knock", "rain falls and then a dog barks"]
    for bundle in (load_clap(path, config="tiny"), load_clap(path)):  # explicit config, and read off the shapes
        assert bundle.config_name == "tiny"
        torch.testing.assert_close(bundle.embed_text(texts), tiny_model.embed_text(texts), atol=1e-6, rtol=0)
        torch.testing.assert_close(bundle.embed_audio(_clips()), tiny_model.embed_audio(_clips()), atol=1e-5, rtol=0)
        assert bundle.model.logit_scale_a.item() == pytest.approx(2.5)
        assert bundle.model.logit_scale_t.item() == pytest.approx(3.0)


def test_wrong_architecture_is_one_line_error(laion_ckpt):
    path, _ = laion_ckpt
    with pytest.raises(UserError, match="does not match config 'htsat-tiny-roberta'") as exc:
        load_clap(path, config="htsat-tiny-roberta")
    assert "\n" not in str(exc.value)


def test_projection_size_mismatch(laion_ckpt, tmp_path):
    _, sd = laion_ckpt
    bad = dict(sd)
    bad["module.text_projection.2.weight"] = torch.zeros(96, 128)
    bad["module.text_projection.2.bias"] = torch.zeros(96)
    p = tmp_path / "bad.pt"
    torch.save({"state_dict": bad}, p)
    with pytest.raises(UserError, match="audio projection size 128 != text projection size 96"):
        load_clap(p)


def test_other_architecture_keys_are_refused(laion_ckpt, tmp_path):
    _, sd = laion_ckpt
    bad = {k: v for k, v in sd.items() if "audio_branch.layers" not in k}
    bad["module.audio_branch.conv_block1.conv1.weight"] = torch.zeros(64, 1, 3, 3)  # a PANN CNN14 audio branch
    p = tmp_path / "pann.pt"
    torch.save({"state_dict": bad}, p)
    with pytest.raises(UserError, match="not a LAION-CLAP HTSAT \\+ RoBERTa checkpoint"):
        load_clap(p)


def test_truncated_file_is_user_error(laion_ckpt, tmp_path):
    path, _ = laion_ckpt
    p = tmp_path / "cut.pt"
    p.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(UserError, match="cannot read checkpoint"):
        load_clap(p)


def test_unknown_size_needs_a_tokenizer_directory(tmp_path, capsys):
    # a tiny-shaped model with a 3-layer text tower matches no named config: LAION's roberta tokenizer kind
    from transformers import ClapModel

    from tclap.models.configs import get_config
    from tclap.models.tokenizer import build_tiny_tokenizer

    arch = get_config("tiny")
    arch.text.num_hidden_layers = 3
    tok = build_tiny_tokenizer()
    torch.manual_seed(0)
    model = ClapModel(arch.to_hf(vocab_size=len(tok))).eval()
    p = tmp_path / "custom.pt"
    torch.save({"state_dict": hf_to_laion(model)}, p)
    with pytest.raises(UserError, match="--tokenizer DIR"):
        load_clap(p)
    assert tclap_main(["export", "--model", str(p), "--out", str(tmp_path / "x")]) == 2
    assert "--tokenizer DIR" in capsys.readouterr().err
    tok_dir = tmp_path / "tok"
    tok.save_pretrained(tok_dir)
    # head count is not in the weights: an explicit config (object or JSON file) supplies it
    arch.name, arch.tokenizer = "tiny-3layer", "roberta"
    cfg_file = tmp_path / "arch.json"
    cfg_file.write_text(json.dumps(arch.to_dict()))
    bundle = load_clap(p, tokenizer=str(tok_dir), config=str(cfg_file))
    assert bundle.config_name == "tiny-3layer"
    enc = tok(["a knock"], return_tensors="pt")
    with torch.no_grad():
        ref = torch.nn.functional.normalize(model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                                                  input_features=torch.zeros(1, 1, 201, 64)).text_embeds, dim=-1)
    torch.testing.assert_close(bundle.embed_text(["a knock"]), ref, atol=1e-6, rtol=0)
