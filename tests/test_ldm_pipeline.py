"""TemporalAudioLDMPipeline against diffusers' AudioLDMPipeline (same components, same seed), seeds, re-ranking,
bad input; and the ``audioldm-cond generate`` CLI in-process."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audioldm_cond.cli import main
from audioldm_cond.components import build_tiny_components, save_components
from audioldm_cond.pipeline import TemporalAudioLDMPipeline
from basekit.errors import UserError

SECONDS = 0.64  # 64 mel frames -> 32 x 32 latents: fast on 2 cores
SMALL = dict(unet_channels=(16, 32), vae_channels=(16, 32), max_seconds=1.28, vocoder="hifigan")


@pytest.fixture(scope="module")
def bundle():
    from tclap.models import load_clap

    return load_clap("tiny")


@pytest.fixture(scope="module")
def comps(bundle):
    return build_tiny_components(bundle, seed=0, **SMALL)


@pytest.fixture(scope="module")
def pipe(comps):
    return TemporalAudioLDMPipeline(comps, progress=False)


def _diffusers(comps):
    return comps.to_diffusers()


@pytest.mark.parametrize("kind", ["dpm", "ddim"])
def test_matches_diffusers_audioldm_pipeline(comps, pipe, kind):
    from audioldm_cond.components import make_scheduler

    old = pipe.scheduler
    pipe.scheduler = make_scheduler(kind, dict(old.config))
    try:
        ref_pipe = _diffusers(comps)
        ref = ref_pipe(
            "a beep followed by a knock",
            audio_length_in_s=SECONDS,
            num_inference_steps=3,
            guidance_scale=3.0,
            negative_prompt="a dog barks",
            generator=torch.Generator().manual_seed(7),
        ).audios[0]
        out = pipe("a beep followed by a knock", seconds=SECONDS, num_inference_steps=3, guidance_scale=3.0,
                   negative_prompt="a dog barks", seed=7)
    finally:
        pipe.scheduler = old
    assert out.audios[0].shape == ref.shape == (int(SECONDS * 16000),)
    scale = float(np.abs(ref).max())
    assert scale > 0
    np.testing.assert_allclose(out.audios[0], ref, atol=1e-5 * scale, rtol=0)
    assert out.seeds == [7] and out.sample_rate == 16000 and out.mels[0].shape == (64, 64)


def test_seeds_are_per_output_and_batch_size_free(pipe):
    prompts = ["a beep followed by a knock", "a knock followed by a beep"]
    both = pipe(prompts, seconds=SECONDS, num_inference_steps=2, seed=5, batch_size=2)
    split = pipe(prompts, seconds=SECONDS, num_inference_steps=2, seed=5, batch_size=1)
    alone = pipe(prompts[1], seconds=SECONDS, num_inference_steps=2, seed=6)
    assert both.seeds == [5, 6] and both.prompt_index == [0, 1]
    # batched and single convolutions differ only by float rounding (~1e-6 of the signal's scale)
    for a, b in zip(both.mels + both.audios, split.mels + split.audios):
        np.testing.assert_allclose(a, b, atol=1e-4 * np.abs(b).max(), rtol=0)
    np.testing.assert_allclose(both.mels[1], alone.mels[0], atol=1e-4 * np.abs(alone.mels[0]).max(), rtol=0)
    assert np.abs(both.mels[0] - both.mels[1]).max() > 1e-2 * np.abs(both.mels[1]).max()  # different noise


def test_candidates_are_ranked_by_clap_score(pipe, bundle):
    out = pipe(["a beep", "a knock then a beep"], seconds=SECONDS, num_inference_steps=2, seed=0, num_candidates=3)
    assert len(out.audios) == 6 and out.prompt_index == [0, 0, 0, 1, 1, 1] and out.candidate_rank == [0, 1, 2] * 2
    assert sorted(out.seeds) == list(range(6))
    # independent score: the bundle's own embeddings, cosine of normalised vectors
    from basekit.audio import resample

    text = bundle.embed_text(out.prompts)
    audio = bundle.embed_audio([resample(a, 16000, bundle.sample_rate) for a in out.audios])
    ref = torch.nn.functional.cosine_similarity(torch.as_tensor(text), torch.as_tensor(audio)).numpy()
    np.testing.assert_allclose(out.scores, ref, atol=1e-5)
    for g in (slice(0, 3), slice(3, 6)):
        s = out.scores[g]
        assert s == sorted(s, reverse=True)
    assert out.best() == [0, 3]


def test_bad_input_is_one_clear_line(pipe, caplog):
    for kwargs, pattern in [
        (dict(prompt=""), "prompt 1 is empty"),
        (dict(prompt=["a beep", "  "]), "prompt 2 is empty"),
        (dict(prompt=[]), "no prompt given"),
        (dict(prompt="a beep", seconds=0), "must be a positive length"),
        (dict(prompt="a beep", seconds=-2), "must be a positive length"),
        (dict(prompt="a beep", seconds=60), "beyond this model's limit of 1.28 s"),
        (dict(prompt="a beep", num_inference_steps=0), "at least 1"),
        (dict(prompt=["a", "b"], negative_prompt=["x", "y", "z"]), "3 negative prompts for 2 prompts"),
    ]:
        with pytest.raises(UserError, match=pattern) as e:
            pipe(**kwargs)
        assert "\n" not in str(e.value)
    long_prompt = " ".join(["a beep followed by a knock"] * 20)
    with caplog.at_level(logging.WARNING, logger="audioldm_cond.conditioning"):
        out = pipe(long_prompt, seconds=SECONDS, num_inference_steps=1, seed=0)
    assert "prompt truncated" in caplog.text and len(out.audios) == 1


def test_text_only_encoder_cannot_rerank(comps):
    from audioldm_cond.components import AudioLDMComponents
    from audioldm_cond.conditioning import ClapConditioner, TransformersClap

    te = TransformersClap(comps.conditioner.text_encoder_with_projection(), comps.conditioner.clap.tokenizer)
    c = AudioLDMComponents(comps.vae, comps.unet, comps.scheduler, comps.vocoder, comps.mel,
                           ClapConditioner(te), comps.config)
    p = TemporalAudioLDMPipeline(c, progress=False)
    assert p(["a beep"], seconds=SECONDS, num_inference_steps=1, seed=0).scores is None
    with pytest.raises(UserError, match="re-ranking candidates needs a CLAP with an audio branch"):
        p(["a beep"], seconds=SECONDS, num_inference_steps=1, num_candidates=2)


# ------------------------------------------------------------------------------------------------ CLI
@pytest.fixture(scope="module")
def model_dir(bundle, tmp_path_factory):
    d = tmp_path_factory.mktemp("cli") / "model"
    save_components(build_tiny_components(bundle, seed=1, **dict(SMALL, vocoder="griffinlim")), d)
    return d


def test_cli_generate_writes_wav_png_jsonl_and_resumes(model_dir, tmp_path, capsys):
    out = tmp_path / "gen"
    args = ["generate", "a beep followed by a knock", "a knock followed by a beep", "--out", str(out),
            "--model", str(model_dir), "--seconds", str(SECONDS), "--steps", "2", "--seed", "3", "--quiet"]
    assert main(args) == 0
    assert "Loading weights" not in capsys.readouterr().err  # third-party bars only with --verbose
    recs = [json.loads(line) for line in (out / "prompts.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in recs] == ["a beep followed by a knock", "a knock followed by a beep"]
    assert [r["seed"] for r in recs] == [3, 4]
    for r in recs:
        wav, sr = sf.read(out / f"{r['id']}.wav")
        assert sr == 16000 and wav.shape == (int(SECONDS * 16000),)
        assert (out / f"{r['id']}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert -1.0 <= r["score"] <= 1.0
    capsys.readouterr()
    assert main(args) == 0
    assert "skipped 2 already generated" in capsys.readouterr().out
    # one more prompt: only it is generated, with the seed it would have had in one run (3 + 2)
    assert main(args[:3] + ["a dog barks"] + args[3:]) == 0
    assert "generated 1 clip(s)" in capsys.readouterr().out
    recs = [json.loads(line) for line in (out / "prompts.jsonl").read_text().splitlines()]
    assert [r["seed"] for r in recs] == [3, 4, 5]


def test_cli_prompts_file_and_errors(model_dir, tmp_path, capsys):
    pf = tmp_path / "p.jsonl"
    pf.write_text('{"id": "beep_knock", "prompt": "a beep followed by a knock"}\n')
    out = tmp_path / "gen"
    assert main(["generate", "--prompts", str(pf), "--out", str(out), "--model", str(model_dir),
                 "--seconds", "0.32", "--steps", "1", "--quiet"]) == 0
    assert (out / "beep_knock.wav").exists() and (out / "beep_knock.png").exists()
    bad = tmp_path / "bad.txt"
    bad.write_text("a beep\n")
    for argv, pattern in [
        (["generate", "", "--out", str(out), "--model", str(model_dir)], "empty prompt"),
        (["generate", "a beep", "--out", str(out), "--model", str(model_dir), "--seconds", "0"], "positive length"),
        (["generate", "a beep", "--out", str(out), "--model", str(model_dir), "--seconds", "99"], "limit"),
        (["generate", "a beep", "--out", str(out), "--model", str(tmp_path / "none")], "neither a shipped name"),
        (["generate", "--prompts", str(tmp_path / "missing.txt"), "--out", str(out), "--model", str(model_dir)],
         "prompts file not found"),
    ]:
        capsys.readouterr()
        assert main(argv) == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]  # (transformers may print a loading bar first)
        assert last.startswith("audioldm-cond: error: ") and pattern in last


# ------------------------------------------------------------------ clamping predicted latents to a range
@pytest.mark.parametrize("kind", ["epsilon", "v_prediction"])
def test_clamp_prediction_clamps_the_implied_clean_latent(kind):
    from audioldm_cond.components import clamp_prediction, make_scheduler

    sched = make_scheduler("ddim")
    sched.register_to_config(prediction_type=kind)
    g = torch.Generator().manual_seed(0)
    x, out = torch.randn(2, 3, 4, 5, generator=g) * 2, torch.randn(2, 3, 4, 5, generator=g) * 2
    rng = [[-0.5, -1.0, -2.0], [0.5, 1.0, 2.0]]
    t = 600
    a = float(sched.alphas_cumprod[t])
    xn, on = x.double().numpy(), out.double().numpy()
    # by hand: x_t = sqrt(a) x0 + sqrt(1-a) eps, v = sqrt(a) eps - sqrt(1-a) x0
    x0 = (xn - np.sqrt(1 - a) * on) / np.sqrt(a) if kind == "epsilon" else np.sqrt(a) * xn - np.sqrt(1 - a) * on
    x0c = np.clip(x0, np.array(rng[0])[None, :, None, None], np.array(rng[1])[None, :, None, None])
    eps = (xn - np.sqrt(a) * x0c) / np.sqrt(1 - a)
    want = eps if kind == "epsilon" else np.sqrt(a) * eps - np.sqrt(1 - a) * x0c
    got = clamp_prediction(sched, out, x, torch.tensor(t), rng)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-5)
    assert (np.abs(x0 - x0c) > 0).any()  # the case did clamp something
    wide = [[-1e6] * 3, [1e6] * 3]  # nothing to clamp: the output is unchanged
    np.testing.assert_allclose(clamp_prediction(sched, out, x, torch.tensor(t), wide).numpy(), on, rtol=1e-4, atol=1e-4)


def test_estimate_latent_range_is_per_channel_quantiles():
    from audioldm_cond.components import estimate_latent_range

    z = torch.randn(50, 3, 4, 6, generator=torch.Generator().manual_seed(1)) * torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1)
    lo, hi = estimate_latent_range(z, q=0.01)
    flat = z.numpy().transpose(1, 0, 2, 3).reshape(3, -1)
    np.testing.assert_allclose(lo, np.quantile(flat, 0.01, axis=1), rtol=1e-5)
    np.testing.assert_allclose(hi, np.quantile(flat, 0.99, axis=1), rtol=1e-5)
    with pytest.raises(UserError, match="latent range"):
        estimate_latent_range(torch.zeros(0, 3, 4, 6))


def test_pipeline_clamps_only_models_with_a_range(comps, pipe):
    kw = dict(seconds=SECONDS, num_inference_steps=3, guidance_scale=2.0, seed=3, score=False)
    assert comps.config.latent_range is None
    plain = pipe("a beep followed by a knock", **kw)
    assert plain.extra["clip_latents"] is False
    with pytest.raises(UserError, match="latent_range"):
        pipe("a beep", clip_latents=True, **kw)
    try:
        n = comps.unet.config.in_channels
        comps.config.latent_range = [[-0.05] * n, [0.05] * n]
        clamped = pipe("a beep followed by a knock", **kw)
        off = pipe("a beep followed by a knock", clip_latents=False, **kw)
    finally:
        comps.config.latent_range = None
    assert clamped.extra["clip_latents"] is True and off.extra["clip_latents"] is False
    np.testing.assert_array_equal(off.mels[0], plain.mels[0])
    assert np.abs(clamped.mels[0] - plain.mels[0]).max() > 1e-3


def test_resynthesize_keeps_lengths(comps):
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(int(SECONDS * 16000)).astype(np.float32) * 0.1, np.zeros(12000, np.float32)]
    out = comps.resynthesize(waves)
    assert [len(w) for w in out] == [len(w) for w in waves] and all(np.isfinite(w).all() for w in out)


def test_half_precision_models_generate_float32_audio(bundle):
    """A bf16 (or, on a GPU, fp16) VAE / UNet / vocoder: the pipeline feeds each model its own dtype and keeps
    the latents and the scheduler in float32, so the result is close to the float32 models' output."""
    c32 = build_tiny_components(bundle, seed=0, **SMALL)
    c16 = build_tiny_components(bundle, seed=0, **SMALL)
    for m in (c16.vae, c16.unet, c16.vocoder):
        m.to(torch.bfloat16)
    kw = dict(seconds=1.28, num_inference_steps=4, seed=0, score=False)
    a32 = TemporalAudioLDMPipeline(c32, progress=False)("a beep followed by a knock", **kw).audios[0]
    a16 = TemporalAudioLDMPipeline(c16, progress=False)("a beep followed by a knock", **kw).audios[0]
    assert a16.dtype == np.float32 and a16.shape == a32.shape and np.isfinite(a16).all()
    corr = np.corrcoef(a16, a32)[0, 1]
    assert corr > 0.9, corr


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_pipeline_on_cuda_matches_cpu(bundle):
    """UNet and VAE on the GPU, conditioner and vocoder left on the CPU (as the LDM trainer leaves them)."""
    c = build_tiny_components(bundle, seed=0, **SMALL)
    kw = dict(seconds=1.28, num_inference_steps=4, seed=0, score=False)
    ref = TemporalAudioLDMPipeline(c, progress=False)("a beep followed by a knock", **kw).audios[0]
    c.unet.cuda()
    c.vae.cuda()
    out = TemporalAudioLDMPipeline(c, progress=False)("a beep followed by a knock", **kw).audios[0]
    assert np.abs(out - ref).max() <= 1e-3 * (np.abs(ref).max() + 1e-6)


