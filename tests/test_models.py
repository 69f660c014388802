"""tclap.models: tiny tokenizer, named configs, load_clap sources, ClapBundle embeddings and training pieces."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from basekit.audio import save_audio
from basekit.errors import UserError
from tclap.models import ClapBundle, get_config, load_clap
from tclap.models import factory, frontends
from tclap.models.tokenizer import build_tiny_tokenizer

SR = 16000


@pytest.fixture(scope="module")
def tiny() -> ClapBundle:
    return load_clap("tiny")


def test_tiny_tokenizer_is_deterministic_roberta_compatible():
    a, b = build_tiny_tokenizer(), build_tiny_tokenizer()
    assert a.get_vocab() == b.get_vocab()
    assert a.convert_ids_to_tokens([0, 1, 2, 3, 4]) == ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    ids = a("a zebra plays the xylophone")["input_ids"]
    assert ids[0] == 0 and ids[-1] == 2 and 3 not in ids  # byte-level BPE: never <unk>
    assert a.decode(ids, skip_special_tokens=True) == "a zebra plays the xylophone"
    # connectors and built-in phrases are short encodings
    assert len(a.tokenize(" followed by")) <= 2


def test_named_configs_have_laion_sizes():
    t = get_config("htsat-tiny-roberta")
    assert t.audio.hidden_size == 768 and t.text.hidden_size == 768 and t.projection_dim == 512
    assert t.text.max_position_embeddings == 514 and t.frontend.sample_rate == 48000
    b = get_config("htsat-base-roberta")
    assert b.audio.hidden_size == 1024 and tuple(b.audio.depths) == (2, 2, 12, 2)
    tiny = get_config("tiny")
    assert tiny.frontend.frames == 201  # 4 s at 16 kHz, hop 320
    with pytest.raises(UserError, match="unknown CLAP config"):
        get_config("huge")


def test_tiny_is_seeded_and_embeddings_are_normalised(tiny):
    again = load_clap("tiny")
    for (k, v), (k2, v2) in zip(tiny.model.state_dict().items(), again.model.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    texts = ["a beep followed by a knock", "a knock followed by a beep", "rain"]
    e = tiny.embed_text(texts, batch_size=2)
    assert e.shape == (3, tiny.embed_dim) == (3, 128)
    torch.testing.assert_close(e.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(tiny.embed_text(texts[1:2]), e[1:2], atol=1e-6, rtol=0)  # batch-independent


def test_embed_audio_deterministic_centre_crop_and_batching(tiny):
    g = np.random.default_rng(0)
    long = g.standard_normal(SR * 6).astype(np.float32) * 0.1  # 6 s > the 4 s window
    short = g.standard_normal(SR * 2).astype(np.float32) * 0.1
    e = tiny.embed_audio([long, short], batch_size=1)
    torch.testing.assert_close(tiny.embed_audio([long, short], batch_size=2), e, atol=1e-5, rtol=0)
    torch.testing.assert_close(tiny.embed_audio([long, short], batch_size=1), e, atol=0, rtol=0)  # repeatable
    # the centre 4 s of the long clip, cut here by hand, gives the same embedding
    start = (len(long) - 4 * SR) // 2
    centre = tiny.embed_audio([long[start:start + 4 * SR]])
    torch.testing.assert_close(centre, e[:1], atol=1e-5, rtol=0)
    # a [B, T] tensor is accepted too
    batch = torch.from_numpy(np.stack([long[: 4 * SR], long[SR: 5 * SR]]))
    assert tiny.embed_audio(batch).shape == (2, 128)
    # training mode is restored after evaluation calls
    tiny.model.train()
    tiny.embed_audio([short])
    assert tiny.model.training
    tiny.model.eval()


def test_embed_audio_files_resamples(tiny, tmp_path):
    g = np.random.default_rng(1)
    wav = g.standard_normal(SR * 4).astype(np.float32) * 0.1
    p = tmp_path / "a.wav"
    save_audio(p, wav, SR)
    from basekit.audio import load_audio

    torch.testing.assert_close(tiny.embed_audio_files([p]), tiny.embed_audio([load_audio(p, sr=SR)]), atol=1e-6, rtol=0)
    with pytest.raises(UserError, match="not found"):
        tiny.embed_audio_files([tmp_path / "missing.wav"])


def test_training_pieces_match_clap_forward_and_carry_gradients(tiny):
    g = torch.Generator().manual_seed(0)
    waves = torch.randn(2, SR * 5, generator=g) * 0.1
    feats = tiny.features(waves, generator=torch.Generator().manual_seed(1))
    assert feats.shape == (2, 1, 201, 64)
    enc = tiny.tokenize(["a beep", "a knock followed by a beep"])
    assert set(enc) == {"input_ids", "attention_mask"} and enc["input_ids"].shape[0] == 2
    tiny.model.eval()
    a = tiny.audio_embeds(feats)
    t = tiny.text_embeds(enc["input_ids"], enc["attention_mask"])
    out = tiny.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], input_features=feats)
    torch.testing.assert_close(a, out.audio_embeds, atol=1e-5, rtol=0)
    torch.testing.assert_close(t, out.text_embeds, atol=1e-5, rtol=0)
    # ClapModel's own logits use the two scales the way the bundle documents
    torch.testing.assert_close(out.logits_per_text, t @ a.t() * tiny.logit_scale_t.exp(), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.logits_per_audio, a @ t.t() * tiny.logit_scale_a.exp(), atol=1e-4, rtol=0)
    (a * t).sum().backward()
    assert tiny.model.audio_projection.linear1.weight.grad is not None
    assert tiny.model.text_projection.linear1.weight.grad is not None
    tiny.model.zero_grad(set_to_none=True)
    with pytest.raises(UserError, match=r"\[B, 1, frames, n_mels\]"):
        tiny.audio_embeds(feats[:, 0])


def test_hf_directory_layout_loads_with_same_embeddings(tmp_path):
    """An HF-layout directory written with plain transformers calls (no tclap export code)."""
    from transformers import ClapModel, ClapProcessor

    arch = get_config("tiny")
    tok = build_tiny_tokenizer()
    torch.manual_seed(11)
    model = ClapModel(arch.to_hf(vocab_size=len(tok))).eval()
    model.save_pretrained(tmp_path / "m")
    fe = frontends.make_feature_extractor(arch.frontend)
    ClapProcessor(feature_extractor=fe, tokenizer=tok).save_pretrained(tmp_path / "m")
    bundle = load_clap(tmp_path / "m")
    assert bundle.sample_rate == SR and bundle.config_name == "custom"
    texts = ["a dog barks followed by a man speaks"]
    enc = tok(texts, return_tensors="pt")
    wave = np.random.default_rng(3).standard_normal(SR * 4).astype(np.float32) * 0.1
    feats = torch.from_numpy(fe(wave, sampling_rate=SR, return_tensors="np")["input_features"])
    with torch.no_grad():
        ref = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], input_features=feats)
    torch.testing.assert_close(bundle.embed_text(texts), F.normalize(ref.text_embeds, dim=-1), atol=1e-6, rtol=0)
    torch.testing.assert_close(bundle.embed_audio([wave]), F.normalize(ref.audio_embeds, dim=-1), atol=1e-4, rtol=0)


def test_bad_sources_are_one_line_errors(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="not found: pass a config name"):
        load_clap("nothing-here")
    with pytest.raises(UserError, match="not found: no such folder or file"):
        load_clap(str(tmp_path / "nothing-here"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no config.json"):
        load_clap(tmp_path / "empty")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(UserError, match="not a checkpoint"):
        load_clap(tmp_path / "x.txt")
    monkeypatch.setattr(factory, "ASSETS_DIR", tmp_path / "assets")
    with pytest.raises(UserError, match="run the embedded-model recipe") as exc:
        load_clap("tiny-tclap")
    assert "\n" not in str(exc.value)


def test_shipped_names_resolve_to_assets(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(factory, "ASSETS_DIR", tmp_path)
    tiny.save_pretrained(tmp_path / "tiny-baseline")
    b = load_clap("tiny-baseline")
    assert b.config_name == "tiny"
    torch.testing.assert_close(b.embed_text(["a beep"]), tiny.embed_text(["a beep"]), atol=1e-6, rtol=0)


def test_tokenizer_larger_than_embedding_table_is_refused(tiny, tmp_path):
    from transformers import AutoTokenizer

    tiny.save_pretrained(tmp_path / "m")
    big = build_tiny_tokenizer(vocab_size=1400)
    big.save_pretrained(tmp_path / "big")
    assert len(AutoTokenizer.from_pretrained(tmp_path / "big")) > 1024
    with pytest.raises(UserError, match="tokenizer has"):
        load_clap(tmp_path / "m", tokenizer=str(tmp_path / "big"))


def test_hub_id_offline_is_user_error():
    # conftest sets HF_HUB_OFFLINE=1 and blocks sockets: a hub id that is not cached fails with one line
    with pytest.raises(UserError, match="cannot load a ClapModel from someone/clap-not-cached") as exc:
        load_clap("someone/clap-not-cached")
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("name", ["clap-htsat-unfused/", "./clap-htsat-unfused", "../clap", "~/no-such-clap-dir",
                                  "runs/model", "ckpt/clap.pt", "a/b/c", "model.safetensors", "C:\\models\\clap"])
def test_missing_local_paths_say_not_found_not_hub_rules(name, tmp_path, monkeypatch):
    """A string that looks like a path is never sent to the hub: a missing one is "not found" (issue 21)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()  # an existing parent folder makes runs/model a path
    with pytest.raises(UserError, match="not found: no such folder or file") as exc:
        load_clap(name)
    assert "Repo id" not in str(exc.value) and "\n" not in str(exc.value)


