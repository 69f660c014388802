"""``audioldm-cond train``: both stages on a tiny model, exact resume, checkpoints, bad input."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from audioldm_cond.train import data as D
from audioldm_cond.train.config import DataConfig, LdmStageConfig, OptimConfig, TrainConfig, ValidationConfig
from audioldm_cond.train.runlog import read_log
from audioldm_cond.train.trainer import Trainer, list_checkpoints
from basekit.audio import save_audio

SR = 16000
SECONDS = 0.64  # 64 mel frames: divisible by the VAE (2x) and UNet (2x) down-sampling


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """8 clips (a tone then noise, or noise then a tone) with order captions; returns the manifest."""
    root = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    t = np.arange(int(SECONDS * SR)) / SR
    items = []
    for i in range(8):
        tone = 0.3 * np.sin(2 * np.pi * (300 + 100 * i) * t)
        noise = 0.1 * rng.standard_normal(t.size)
        first_tone = i % 2 == 0
        half = t < SECONDS / 2
        wav = np.where(half, tone if first_tone else noise, noise if first_tone else tone).astype(np.float32)
        save_audio(root / f"c{i}.wav", wav, SR)
        cap = "a beep followed by a burst of noise" if first_tone else "a burst of noise followed by a beep"
        items.append({"id": f"c{i}", "audio": f"c{i}.wav", "captions": [cap, cap.replace("followed by", "then")]})
    (root / "train.jsonl").write_text("".join(json.dumps(x) + "\n" for x in items))
    return root / "train.jsonl"


@pytest.fixture(scope="module")
def tiny():
    from audioldm_cond.components import build_tiny_components
    from tclap.models import load_clap

    return build_tiny_components(clap=load_clap("tiny"), seed=0, vae_channels=(8, 16), unet_channels=(16, 32),
                                 latent_channels=4, max_seconds=SECONDS)


def _cfg(clips: Path, out: Path, stage: str, steps: int = 4, **kw) -> TrainConfig:
    return TrainConfig(
        stage=stage, out_dir=str(out), data=DataConfig(train_manifest=str(clips), seconds=SECONDS,
                                                       cache_dir=str(out.parent / "cache")),
        optim=OptimConfig(steps=steps, batch_size=3, lr=1e-3, grad_accum=kw.pop("grad_accum", 1)),
        ldm=LdmStageConfig(cond_source=kw.pop("cond_source", "mix"), cfg_dropout=0.2),
        val=ValidationConfig(generate=False), ema_decay=0.9, ckpt_every=2, quiet=True, **kw)


def _fit(cfg: TrainConfig, components) -> dict:
    return Trainer(cfg, components=copy.deepcopy(components)).fit()


def test_batch_indices_walk_seeded_permutations():
    n, bs = 7, 3
    seen = [D.batch_indices(n, bs, seed=5, micro_step=m) for m in range(7)]  # 21 samples = 3 epochs of 7
    flat = [i for b in seen for i in b]
    for e in range(3):
        assert sorted(flat[e * n : (e + 1) * n]) == list(range(n))  # each epoch is a permutation
    assert flat[:n] != flat[n : 2 * n]  # epochs are reshuffled
    assert D.batch_indices(n, bs, 5, 4) == seen[4]  # a pure function of (seed, step)
    assert D.batch_indices(n, bs, 6, 0) != seen[0]


def test_vae_stage_first_loss_matches_hand_computation(clips, tiny, tmp_path):
    from audioldm_cond.mel import AudioLDMMelFrontEnd

    out = tmp_path / "vae"
    res = _fit(_cfg(clips, out, "vae", steps=2, grad_accum=2), tiny)
    log = read_log(out, "train")
    assert [r["step"] for r in log] == [1, 2]
    # Step 1 averages micro steps 0 and 1 of the untrained VAE: recompute them outside the trainer.
    vae = copy.deepcopy(tiny.vae).eval()
    fe = AudioLDMMelFrontEnd()
    from basekit.audio import load_audio

    paths = [json.loads(line)["audio"] for line in clips.read_text().splitlines()]
    mels = fe(torch.from_numpy(np.stack([load_audio(clips.parent / p, sr=SR) for p in paths])))
    with torch.no_grad():  # a from-scratch VAE starts its output bias at the mean log-mel
        vae.decoder.conv_out.bias.fill_(float(mels.mean()))
    losses = []
    with torch.no_grad():
        for micro in (0, 1):
            x = mels[D.batch_indices(8, 3, 0, micro)]
            post = vae.encode(x).latent_dist
            g = D.step_generator(0, micro, 1)
            z = post.mean + post.std * torch.randn(post.mean.shape, generator=g)
            rec = vae.decode(z).sample
            kl = 0.5 * (post.mean**2 + post.var - 1.0 - post.logvar).sum(dim=(1, 2, 3)).mean()
            losses.append(float((rec - x).abs().mean() + ((rec - x) ** 2).mean() + 1e-6 * kl))
    assert log[0]["loss"] == pytest.approx(np.mean(losses), rel=1e-4)
    assert np.isfinite([r["loss"] for r in log]).all()
    assert (out / "final" / "model_index.json").exists() and res["step"] == 2


@pytest.fixture(scope="module")
def ldm_ref(clips, tiny, tmp_path_factory) -> tuple[Path, dict]:
    """An uninterrupted 4-step ldm run (checkpoints at 2 and 4)."""
    out = tmp_path_factory.mktemp("ldm") / "ref"
    return out, _fit(_cfg(clips, out, "ldm", steps=4), tiny)


def test_ldm_stage_estimates_scaling_factor_and_saves_loadable_model(clips, tiny, ldm_ref):
    from audioldm_cond.components import load_components

    out, res = ldm_ref
    # 1/std of posterior samples, by brute force: many draws of the frozen VAE's posterior.
    from basekit.audio import load_audio
    from audioldm_cond.mel import AudioLDMMelFrontEnd

    paths = [json.loads(line)["audio"] for line in clips.read_text().splitlines()]
    mels = AudioLDMMelFrontEnd()(torch.from_numpy(np.stack([load_audio(clips.parent / p, sr=SR) for p in paths])))
    with torch.no_grad():
        post = tiny.vae.encode(mels).latent_dist
        draws = torch.stack([post.sample(generator=torch.Generator().manual_seed(k)) for k in range(200)])
    assert res["scaling_factor"] == pytest.approx(1.0 / float(draws.double().std()), rel=0.02)
    loaded = load_components(out / "final")
    assert loaded.vae.config.scaling_factor == pytest.approx(res["scaling_factor"])
    assert loaded.config.source == "mix"
    # the clamp range generation uses: per-channel 0.1 / 99.9 percentiles of the scaled posterior means
    z = post.mean.double().numpy() * res["scaling_factor"]
    per_channel = z.transpose(1, 0, 2, 3).reshape(z.shape[1], -1)
    lo, hi = np.quantile(per_channel, 0.001, axis=1), np.quantile(per_channel, 0.999, axis=1)
    np.testing.assert_allclose(loaded.config.latent_range[0], lo, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(loaded.config.latent_range[1], hi, rtol=1e-4, atol=1e-5)
    losses = [r["loss"] for r in read_log(out, "train")]
    assert len(losses) == 4 and np.isfinite(losses).all()
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["step-00000002", "step-00000004"]


class _Kill(Exception):
    pass


def _fit_killed_after_step_3(cfg: TrainConfig, components, monkeypatch) -> None:
    """Run ``cfg`` and kill it right after step 3 is logged (one step past the step-2 checkpoint)."""
    from audioldm_cond.train import runlog

    real = runlog.RunLog.scalars

    def dying(self, rec):
        real(self, rec)
        if rec["step"] == 3:
            raise _Kill

    monkeypatch.setattr(runlog.RunLog, "scalars", dying)
    with pytest.raises(_Kill):
        _fit(cfg, components)
    monkeypatch.undo()


def test_resume_after_kill_equals_uninterrupted_run(clips, tiny, ldm_ref, tmp_path, monkeypatch):
    """Kill one step past the step-2 checkpoint, resume: step 3 is redone, the result equals an uninterrupted run."""
    ref = ldm_ref[0]
    ref_log = read_log(ref, "train")

    run = tmp_path / "run"
    (tmp_path / "cache").symlink_to(ref.parent / "cache")  # share the reference run's latent/embedding caches
    _fit_killed_after_step_3(_cfg(clips, run, "ldm", steps=4), tiny, monkeypatch)
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == ["step-00000002"]
    assert not (run / "final").exists()
    assert [r["step"] for r in read_log(run, "train")] == [1, 2, 3]

    _fit(_cfg(clips, run, "ldm", steps=4, resume=True), tiny)
    log = read_log(run, "train")
    assert [r["step"] for r in log] == [1, 2, 3, 4]  # step 3 of the killed run was dropped and redone
    assert [r["loss"] for r in log] == pytest.approx([r["loss"] for r in ref_log], rel=1e-6)
    events = read_log(run, "event")
    assert events[-1]["step"] == 2 and events[-1]["checkpoint"] == "step-00000002"
    from safetensors.torch import load_file

    a = load_file(str(ref / "final" / "unet" / "diffusion_pytorch_model.safetensors"))
    b = load_file(str(run / "final" / "unet" / "diffusion_pytorch_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:  # EMA weights (what final/ holds) and optimizer state were restored exactly
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_resume_without_a_checkpoint_starts_fresh_and_says_so(clips, tiny, tmp_path):
    run = tmp_path / "fresh"
    _fit(_cfg(clips, run, "ldm", steps=1, resume=True), tiny)
    events = [e for e in read_log(run, "event") if e.get("event") == "resume"]
    assert len(events) == 1 and events[0]["checkpoint"] is None and events[0]["step"] == 0


def test_existing_run_without_resume_is_refused(clips, tiny, tmp_path):
    from basekit.errors import UserError

    out = tmp_path / "r"
    (out / "checkpoints" / "step-00000002").mkdir(parents=True)
    (out / "checkpoints" / "step-00000002" / "trainer_state.json").write_text('{"step": 2}')
    with pytest.raises(UserError, match="--resume"):
        _fit(_cfg(clips, out, "vae", steps=2), tiny)


def test_resume_with_another_model_is_one_clear_line(clips, tiny, tmp_path):
    """A checkpoint of one UNet, resumed with a UNet of another width: a UserError naming the checkpoint."""
    from audioldm_cond.components import replace_unet
    from basekit.errors import UserError

    (tmp_path / "cache").mkdir()
    _fit(_cfg(clips, tmp_path / "r", "ldm", steps=2), tiny)
    other = replace_unet(copy.deepcopy(tiny), [16, 48], seed=1)
    with pytest.raises(UserError, match=r"step-00000002 does not fit this model/optimizer") as err:
        _fit(_cfg(clips, tmp_path / "r", "ldm", steps=4, resume=True), other)
    assert "\n" not in str(err.value)


def test_cli_missing_audio_is_one_clear_line(clips, tmp_path, capsys):
    from audioldm_cond.train.cli import main

    lines = clips.read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    item = json.loads(lines[0])
    item["audio"] = str(clips.parent / "nowhere.wav")
    bad.write_text("\n".join([json.dumps(item)] + [json.dumps({**json.loads(x), "audio": str(clips.parent / json.loads(x)["audio"])}) for x in lines[1:]]) + "\n")
    rc = main(["--stage", "vae", "--train", str(bad), "--out", str(tmp_path / "o"), "--steps", "1", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "nowhere.wav" in err[0] and "1 of 8 audio files are missing" in err[0]


@pytest.mark.parametrize("argv, needle", [
    (["--steps", "0"], "--steps"),
    (["--cond-source", "audio", "--ema-decay", "1.5"], "--ema-decay"),
    (["--scaling-factor", "big"], "--scaling-factor"),
    (["--unet-channels", "32,4"], "--unet-channels"),
    (["--unet-channels", "32,64", "--unet-layers", "0"], "--unet-layers"),
    (["--unet-channels", "32,64", "--unet-cond-map", "8x1"], "--unet-cond-map 8x1"),
    (["--unet-cond-map", "8x8"], "give its widths with --unet-channels"),
    (["--unet-channels", "32,64", "--unet-position-channels", "65"], "--unet-position-channels 65"),
    (["--steps", "10", "--warmup-steps", "4", "--decay-steps", "7"], "--decay-steps 7"),
])
def test_cli_bad_settings_are_one_line(clips, tmp_path, capsys, argv, needle):
    from audioldm_cond.train.cli import main

    rc = main(["--stage", "ldm", "--train", str(clips), "--out", str(tmp_path / "o"), "--quiet", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and needle in err[0]


def test_cache_resumes_after_interruption_and_is_keyed_by_content(tmp_path, clips):
    calls = []

    def compute(idx):
        calls.append(list(idx))
        if len(calls) == 2 and not getattr(compute, "survived", False):
            compute.survived = True
            raise _Kill  # interrupted while computing the second chunk
        return {"x": torch.tensor(idx, dtype=torch.float32)[:, None] * 2}

    with pytest.raises(_Kill):
        D.cached_chunks(tmp_path / "c", 5, compute, "t", quiet=True, chunk=2)
    out = D.cached_chunks(tmp_path / "c", 5, compute, "t", quiet=True, chunk=2)
    assert calls == [[0, 1], [2, 3], [2, 3], [4]]  # chunk 0 came from disk on the re-run
    assert out["x"].flatten().tolist() == [0, 2, 4, 6, 8]
    cs = D.read_clip_set(clips)
    k1 = D.files_key(cs, "mel", 1)
    assert D.files_key(cs, "mel", 2) != k1  # other settings, other cache
    first = cs.audio[0]
    data = first.read_bytes()
    first.write_bytes(data + b"\0\0")  # the file changed: its cache key changes too
    try:
        assert D.files_key(cs, "mel", 1) != k1
    finally:
        first.write_bytes(data)


def test_cli_unet_channels_sets_the_ldm_unet():
    import argparse

    from audioldm_cond.train.cli import add_arguments, config_from_args

    p = argparse.ArgumentParser()
    add_arguments(p)
    cfg = config_from_args(p.parse_args(["--stage", "ldm", "--train", "t.jsonl", "--out", "o",
                                         "--unet-channels", "16, 32,64", "--unet-layers", "2"]))
    assert cfg.ldm.unet == {"channels": [16, 32, 64], "layers_per_block": 2, "attention": True}
    cfg = config_from_args(p.parse_args(["--stage", "ldm", "--train", "t.jsonl", "--out", "o"]))
    assert cfg.ldm.unet is None


def test_position_and_cond_map_unet_trains_resumes_and_loads(clips, tiny, tmp_path, monkeypatch):
    """A UNet with time-position channels and a condition map: the map is trained (EMA included), a kill and
    resume equals the uninterrupted run, and final/ loads back with both."""
    from safetensors.torch import load_file

    from audioldm_cond.components import load_components, replace_unet

    comps = replace_unet(copy.deepcopy(tiny), [16, 32], seed=1, position_channels=2, cond_map_channels=3,
                         cond_map_segments=4)
    init = comps.unet.time_cond_map.proj.weight.detach().clone()
    (tmp_path / "cache").mkdir()
    _fit(_cfg(clips, tmp_path / "ref", "ldm", steps=4), comps)
    _fit_killed_after_step_3(_cfg(clips, tmp_path / "run", "ldm", steps=4), comps, monkeypatch)
    _fit(_cfg(clips, tmp_path / "run", "ldm", steps=4, resume=True), comps)
    a = load_file(str(tmp_path / "ref" / "final" / "unet" / "diffusion_pytorch_model.safetensors"))
    b = load_file(str(tmp_path / "run" / "final" / "unet" / "diffusion_pytorch_model.safetensors"))
    assert {"time_cond_map.proj.weight", "time_cond_map.proj.bias"} <= set(a) and a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    loaded = load_components(tmp_path / "ref" / "final")
    assert (loaded.config.position_channels, loaded.config.cond_map_channels) == (2, 3)
    assert loaded.unet.config.in_channels == 4 + 2 + 3
    assert float((loaded.unet.time_cond_map.proj.weight.detach() - init).abs().max()) > 0  # trained with the UNet
    torch.testing.assert_close(loaded.unet.time_cond_map.proj.weight, a["time_cond_map.proj.weight"])


def test_cli_unet_cond_map_sets_the_ldm_unet():
    import argparse

    from audioldm_cond.train.cli import add_arguments, config_from_args

    p = argparse.ArgumentParser()
    add_arguments(p)
    cfg = config_from_args(p.parse_args(["--stage", "ldm", "--train", "t.jsonl", "--out", "o", "--unet-channels",
                                         "16,32", "--unet-position-channels", "4", "--unet-cond-map", "8x6"]))
    assert cfg.ldm.unet == {"channels": [16, 32], "layers_per_block": 1, "attention": True, "position_channels": 4,
                            "cond_map_channels": 8, "cond_map_segments": 6}


def test_prediction_type_is_trained_and_saved(clips, tiny, tmp_path):
    """--prediction-type v_prediction: the loss targets v (a batch's loss = a hand computation from the betas)
    and the saved scheduler says v_prediction, so generation follows."""
    from audioldm_cond.components import load_components
    from basekit.errors import UserError

    (tmp_path / "cache").mkdir()
    cfg = _cfg(clips, tmp_path / "v", "ldm", steps=2)
    cfg.ldm.prediction_type = "v_prediction"
    tr = Trainer(cfg, components=copy.deepcopy(tiny))
    tr.fit()
    assert load_components(tmp_path / "v" / "final").scheduler.config.prediction_type == "v_prediction"
    idx, unet = [0, 1, 2], tr.components.unet
    loss, _ = tr.ldm_loss(unet, 0, idx=idx, g=torch.Generator().manual_seed(5))
    # by hand: the same draws in the same order, v = sqrt(a) eps - sqrt(1 - a) z0, scaled-linear betas
    sc = tr.noise_scheduler.config
    assert sc.beta_schedule == "scaled_linear"
    g = torch.Generator().manual_seed(5)
    mean, std = tr.train_lat["mean"][idx], tr.train_lat["std"][idx]
    z = (mean + std * torch.randn(mean.shape, generator=g)) * tr.scaling_factor
    noise = torch.randn(z.shape, generator=g)
    t = torch.randint(0, sc.num_train_timesteps, (3,), generator=g)
    cond = tr.condition(idx, g, tr.train_cond)
    betas = np.linspace(sc.beta_start ** 0.5, sc.beta_end ** 0.5, sc.num_train_timesteps, dtype=np.float64) ** 2
    a = torch.from_numpy(np.cumprod(1.0 - betas)).float()[t][:, None, None, None]
    v = a.sqrt() * noise - (1 - a).sqrt() * z
    with torch.no_grad():
        pred = unet(a.sqrt() * z + (1 - a).sqrt() * noise, t, encoder_hidden_states=None, class_labels=cond).sample
    assert float(loss.detach()) == pytest.approx(float(((pred - v) ** 2).mean()), rel=1e-4)
    bad = _cfg(clips, tmp_path / "b", "ldm", steps=2)
    bad.ldm.prediction_type = "x0"
    with pytest.raises(UserError, match="--prediction-type"):
        bad.validate()


def test_lr_factor_warms_up_holds_then_decays_linearly_to_zero():
    """Hand-worked: 10 steps, 2 warm-up, 4 decay -> 0, 0.5, 1, 1, 1, 1, then (10 - s) / 4 for s = 6..9."""
    from audioldm_cond.train.trainer import lr_factor

    f = lr_factor(OptimConfig(steps=10, warmup_steps=2, decay_steps=4))
    assert [f(s) for s in range(10)] == pytest.approx([0.0, 0.5, 1, 1, 1, 1, 1.0, 0.75, 0.5, 0.25])
    flat = lr_factor(OptimConfig(steps=10, warmup_steps=2))  # decay_steps=0: diffusers' constant_with_warmup
    from diffusers.optimization import get_scheduler

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    ref = get_scheduler("constant_with_warmup", opt, num_warmup_steps=2).lr_lambdas[0]
    assert [flat(s) for s in range(10)] == [ref(s) for s in range(10)]


def test_decaying_run_logs_the_schedule_and_resumes_onto_it(clips, tiny, tmp_path):
    """A 4-step run extended to 8 steps with 4 decay steps: steps 1-4 at the constant rate, then 3/4, 1/2, 1/4, 0 of it
    (the scheduler is stepped after each optimiser step, so step k logs the factor of step k)."""
    run = tmp_path / "run"
    cfg = _cfg(clips, run, "ldm", steps=4)
    _fit(cfg, tiny)
    cfg2 = _cfg(clips, run, "ldm", steps=8, resume=True)
    cfg2.optim.decay_steps = 4
    _fit(cfg2, tiny)
    lrs = [r["lr"] for r in read_log(run, "train")]
    assert lrs == pytest.approx([1e-3] * 4 + [7.5e-4, 5e-4, 2.5e-4, 0.0])