def test_position_and_cond_map_models_generate(bundle):
    """A UNet with extra input channels denoises latents of the VAE's width; the condition map takes part."""
    c = build_tiny_components(bundle, seed=0, position_channels=2, cond_map_channels=3, cond_map_segments=4, **SMALL)
    p = TemporalAudioLDMPipeline(c, progress=False)
    kw = dict(seconds=SECONDS, num_inference_steps=2, guidance_scale=2.0, seed=3)
    a = p(["a beep followed by a knock"], **kw).audios[0]
    assert a.shape == (int(SECONDS * c.sample_rate),) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, p(["a beep followed by a knock"], **kw).audios[0])  # seeded
    with torch.no_grad():
        c.unet.time_cond_map.proj.weight.mul_(50.0)
    b = p(["a beep followed by a knock"], **kw).audios[0]
    assert np.abs(a - b).max() > 1e-3 * np.abs(a).max()  # (a random tiny vocoder's output is ~1e-12 in scale)


# ------------------------------------------------------------------ levels of the written clips (issue 21)
@pytest.fixture(scope="module")
def main_job(tmp_path_factory):
    """The README's main job, ``audioldm-cond generate "a beep followed by a knock" --out out/``, run once under
    umask 022 (the shipped tiny-tclap; its raw output passes full scale, so the level policy has work to do)."""
    import os

    import basekit.atomic as atomic

    out = tmp_path_factory.mktemp("main_job") / "out"
    old = os.umask(0o022)
    cached, atomic._UMASK = atomic._UMASK, None  # the umask is read once per process: read it again
    try:
        rc = main(["generate", "a beep followed by a knock", "--out", str(out), "--quiet"])
    finally:
        os.umask(old)
        atomic._UMASK = cached
    assert rc == 0
    (rec,) = [json.loads(line) for line in (out / "prompts.jsonl").read_text().splitlines()]
    return out, rec


