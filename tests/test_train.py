"""The trainer: batch mixing, schedule, few-step runs, resume equivalence, 2 processes, bad input."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from basekit.errors import UserError
from tclap.train.config import TrainConfig, parse_mix_ratio, preset
from tclap.train.sampler import POSITIVE, TEMPORAL, MixedBatchSampler


# ---------------------------------------------------------------- sampler (pure)
def test_mix_ratio_is_temporal_share():
    assert parse_mix_ratio("1:4") == pytest.approx(0.2)
    assert parse_mix_ratio("4:1") == pytest.approx(0.8)
    with pytest.raises(UserError, match="mix-ratio"):
        parse_mix_ratio("1-4")


def test_batches_hold_the_ratio_and_are_deterministic():
    s = MixedBatchSampler(n_positive=37, n_temporal=11, batch_size=10, temporal_fraction=0.2, seed=3)
    for step in range(20):
        b = s.batch(step)
        counts = collections.Counter(it.pool for it in b)
        assert counts[TEMPORAL] == 2 and counts[POSITIVE] == 8
    s2 = MixedBatchSampler(37, 11, 10, 0.2, seed=3)
    assert [s2.batch(k) for k in (7, 3, 19)] == [s.batch(k) for k in (7, 3, 19)]  # any order, same batches
    assert s.batch(0) != MixedBatchSampler(37, 11, 10, 0.2, seed=4).batch(0)


def test_each_epoch_visits_every_item_once():
    # 12 temporal items, 3 per step -> steps 0..3 are one epoch, 4..7 the next.
    s = MixedBatchSampler(n_positive=0, n_temporal=12, batch_size=3, temporal_fraction=0.5, seed=0)
    for epoch in range(3):
        seen = [it.index for k in range(4 * epoch, 4 * epoch + 4) for it in s.batch(k)]
        assert sorted(seen) == list(range(12))


def test_shards_cover_the_global_batch():
    s = MixedBatchSampler(5, 5, 8, 0.5, seed=1)
    g = s.batch(2)
    assert MixedBatchSampler.shard(g, 0, 2) + MixedBatchSampler.shard(g, 1, 2) == g
    with pytest.raises(UserError, match="divisible"):
        MixedBatchSampler.shard(g, 0, 3)


def test_presets():
    p = preset("paper")
    assert (p.data.batch_size, p.optim.lr, p.steps, p.optim.warmup_steps, p.loss.lambda_t) == (512, 1e-4, 30000, 10000, 0.5)
    assert p.data.temporal_fraction == pytest.approx(0.2)
    assert TrainConfig.from_dict(p.to_dict()) == p
    p.optim.betas = (0.8, 0.95)  # a JSON round trip keeps every field, the betas pair included
    assert TrainConfig.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    with pytest.raises(UserError):
        preset("huge")


def test_lr_schedule():
    from tclap.train.trainer import lr_at

    cfg = preset("paper")
    cfg.steps, cfg.optim.warmup_steps = 100, 10
    assert lr_at(0, cfg) == pytest.approx(1e-5)
    assert lr_at(9, cfg) == pytest.approx(1e-4)
    assert lr_at(50, cfg) == pytest.approx(1e-4)
    cfg.optim.schedule, cfg.optim.min_lr_ratio = "cosine", 0.0
    # half-way through the cosine part: 0.5 * (1 + cos(pi/2)) = 0.5
    assert lr_at(55, cfg) == pytest.approx(0.5e-4)


# ---------------------------------------------------------------- real runs on the tiny model
import json
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from tclap.cli import main as tclap_main
from tclap.train.trainer import train


@pytest.fixture(scope="module")
def mixups(tmp_path_factory):
    from tclap.data.mixup import build_builtin_mixups

    return build_builtin_mixups(tmp_path_factory.mktemp("mix") / "train", n=12, seconds=4.0, sr=16000, seed=0)


def _cfg(steps=4, **kw):
    cfg = preset("tiny")
    cfg.steps, cfg.data.batch_size, cfg.checkpoint_every, cfg.log_every = steps, 4, 2, 1
    cfg.optim.warmup_steps = 1
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def _log(run):
    return [json.loads(ln) for ln in (Path(run) / "metrics.jsonl").read_text().splitlines()]


def test_kill_and_resume_matches_uninterrupted_run(mixups, tmp_path):
    full = train(_cfg(), [str(mixups)], tmp_path / "full", quiet=True, export=False)
    assert full["finished"] and full["step"] == 4
    cfg_json = json.loads((tmp_path / "full" / "train_config.json").read_text())
    # the built-in mix-ups hold some simultaneous ("while") items without a negative: counted, not used
    n_skip = cfg_json["skipped"].get("temporal item without a negative caption", 0)
    assert n_skip + cfg_json["pools"]["temporal"] == 12

    def kill_at_3(step, rec):
        if step == 3:
            raise KeyboardInterrupt  # after step 3 was logged, before its checkpoint (every 2 steps)

    with pytest.raises(KeyboardInterrupt):
        train(_cfg(), [str(mixups)], tmp_path / "killed", quiet=True, export=False, step_callback=kill_at_3)
    with pytest.raises(UserError, match="--resume"):
        train(_cfg(), [str(mixups)], tmp_path / "killed", quiet=True, export=False)
    resumed = train(_cfg(), [str(mixups)], tmp_path / "killed", resume=True, quiet=True, export=False)
    assert resumed["step"] == 4 and resumed["finished"]
    steps = [r["step"] for r in _log(tmp_path / "killed")]
    assert steps == [1, 2, 3, 4]  # the killed run's step-3 line was replaced, not duplicated
    for a, b in zip(_log(tmp_path / "full"), _log(tmp_path / "killed")):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-6)
    wa = load_file(tmp_path / "full" / "checkpoints" / "step-00000004" / "model.safetensors")
    wb = load_file(tmp_path / "killed" / "checkpoints" / "step-00000004" / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=1e-6)


def test_two_processes_match_one_process_first_step(mixups, tmp_path):
    args = ["train", "--preset", "tiny", "--train", str(mixups), "--steps", "1", "--batch-size", "4",
            "--dropout", "0", "--quiet", "--no-export"]
    assert tclap_main(args + ["--out", str(tmp_path / "one")]) == 0
    # `accelerate launch --cpu --num_processes 2` starts N CPU processes only through mpirun (absent here);
    # the torchrun-based launcher (--multi_gpu) with ACCELERATE_USE_CPU gives N gloo processes on CPU.
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "tclap.cli"]
    cmd += args + ["--out", str(tmp_path / "two")]
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    one, two = _log(tmp_path / "one")[0], _log(tmp_path / "two")[0]
    assert two["world"] == 2 and one["world"] == 1
    assert two["loss"] == pytest.approx(one["loss"], abs=1e-5)
    assert two["temporal_loss"] == pytest.approx(one["temporal_loss"], abs=1e-5)


def test_bad_inputs_are_one_line_errors(mixups, tmp_path, capsys):
    from tclap.data.manifest import read_manifest, write_manifest

    items = read_manifest(mixups)
    # a manifest whose audio is missing
    bad = [dict(items[0], audio=str(tmp_path / "gone.wav"))] + items[1:]
    write_manifest(tmp_path / "missing.jsonl", bad)
    rc = tclap_main(["train", "--train", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "r1"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "gone.wav" in err
    # a temporal set where no item has a negative caption, with λ > 0
    write_manifest(tmp_path / "noneg.jsonl", [dict(it, negative_captions=[]) for it in items])
    rc = tclap_main(["train", "--train", str(tmp_path / "noneg.jsonl"), "--out", str(tmp_path / "r2"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "negative caption" in err and len(err.splitlines()) == 1
    # --init of the wrong architecture (a BERT config is not a CLAP model)
    wrong = tmp_path / "bert"
    wrong.mkdir()
    (wrong / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    rc = tclap_main(["train", "--train", str(mixups), "--init", str(wrong), "--out", str(tmp_path / "r3"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    # fp16 on a CPU-only machine
    if not torch.cuda.is_available():
        rc = tclap_main(["train", "--train", str(mixups), "--mixed-precision", "fp16", "--out", str(tmp_path / "r4")])
        assert rc == 2 and "fp16" in capsys.readouterr().err


def test_unpaired_items_go_to_the_positive_pool_when_asked(mixups, tmp_path, capsys):
    """Overlapping-event mix-ups have no negative caption: skipped by default, L_c-only items with --unpaired positive."""
    from tclap.data.manifest import read_manifest
    from tclap.train.data import build_pools

    items = read_manifest(mixups)
    unpaired = [it["id"] for it in items if not it.get("negative_captions")]
    paired = [it["id"] for it in items if it.get("negative_captions")]
    assert unpaired and paired  # the fixture holds both kinds
    skip = build_pools([str(mixups)], require_negatives=True)
    assert (len(skip.positive), len(skip.temporal)) == (0, len(paired))
    assert skip.skipped == {"temporal item without a negative caption": len(unpaired)}
    moved = build_pools([str(mixups)], require_negatives=True, unpaired="positive")
    assert (len(moved.positive), len(moved.temporal), moved.skipped) == (len(unpaired), len(paired), {})
    assert moved.moved_to_positive == len(unpaired)
    by_id = {it["id"]: it for it in items}
    assert moved.positive.captions == [by_id[i]["captions"] for i in unpaired]  # same items, manifest order
    assert all(n == [] for n in moved.positive.negatives)
    with pytest.raises(UserError, match="unpaired"):
        build_pools([str(mixups)], unpaired="drop")
    # the CLI: the run's config records the choice, the pools and the batch split (temporal fraction 0.5 of 4)
    args = ["train", "--preset", "tiny", "--train", str(mixups), "--steps", "1", "--batch-size", "4",
            "--temporal-fraction", "0.5", "--unpaired", "positive", "--quiet", "--no-export", "--out", str(tmp_path / "r")]
    assert tclap_main(args) == 0
    assert "positive-only pool" in capsys.readouterr().out
    cfg_json = json.loads((tmp_path / "r" / "train_config.json").read_text())
    assert cfg_json["config"]["data"]["unpaired"] == "positive" and cfg_json["moved_to_positive"] == len(unpaired)
    assert cfg_json["pools"] == {"positive": len(unpaired), "temporal": len(paired)}
    assert cfg_json["batch"] == {"temporal": 2, "positive": 2}
    assert len(_log(tmp_path / "r")) == 1


def test_two_runs_with_different_precision_in_one_process(tmp_path):
    """accelerate's process-wide state refuses a second precision; the trainer's accelerator clears it."""
    from tclap.distributed import make_accelerator

    a = make_accelerator(mixed_precision="no")
    assert a.mixed_precision == "no"
    b = make_accelerator(mixed_precision="bf16")
    assert b.mixed_precision == "bf16"
    c = make_accelerator(mixed_precision="no")
    assert c.mixed_precision == "no"


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bf16_only_where_native_and_is_recorded(mixups, tmp_path, monkeypatch, native):
    """--mixed-precision auto: bf16 on hardware that runs it natively, fp32 where torch would emulate it (8x
    slower on an AVX2-only CPU); the run records the precision it used, not "auto"."""
    import tclap.distributed as dist_mod

    monkeypatch.setattr(dist_mod.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(dist_mod.torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: native, raising=False)
    assert dist_mod.native_bf16("cpu") is native
    want = "bf16" if native else "no"
    assert dist_mod.resolve_mixed_precision("auto") == want
    assert dist_mod.resolve_mixed_precision("no") == "no" and dist_mod.resolve_mixed_precision("bf16") == "bf16"
    cfg = _cfg(steps=1, mixed_precision="auto")
    train(cfg, [str(mixups)], tmp_path / "r", quiet=True, export=False)
    assert cfg.mixed_precision == "auto"  # the caller's config is left as it was
    saved = json.loads((tmp_path / "r" / "train_config.json").read_text())
    assert saved["config"]["mixed_precision"] == want


def test_auto_precision_falls_back_to_cpu_flags_without_onednn(monkeypatch):
    import tclap.distributed as dist_mod

    def missing():
        raise RuntimeError("no oneDNN")

    monkeypatch.setattr(dist_mod.torch.ops.mkldnn, "_is_mkldnn_bf16_supported", missing, raising=False)
    for flags, want in (({"avx2": True, "avx512_bf16": False, "amx_bf16": False}, False),
                        ({"avx512_bf16": True}, True), ({"amx_bf16": True}, True), ({}, False)):
        monkeypatch.setattr(dist_mod.torch._C._cpu, "_get_cpu_capability", lambda f=flags: f, raising=False)
        assert dist_mod.native_bf16("cpu") is want, flags


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_runs_on_cuda(mixups, tmp_path):
    """accelerate puts the model on the GPU; captions are tokenized on the CPU and must follow it there."""
    train(_cfg(steps=2, mixed_precision="bf16"), [str(mixups)], tmp_path / "gpu", quiet=True, export=False)
    log = _log(tmp_path / "gpu")
    assert [r["step"] for r in log] == [1, 2] and all(np.isfinite(r["loss"]) for r in log)