def test_looks_like_local_path_keeps_hub_ids(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for hub in ("laion/clap-htsat-unfused", "someone/model-v1.5", "owner/name"):
        assert not factory.looks_like_local_path(hub), hub
    (tmp_path / "laion").mkdir()  # ... unless a local folder of that first name exists
    assert factory.looks_like_local_path("laion/clap-htsat-unfused")


def test_cli_path_arguments_say_not_found(tmp_path, capsys, monkeypatch):
    """``tclap evaluate --model DIR/`` and ``eval-gen score --backend clap --weights DIR/``: one "not found" line."""
    from conductor.cli import main as tclap_main
    from eval_gen.cli import main as eval_main

    monkeypatch.chdir(tmp_path)
    assert tclap_main(["evaluate", "--model", "clap-htsat-unfused/", "--data", "builtin-heldout",
                       "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert "tclap: error: model 'clap-htsat-unfused/' not found: no such folder or file" in err
    (tmp_path / "g").mkdir()
    save_audio(tmp_path / "g" / "a.wav", np.zeros(1600, np.float32) + 0.1, SR)
    assert eval_main(["score", "--gen", "g", "--ref", "g", "--backend", "clap", "--weights", "clap-htsat-unfused/",
                      "--metrics", "fad", "--n-boot", "0", "--quiet", "--no-plot", "--cache-dir", "", "--out", "o"]) == 2
    assert "not found: no such folder or file" in capsys.readouterr().err