def test_main_job_wav_has_no_sample_at_full_scale_and_records_the_gain(main_job):
    out, rec = main_job
    pcm, sr = sf.read(out / rec["audio"], dtype="int16")
    assert sr == 16000 and pcm.shape == (64000,)
    peak = int(np.max(np.abs(pcm.astype(np.int32))))
    assert peak < 32767, "a sample at full scale"
    lv = rec["level"]
    assert lv["policy"] == "none" and lv["would_clip"] and not lv["silent"]
    # the gain turned the peak down to -1 dBFS: measured on the file, the 16-bit peak sits there (one LSB of slack)
    assert 20 * np.log10(peak / 32768) == pytest.approx(-1.0, abs=0.01)
    assert lv["peak_dbfs_after"] == pytest.approx(-1.0, abs=0.01)
    assert lv["gain_db"] == pytest.approx(lv["peak_dbfs_after"] - lv["peak_dbfs_before"], abs=0.02)
    assert lv["gain_db"] < 0 and lv["lufs_after"] == pytest.approx(lv["lufs_before"] + lv["gain_db"], abs=0.02)
    assert rec["settings"]["normalize"] == "none"


def test_main_job_files_are_group_and_other_readable_under_umask_022(main_job):
    import stat

    out, rec = main_job
    for name in (rec["audio"], "prompts.jsonl", f"{rec['id']}.png"):
        mode = stat.S_IMODE((out / name).stat().st_mode)
        assert mode == 0o644, f"{name}: {oct(mode)}"


