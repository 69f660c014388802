"""``audioldm-cond train`` from streamed sources: shards through the tclap data plan, exact resume, --dry-run.

References are computed outside the trainer: the clips named by the logged sample ids are loaded from their WAV
files and put through the front end and the VAE by hand; the plan's per-reader counts are worked out by hand.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from audioldm_cond.train import data as D
from audioldm_cond.train.cli import main as train_main
from audioldm_cond.train.config import DataConfig, LdmStageConfig, OptimConfig, TrainConfig, ValidationConfig
from audioldm_cond.train.runlog import read_log
from audioldm_cond.train.trainer import Trainer, list_checkpoints
from basekit.audio import load_audio, save_audio

pytest.importorskip("webdataset")

SR = 16000
SECONDS = 0.64  # 64 mel frames: divisible by the VAE (2x) and UNet (2x) down-sampling
N = 8


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    """8 captioned clips as a manifest and as 4 shards of 2 items (``shard-00000{0..3}.tar``)."""
    from tclap.data.shards import write_webdataset_shards

    root = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(1)
    t = np.arange(int(SECONDS * SR)) / SR
    items = []
    for i in range(N):
        tone = 0.3 * np.sin(2 * np.pi * (300 + 90 * i) * t)
        noise = 0.1 * rng.standard_normal(t.size)
        first_tone = i % 2 == 0
        wav = np.where(t < SECONDS / 2, tone if first_tone else noise, noise if first_tone else tone)
        save_audio(root / f"c{i}.wav", wav.astype(np.float32), SR)
        cap = "a beep followed by noise" if first_tone else "noise followed by a beep"
        items.append({"id": f"c{i}", "audio": f"c{i}.wav", "captions": [cap, cap.replace("followed by", "then")]})
    manifest = root / "train.jsonl"
    manifest.write_text("".join(json.dumps(x) + "\n" for x in items))
    shards = root / "shards"
    write_webdataset_shards(manifest, shards, items_per_shard=2)
    return {"root": root, "manifest": manifest, "shards": shards}


@pytest.fixture(scope="module")
def tiny():
    from audioldm_cond.components import build_tiny_components
    from tclap.models import load_clap

    return build_tiny_components(clap=load_clap("tiny"), seed=0, vae_channels=(8, 16), unet_channels=(16, 32),
                                 latent_channels=4, max_seconds=SECONDS)


def _cfg(source: str, out: Path, stage: str, steps: int = 4, workers: int = 0, **kw) -> TrainConfig:
    return TrainConfig(
        stage=stage, out_dir=str(out),
        data=DataConfig(train_manifest=source, seconds=kw.pop("seconds", SECONDS), cache_dir=str(out.parent / "cache"), workers=workers,
                        shuffle_buffer=2, log_sample_ids=True),
        optim=OptimConfig(steps=steps, batch_size=2, lr=1e-3, grad_accum=kw.pop("grad_accum", 1)),
        ldm=LdmStageConfig(cond_source=kw.pop("cond_source", "mix"), cfg_dropout=0.2),
        val=ValidationConfig(generate=False), ema_decay=0.9, ckpt_every=2, quiet=True, **kw)


def _ids(out: Path) -> dict[int, list[str]]:
    lines = (out / "sample_ids.rank0.jsonl").read_text().splitlines()
    return {r["micro"]: r["ids"] for r in map(json.loads, lines)}


def _mels(root: Path, ids: list[str]) -> torch.Tensor:
    from audioldm_cond.mel import AudioLDMMelFrontEnd

    waves = np.stack([load_audio(root / f"{i}.wav", sr=SR) for i in ids])
    return AudioLDMMelFrontEnd()(torch.from_numpy(waves))


def test_vae_stage_from_shards_first_loss_matches_hand_computation(data, tiny, tmp_path):
    out = tmp_path / "vae"
    res = Trainer(_cfg(str(data["shards"]), out, "vae", steps=1), components=copy.deepcopy(tiny)).fit()
    ids = _ids(out)[0]
    assert len(ids) == 2 and set(ids) <= {f"c{i}" for i in range(N)}
    # The clips the log names, read from their WAV files (not from the shards), through an untrained VAE.
    x = _mels(data["root"], ids)
    vae = copy.deepcopy(tiny.vae).eval()
    with torch.no_grad():  # a from-scratch VAE starts its output bias at the sample's mean log-mel (micro-step 0)
        vae.decoder.conv_out.bias.fill_(float(x.mean()))
        post = vae.encode(x).latent_dist
        g = D.step_generator(0, 0, 1)
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=g)
        rec = vae.decode(z).sample
        kl = 0.5 * (post.mean**2 + post.var - 1.0 - post.logvar).sum(dim=(1, 2, 3)).mean()
    want = float((rec - x).abs().mean() + ((rec - x) ** 2).mean() + 1e-6 * kl)
    assert read_log(out, "train")[0]["loss"] == pytest.approx(want, rel=1e-4)
    assert res["skipped"] == {} and (out / "final" / "model_index.json").exists()
    plan = json.loads((out / "data_plan.json").read_text())
    assert plan["streams"][0]["items"] == N and plan["readers"] == 1


class _Kill(Exception):
    pass


def test_streamed_ldm_resume_after_kill_reads_the_same_items_and_ends_equal(data, tiny, tmp_path, monkeypatch):
    """Two DataLoader workers, 4 steps of 2 = one epoch of 8 items; killed after step 3, resumed from step 2."""
    from safetensors.torch import load_file

    from audioldm_cond.train import runlog

    src = str(data["shards"] / "shard-{000000..000003}.tar")
    ref = tmp_path / "ref"
    Trainer(_cfg(src, ref, "ldm", workers=2), components=copy.deepcopy(tiny)).fit()
    ref_ids = _ids(ref)
    assert sorted(ref_ids) == [0, 1, 2, 3]
    # the shards divide evenly over the 2 readers: every item exactly once in the epoch
    assert sorted(i for m in ref_ids for i in ref_ids[m]) == sorted(f"c{i}" for i in range(N))

    run = tmp_path / "run"
    real = runlog.RunLog.scalars

    def dying(self, rec):
        real(self, rec)
        if rec["step"] == 3:
            raise _Kill

    monkeypatch.setattr(runlog.RunLog, "scalars", dying)
    with pytest.raises(_Kill):
        Trainer(_cfg(src, run, "ldm", workers=2), components=copy.deepcopy(tiny)).fit()
    monkeypatch.undo()
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == ["step-00000002"]
    Trainer(_cfg(src, run, "ldm", workers=2, resume=True), components=copy.deepcopy(tiny)).fit()
    assert _ids(run) == ref_ids  # micro-steps 2 and 3 read again after the resume: the same items
    assert [r["loss"] for r in read_log(run, "train")] == pytest.approx([r["loss"] for r in read_log(ref, "train")],
                                                                        rel=1e-6)
    a = load_file(str(ref / "final" / "unet" / "diffusion_pytorch_model.safetensors"))
    b = load_file(str(run / "final" / "unet" / "diffusion_pytorch_model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)
    # a resume with another number of readers would read other items: refused
    from basekit.errors import UserError

    with pytest.raises(UserError, match="data reader"):
        Trainer(_cfg(src, run, "ldm", steps=6, workers=1, resume=True), components=copy.deepcopy(tiny)).fit()


def test_streamed_condition_equals_the_cached_paths_maths(data, tiny, tmp_path):
    """stream_condition (CLAP run on the rows that need it) = condition (over every row's cached embeddings)."""
    from audioldm_cond.train.stream import StreamBatch

    tr = Trainer(_cfg(str(data["shards"]), tmp_path / "c", "ldm"), components=copy.deepcopy(tiny))
    cond = tr.components.conditioner
    tr.sr = SR
    tr.uncond = cond.raw_text([""], warn=False).detach().float()
    ids = [f"c{i}" for i in range(N)]
    waves = torch.from_numpy(np.stack([load_audio(data["root"] / f"{i}.wav", sr=SR) for i in ids]))
    caps = [json.loads(x)["captions"] for x in data["manifest"].read_text().splitlines()]
    caps[3] = caps[3] + ["a third caption"]  # unequal caption counts
    batch = StreamBatch(0, torch.zeros(N, 1, 64, 64), waves, caps, ids, [])
    counts = torch.tensor([len(c) for c in caps])
    with torch.no_grad():
        emb = {"text": cond.raw_text([c for cs in caps for c in cs]).float(), "audio": cond.raw_audio(waves, sr=SR).float(),
               "first": torch.cumsum(counts, 0) - counts, "count": counts}
    for seed in range(3):
        want = tr.condition(list(range(N)), torch.Generator().manual_seed(seed), emb)
        got = tr.stream_condition(batch, torch.Generator().manual_seed(seed))
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_dry_run_prints_the_plan_and_builds_nothing(data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "never"
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert train_main(["--stage", "ldm", "--train", str(data["shards"] / "*.tar"), "--out", str(out), "--seconds",
                       str(SECONDS), "--batch-size", "4", "--workers", "1", "--steps", "3", "--dry-run"]) == 0
    text = capsys.readouterr().out
    # 2 processes x 1 worker = 2 readers, 2 rows each; 4 shards of 2 dealt 2 per reader: 4 items, 2 steps per epoch
    assert "2 process(es) x 1 reader(s) each" in text
    assert "rank 0 worker 0: 2 shard(s), 4 item(s), 2 row(s)/step" in text
    assert "rank 1 worker 0: 2 shard(s), 4 item(s), 2 row(s)/step" in text
    assert "2 micro-step(s) per epoch = 8 samples; remainder 0 item(s)" in text and "1.50 epoch(s)" in text
    assert "3 optimizer step(s) x 1 micro-step(s) x 4 samples = 12 samples" in text
    assert not out.exists()
    monkeypatch.delenv("WORLD_SIZE")
    assert train_main(["--stage", "vae", "--train", "bank:builtin", "--out", str(out), "--seconds", "1.28",
                       "--batch-size", "2", "--workers", "0", "--dry-run"]) == 0
    assert "endless on-the-fly mix-ups (1.28 s" in capsys.readouterr().out
    assert train_main(["--stage", "vae", "--train", str(data["manifest"]), "--out", str(out), "--dry-run"]) == 0
    assert f"{N} clip(s), 16 per micro-step" in capsys.readouterr().out and not out.exists()


def test_bank_source_trains_from_mixups_made_on_the_fly(tiny, tmp_path):
    out = tmp_path / "bank"
    cfg = _cfg("bank:builtin", out, "ldm", steps=2, cond_source="text", seconds=1.28)  # 2-3 events need >= 1.05 s
    res = Trainer(cfg, components=copy.deepcopy(tiny)).fit()
    ids = _ids(out)
    assert res["step"] == 2 and len(ids[0]) == 2 and len(set(ids[0] + ids[1])) == 4
    assert np.isfinite([r["loss"] for r in read_log(out, "train")]).all()


@pytest.mark.parametrize("args, words", [
    (["--train", "nowhere/*.tar", "--seconds", "0.64"], "matches no file"),
    (["--train", "{shards}"], "need --seconds"),
])
def test_bad_streamed_input_is_one_line_and_exit_2(data, tmp_path, capsys, args, words):
    args = [a.replace("{shards}", str(data["shards"])) for a in args]
    assert train_main(["--stage", "vae", "--out", str(tmp_path / "o"), *args, "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0]


# ------------------------------------------------------------------------------------------ a real kill -9
KILL_STEPS, KILL_CKPT = 8, 3
# The tiny components of the `tiny` fixture, built by the CLI itself (`--model tiny --tiny-config`): a subprocess
# can build them from the command line alone.
TINY_CONFIG = {"vae_channels": [8, 16], "unet_channels": [16, 32], "latent_channels": 4, "max_seconds": SECONDS}


def _cli_args(data: dict, out: Path, *extra: str) -> list[str]:
    """`audioldm-cond train` on the 4 shards with 2 DataLoader workers: batch 2 over 2 readers, so an epoch is
    8 / 2 = 4 micro-steps; 8 steps = 2 epochs, checkpoints after steps 3 and 6 (both inside an epoch)."""
    return ["train", "--stage", "ldm", "--train", str(data["shards"] / "shard-{000000..000003}.tar"),
            "--seconds", str(SECONDS), "--model", "tiny", "--clap", "tiny", "--tiny-config", json.dumps(TINY_CONFIG),
            "--cond-source", "mix", "--cfg-dropout", "0.2", "--steps", str(KILL_STEPS), "--batch-size", "2",
            "--lr", "1e-3", "--ema-decay", "0.9", "--ckpt-every", str(KILL_CKPT), "--workers", "2",
            "--shuffle-buffer", "2", "--log-sample-ids", "--no-val-generate", "--quiet", "--out", str(out),
            "--cache-dir", str(out.parent / f"cache-{out.name}"), *extra]


def _logged_steps(out: Path) -> list[int]:
    """Training steps in ``out/log.jsonl`` so far (a line cut by a kill is not one)."""
    p = out / "log.jsonl"
    if not p.exists():
        return []
    steps = []
    for line in p.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("kind") == "train":
            steps.append(int(rec["step"]))
    return steps


# `audioldm-cond train` as the real CLI, except that it SIGKILLs its whole process group (the training process and
# its DataLoader workers, as an OOM kill would) as soon as it has logged the first step after the first checkpoint.
_KILLED_AFTER_CKPT = f"""
import os, signal, sys
from audioldm_cond.train import runlog

logged = runlog.RunLog.scalars

def scalars(self, rec):
    logged(self, rec)
    if rec["step"] > {KILL_CKPT}:
        os.killpg(0, signal.SIGKILL)

runlog.RunLog.scalars = scalars
from audioldm_cond.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.timeout(120)
def test_kill_9_in_mid_epoch_then_resume_equals_an_uninterrupted_run(data, tmp_path):
    """The real CLI in a subprocess, SIGKILLed (workers and all) after the first checkpoint and before the end;
    the same command with --resume reads the same items from there on and ends with the same weights."""
    import os
    import signal
    import subprocess
    import sys

    from safetensors.torch import load_file

    from audioldm_cond.cli import main as cli_main

    full, killed = tmp_path / "full", tmp_path / "killed"
    assert cli_main(_cli_args(data, full)) == 0
    ref_ids = _ids(full)
    assert sorted(ref_ids) == list(range(KILL_STEPS))
    every = sorted(f"c{i}" for i in range(N))  # the shards divide evenly over the 2 readers: each item once per epoch
    for epoch in range(2):
        assert sorted(i for m in range(4 * epoch, 4 * epoch + 4) for i in ref_ids[m]) == every

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    err_path = tmp_path / "killed.stderr"
    with open(err_path, "wb") as err:  # a file, not a pipe: a full pipe would stall the run
        # The run kills its own process group right after it logs step KILL_CKPT + 1: the same kill at the same
        # point on every run (a test process polling the log could be kept off the CPU past the last short step).
        proc = subprocess.run([sys.executable, "-c", _KILLED_AFTER_CKPT, *_cli_args(data, killed)], env=env,
                              stdout=subprocess.DEVNULL, stderr=err, start_new_session=True, timeout=90, check=False)
    assert proc.returncode == -signal.SIGKILL, err_path.read_text()[-2000:]
    assert _logged_steps(killed) == list(range(1, KILL_CKPT + 2))
    done = sorted(int(p.name.split("-")[1]) for p in (killed / "checkpoints").iterdir() if p.name.startswith("step-"))
    assert done == [KILL_CKPT] and not (killed / "final").exists()
    resume_at = done[-1]  # the resume starts at micro-step 3 (or 6): inside an epoch of 4
    assert resume_at % 4 != 0

    assert cli_main(_cli_args(data, killed, "--resume")) == 0
    got = _ids(killed)
    assert {m: got[m] for m in got if m >= resume_at} == {m: ref_ids[m] for m in ref_ids if m >= resume_at}
    assert got == ref_ids
    assert [r["step"] for r in read_log(killed, "train")] == list(range(1, KILL_STEPS + 1))
    # each step's wait for the workers is logged, and is part of the step's time
    assert all(0 <= r["data_wait_s"] <= r["sec"] + 2e-3 for r in read_log(killed, "train"))
    assert [r["loss"] for r in read_log(killed, "train")] == pytest.approx(
        [r["loss"] for r in read_log(full, "train")], rel=1e-6)
    a = load_file(str(full / "final" / "unet" / "diffusion_pytorch_model.safetensors"))
    b = load_file(str(killed / "final" / "unet" / "diffusion_pytorch_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)