def test_generate_normalize_options_and_the_clipping_warning(model_dir, tmp_path, capsys):
    base = ["generate", "a beep followed by a knock", "--model", str(model_dir), "--seconds", "0.32", "--steps", "1",
            "--quiet"]
    assert main(base + ["--out", str(tmp_path / "a"), "--normalize", "peak"]) == 0
    (rec,) = [json.loads(line) for line in (tmp_path / "a" / "prompts.jsonl").read_text().splitlines()]
    lv = rec["level"]
    pcm, _ = sf.read(tmp_path / "a" / rec["audio"], dtype="int16")
    if lv["silent"]:  # a near-silent clip is never turned up
        assert lv["gain_db"] == 0.0
    else:
        want = min(-1.0 - lv["peak_dbfs_before"], 20.0)  # the peak at -1 dBFS, the gain capped at +20 dB
        assert lv["gain_db"] == pytest.approx(want, abs=0.01)
        assert 20 * np.log10(np.max(np.abs(pcm.astype(np.int32))) / 32768) == pytest.approx(
            lv["peak_dbfs_before"] + want, abs=0.05)
    assert rec["settings"]["normalize"] == "peak" and rec["settings"]["max_gain_db"] == 20.0
    for argv, pattern in [(["--max-gain-db", "-3"], "--max-gain-db"), (["--target-lufs", "5"], "--target-lufs")]:
        capsys.readouterr()
        assert main(base + ["--out", str(tmp_path / "b")] + argv) == 2
        assert pattern in capsys.readouterr().err


def test_level_warnings_name_the_clip_and_the_levels(capsys):
    from audioldm_cond.cli import _level_warnings
    from basekit.audio import set_level

    _level_warnings("c1", set_level(np.array([0.0, 2.0, -1.0], np.float32), 16000)[1])
    _level_warnings("c2", set_level(np.full(1600, 1e-4, np.float32), 16000)[1])
    err = capsys.readouterr().err.splitlines()
    assert err[0] == ("audioldm-cond: warning: c1: the model's output peaked at +6.0 dBFS, over full scale; "
                      "turned down 7.0 dB to -1.0 dBFS instead of clipping")
    assert err[1].startswith("audioldm-cond: warning: c2: near-silent output (peak -80.0 dBFS before any gain")


def test_text_encoder_other_than_the_trained_one_is_noted(model_dir, tmp_path, capsys):
    """--text-encoder with the UNet's own encoder: no note; with another: a note on stderr and in prompts.jsonl."""
    base = ["generate", "a beep", "--model", str(model_dir), "--seconds", "0.32", "--steps", "1", "--quiet"]
    assert main(base + ["--out", str(tmp_path / "same"), "--text-encoder", "tiny"]) == 0  # the seeded "tiny" it was built on
    assert "note:" not in capsys.readouterr().err
    (rec,) = [json.loads(ln) for ln in (tmp_path / "same" / "prompts.jsonl").read_text().splitlines()]
    assert rec["conditioner"]["same_as_trained"] is True
    assert main(base + ["--out", str(tmp_path / "other"), "--text-encoder", "tiny-baseline"]) == 0
    err = capsys.readouterr().err
    assert "audioldm-cond: note: --text-encoder tiny-baseline is not the encoder model" in err
    (rec,) = [json.loads(ln) for ln in (tmp_path / "other" / "prompts.jsonl").read_text().splitlines()]
    assert rec["conditioner"]["same_as_trained"] is False
    assert rec["conditioner"]["note"] == "the UNet was trained with another text encoder"
    assert main(base + ["--out", str(tmp_path / "none")]) == 0  # no --text-encoder: no record either
    assert "conditioner" not in json.loads((tmp_path / "none" / "prompts.jsonl").read_text())


def test_trained_text_tower_matches_compares_the_saved_weights(tmp_path):
    from audioldm_cond.conditioning import trained_text_tower_matches
    from tclap.models import load_clap

    shipped = Path(__file__).resolve().parents[1] / "audioldm_cond" / "assets" / "models" / "tiny-tclap"
    own = load_clap("tiny-tclap").model
    assert trained_text_tower_matches(shipped, own) is True
    assert trained_text_tower_matches(shipped, load_clap("tiny-baseline").model) is False
    with torch.no_grad():  # one changed value in the text projection is enough
        own.text_projection.linear1.bias[0] += 1e-3
    assert trained_text_tower_matches(shipped, own) is False
    assert trained_text_tower_matches(tmp_path, own) is None  # nothing saved to compare with
