"""The embedded T-CLAP recipe: it records its first losses, those steps are deterministic and reproduce the
shipped model's record, the shipped T-CLAP beats the shipped baseline, and the 3-seed table's maths.

Reference values: the first losses are checked against a *rerun* of the same training steps (the recipe
records them while it trains, the test redoes them from the data builder), and the seed table against
hand-computed means / sample standard deviations.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from tclap.distributed import resolve_mixed_precision
from conductor.recipes.clap import N_FIRST_LOSSES, RecipeConfig, _stage_cfg, first_losses, main as recipe_main

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "tclap" / "assets" / "models"
# Five optimizer steps of the same config on the same machine agree to float32 round-off; a different
# thread count changes reduction order, which after a few Adam steps moves the loss by ~1e-5.
LOSS_TOL = 2e-4
# Under bf16 autocast (the recipe's default since it is 1.8x faster on CPUs with AMX) the same machine still
# repeats itself bit for bit, but another CPU's bf16 kernels round differently: ~1e-2 on a loss of ~4.


def loss_tol(train_config: dict) -> float:
    return LOSS_TOL if train_config.get("mixed_precision", "no") == "no" else 2e-2


def _redo_pretrain_steps(train_config: dict, manifest: Path, out: Path, n_steps: int) -> list[dict]:
    """Run the first ``n_steps`` optimizer steps of a recorded pretrain config; the per-step log records."""
    from tclap.train.config import TrainConfig
    from tclap.train.trainer import train

    cfg = TrainConfig.from_dict(train_config)
    cfg.checkpoint_every = max(cfg.checkpoint_every, n_steps)  # one checkpoint at the stop, not more
    recs: list[dict] = []
    train(cfg, [str(manifest)], out, quiet=True, export=False, max_steps_this_run=n_steps,
          step_callback=lambda step, rec: recs.append(rec))
    assert [r["step"] for r in recs] == list(range(1, n_steps + 1))
    return recs


def _assert_losses_match(recorded: list[dict], rerun: list[dict], tol: float) -> None:
    assert recorded, "no recorded losses to compare"
    by_step = {r["step"]: r for r in rerun}
    for rec in recorded:
        new = by_step[rec["step"]]
        for k in ("loss", "contrastive_loss", "temporal_loss", "lr"):
            assert new[k] == pytest.approx(rec[k], abs=tol), f"step {rec['step']} {k}: rerun {new[k]} vs recorded {rec[k]}"


# ---------------------------------------------------------------- (a) a tiny recipe run end to end
@pytest.fixture(scope="module")
def tiny_recipe(tmp_path_factory):
    out = tmp_path_factory.mktemp("recipe")
    args = ["--out", str(out), "--seed", "1", "--n-train", "24", "--batch-size", "8", "--pretrain-steps", "6",
            "--warm-steps", "2", "--finetune-steps", "3", "--heldout-mixes", "16", "--unpaired", "positive", "--wise-alpha", "0.75",
            "--singles-per-class", "2", "--quiet"]
    assert recipe_main(args) == 0
    return out, args


def test_recipe_exports_both_models_with_their_record(tiny_recipe):
    out, _ = tiny_recipe
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["results"]) == {"tiny-baseline", "tiny-tclap", "tiny-tclap-finetune"}
    assert not (out / "tiny-tclap-finetune").exists()  # evaluated for the record, not exported
    for name, stage in (("tiny-baseline", "baseline"), ("tiny-tclap", "tclap")):
        d = out / name
        assert (d / "config.json").is_file() and (d / "model.safetensors").is_file()
        rec = json.loads((d / "recipe.json").read_text())
        assert rec["model"] == name and rec["recipe"]["seed"] == 1 and rec["recipe"]["n_train"] == 24
        # the shipped T-CLAP is the blend of both fine-tunes (--wise-alpha), so its record holds both
        assert list(rec["stages"]) == ["pretrain", "warm", stage] + (["baseline"] if stage == "tclap" else [])
        assert rec["heldout_metrics"] == summary["results"][name]
        assert "--seed 1" in rec["command"] and "--n-train 24" in rec["command"]
        assert "--warm-steps 2" in rec["command"] and rec["recipe"]["unpaired"] == "positive"
        assert "--unpaired" not in rec["command"]  # the default: the command names only what differs from it
        assert "--wise-alpha 0.75" in rec["command"] and rec["recipe"]["wise_alpha"] == 0.75
        assert "--singles-per-class 2" in rec["command"] and rec["recipe"]["singles_per_class"] == 2
        # the warm stage (L_c) continues the pretrain; both fine-tunes start from it
        warm = rec["stages"]["warm"]["train_config"]
        # paths inside the run folder are recorded relative to it (no folder of the machine that made it)
        assert warm["init"] == str(Path("runs") / "pretrain" / "model") and warm["loss"]["lambda_t"] == 0.0
        assert rec["stages"][stage]["train_config"]["init"] == str(Path("runs") / "warm" / "model")
        assert rec["paths"].startswith("relative to the recipe's --out folder") and str(out) not in json.dumps(rec)
        pre = rec["stages"]["pretrain"]
        # the pretrain stage is L_c only; the fine-tune stages differ only in λ (and the A2T hard negative)
        assert pre["train_config"]["loss"]["lambda_t"] == 0.0 and pre["train_config"]["init"] == "tiny"
        assert [r["step"] for r in pre["first_losses"]] == list(range(1, N_FIRST_LOSSES + 1))
        assert all(r["temporal_loss"] == 0.0 for r in pre["first_losses"])
        ft = rec["stages"][stage]
        assert ft["train_config"]["loss"]["lambda_t"] == (RecipeConfig().lambda_t if stage == "tclap" else 0.0)
        # the recipe's default "auto" is recorded as what it resolved to on this machine
        assert ft["train_config"]["mixed_precision"] == pre["train_config"]["mixed_precision"] == resolve_mixed_precision("auto")
        # overlapping-event mix-ups: L_c-only items for T-CLAP (--unpaired positive), plain items for the baseline;
        # both fine-tunes mix in the same 2 single-event clips per class (13 classes) as positives
        assert ft["train_config"]["data"]["unpaired"] == ("positive" if stage == "tclap" else "skip")
        assert ft["positive"] == [str(Path("data") / "single" / "manifest.jsonl")]
        assert ft["pools"]["positive"] + ft["pools"]["temporal"] == 24 + 26 and not ft["skipped"]
        assert (ft["pools"]["positive"] > 26) == (stage == "tclap") and ft["pools"]["positive"] >= 26
        assert pre["positive"] == rec["stages"]["warm"]["positive"] == []  # pre-training: mix-ups only
        assert [r["step"] for r in ft["first_losses"]] == [1, 2, 3]  # a stage shorter than N records all
    # the stage's metrics log (step 1 and the last step) holds the same numbers as the record
    log = [json.loads(ln) for ln in (out / "runs" / "pretrain" / "metrics.jsonl").read_text().splitlines()]
    rec1 = json.loads((out / "tiny-tclap" / "recipe.json").read_text())["stages"]["pretrain"]["first_losses"][0]
    assert log[0]["step"] == 1 and log[0]["loss"] == rec1["loss"]


def test_shipped_tclap_is_the_blend_of_the_two_finetunes(tiny_recipe):
    """--wise-alpha 0.75: tiny-tclap = 0.25·baseline + 0.75·(T-CLAP fine-tune), tensor by tensor (numpy reference)."""
    import numpy as np
    from safetensors.numpy import load_file as load_np

    out, _ = tiny_recipe
    base = load_np(str(out / "runs" / "baseline" / "model" / "model.safetensors"))
    tcl = load_np(str(out / "runs" / "tclap" / "model" / "model.safetensors"))
    shipped = load_np(str(out / "tiny-tclap" / "model.safetensors"))
    assert shipped.keys() == tcl.keys()
    n_differ = 0
    for k, v in shipped.items():
        if np.issubdtype(v.dtype, np.floating):
            want = 0.25 * base[k].astype(np.float64) + 0.75 * tcl[k].astype(np.float64)
            np.testing.assert_allclose(v, want, rtol=1e-5, atol=1e-6, err_msg=k)
            n_differ += not np.array_equal(base[k], tcl[k])
        else:
            np.testing.assert_array_equal(v, tcl[k])
    assert n_differ > 10  # the two fine-tunes really differ, so the blend is not trivially either
    summary = json.loads((out / "summary.json").read_text())
    assert summary["results"]["tiny-tclap"] != summary["results"]["tiny-tclap-finetune"]


def test_side_by_side_finetunes_match_one_after_the_other(tiny_recipe, tmp_path):
    """The fixture trained the two fine-tunes in parallel processes (--jobs 2 by default on >= 2 cores);
    redone one after the other in this process from the same pre-training, their first losses agree."""
    import shutil

    out, args = tiny_recipe
    redo = tmp_path / "redo"
    shutil.copytree(out / "data", redo / "data")
    shutil.copytree(out / "runs" / "pretrain", redo / "runs" / "pretrain")
    argv = [*args, "--jobs", "1"]
    argv[argv.index("--out") + 1] = str(redo)
    assert recipe_main(argv) == 0
    for stage in ("tclap", "baseline"):
        rec = first_losses(out / "runs" / stage)
        cfg = json.loads((out / "runs" / stage / "train_config.json").read_text())["config"]
        assert [r["step"] for r in rec] == [1, 2, 3]
        _assert_losses_match(rec, first_losses(redo / "runs" / stage), loss_tol(cfg))


def test_baseline_start_is_the_model_tclap_is_finetuned_from(tiny_recipe, tmp_path):
    """--baseline start (the paper's protocol, ``tclap reproduce``'s): no baseline fine-tune; the exported
    tiny-baseline is the warm stage's model byte for byte, and the T-CLAP fine-tune is the same as beside a
    baseline fine-tune (its first losses match the fixture's)."""
    import shutil

    out, args = tiny_recipe
    redo = tmp_path / "start"
    shutil.copytree(out / "data", redo / "data")
    for stage in ("pretrain", "warm"):
        shutil.copytree(out / "runs" / stage, redo / "runs" / stage)
    argv = [*args, "--baseline", "start"]
    argv[argv.index("--out") + 1] = str(redo)
    argv[argv.index("--wise-alpha") + 1] = "1"
    assert recipe_main(argv) == 0
    assert sorted(p.name for p in (redo / "runs").iterdir()) == ["pretrain", "tclap", "warm"]
    base = json.loads((redo / "tiny-baseline" / "recipe.json").read_text())
    assert list(base["stages"]) == ["pretrain", "warm"] and base["recipe"]["baseline"] == "start"
    assert "--baseline start" in base["command"]
    assert ((redo / "tiny-baseline" / "model.safetensors").read_bytes()
            == (redo / "runs" / "warm" / "model" / "model.safetensors").read_bytes())
    tcl = json.loads((redo / "tiny-tclap" / "recipe.json").read_text())
    assert list(tcl["stages"]) == ["pretrain", "warm", "tclap"]
    assert tcl["stages"]["tclap"]["train_config"]["init"] == str(Path("runs") / "warm" / "model")
    cfg = json.loads((out / "runs" / "tclap" / "train_config.json").read_text())["config"]
    _assert_losses_match(first_losses(out / "runs" / "tclap"), first_losses(redo / "runs" / "tclap"), loss_tol(cfg))
    summary = json.loads((redo / "summary.json").read_text())
    assert set(summary["results"]) == {"tiny-baseline", "tiny-tclap"}


def test_pretrain_steps_are_deterministic_and_match_the_record(tiny_recipe, tmp_path):
    out, _ = tiny_recipe
    full = json.loads((out / "tiny-tclap" / "recipe.json").read_text())
    rec = {**full["stages"]["pretrain"], "recipe": full["recipe"]}
    manifest = out / "data" / "train" / "manifest.jsonl"
    a = _redo_pretrain_steps(rec["train_config"], manifest, tmp_path / "a", N_FIRST_LOSSES)
    b = _redo_pretrain_steps(rec["train_config"], manifest, tmp_path / "b", N_FIRST_LOSSES)
    for ra, rb in zip(a, b):  # same process, same threads: bit-identical
        assert (ra["loss"], ra["contrastive_loss"]) == (rb["loss"], rb["contrastive_loss"])
    _assert_losses_match(rec["first_losses"], a, LOSS_TOL)  # same machine, same run: round-off only
    # the recipe's stage config today is the one that was recorded (the recipe did not drift)
    assert _pretrain_config(rec) == _as_today(rec["train_config"])


def _as_today(recorded: dict) -> dict:
    """A recorded stage config with the fields added since it was written at their defaults (JSON form)."""
    import copy

    from tclap.train.config import TrainConfig

    return json.loads(json.dumps(TrainConfig.from_dict(copy.deepcopy(recorded)).to_dict()))


def _pretrain_config(rec: dict) -> dict:
    """The pretrain stage's config as today's recipe makes it from the recorded recipe settings (JSON form)."""
    rc = RecipeConfig(**rec["recipe"])
    cfg = _stage_cfg(rc, "tiny", rc.pretrain_steps, rc.pretrain_lr, 0.0, False)
    return json.loads(json.dumps(cfg.to_dict()))


def test_first_losses_fall_back_to_the_metrics_log(tiny_recipe, tmp_path):
    """A stage trained before first_losses.json existed: its metrics log's records of steps <= N stand in."""
    out, _ = tiny_recipe
    run = out / "runs" / "pretrain"
    log = (run / "metrics.jsonl").read_text()
    (tmp_path / "metrics.jsonl").write_text(log)
    logged = [json.loads(ln) for ln in log.splitlines()]
    got = first_losses(tmp_path)
    assert [r["step"] for r in got] == [r["step"] for r in logged if r["step"] <= N_FIRST_LOSSES] == [1]
    assert got[0]["loss"] == logged[0]["loss"]
    assert first_losses(tmp_path / "nothing") == []
    assert first_losses(run) == json.loads((run / "first_losses.json").read_text())


def test_rerun_skips_finished_stages_and_keeps_the_record(tiny_recipe, capsys):
    out, args = tiny_recipe
    before = (out / "tiny-tclap" / "recipe.json").read_text()
    assert recipe_main(args) == 0
    said = capsys.readouterr().out
    for stage in ("pretrain", "tclap", "baseline"):
        assert f"stage {stage} already done" in said
    assert (out / "tiny-tclap" / "recipe.json").read_text() == before
    assert not list(out.glob(".tmp-*"))


def test_recipe_bad_arguments_are_one_line_errors(tmp_path, capsys):
    assert recipe_main(["--out", str(tmp_path / "r"), "--n-train", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--n-train" in err
    assert recipe_main(["--out", str(tmp_path / "r"), "--jobs", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--jobs 0" in err
    for flag, value in (("--wise-alpha", "0"), ("--wise-alpha", "1.5"), ("--warm-steps", "-1")):
        assert recipe_main(["--out", str(tmp_path / "r"), flag, value]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and flag in err, (flag, err)


# ---------------------------------------------------------------- (a, b) the shipped models
def _shipped_record(name: str) -> dict:
    path = ASSETS / name / "recipe.json"
    if not (ASSETS / name / "config.json").is_file():
        pytest.skip(f"shipped model {name} is not in {ASSETS} yet (run `python -m conductor.recipes.clap --out DIR` "
                    f"and copy DIR/{name} there)")
    if not path.is_file():
        pytest.skip(f"{path} is missing: the shipped {name} was exported before the recipe recorded itself; "
                    "re-run the same recipe command on its run folder (finished stages are skipped) and copy it again")
    return json.loads(path.read_text())


def _bn_stats(state: dict) -> tuple:
    """HTSAT's input BatchNorm buffers (set from the training data's mel statistics, frozen afterwards)."""
    keys = [k for k in state if k.endswith("audio_encoder.batch_norm.running_mean")]
    assert len(keys) == 1, keys
    return state[keys[0]], state[keys[0].replace("running_mean", "running_var")]


def test_shipped_tclap_reproduces_its_recorded_first_losses(tmp_path):
    """Rebuild the recipe's training mix-ups (same n, seconds, rate, data seed) and redo the first pretrain steps."""
    import torch
    from safetensors.torch import load_file

    from tclap.data.mixup import build_builtin_mixups

    full = _shipped_record("tiny-tclap")
    rec = {**full["stages"]["pretrain"], "recipe": full["recipe"]}
    assert _pretrain_config(rec) == _as_today(rec["train_config"]), (
        "today's recipe makes another pretrain config than the one that trained the shipped tiny-tclap: "
        "re-run the recipe and ship its models again")
    recorded = [r for r in rec["first_losses"] if r["step"] <= N_FIRST_LOSSES]
    if not recorded:
        pytest.skip("the shipped tiny-tclap's recipe.json records no pretrain losses of the first steps")
    rc = RecipeConfig(**full["recipe"])
    manifest = build_builtin_mixups(tmp_path / "data" / "train", n=rc.n_train, seconds=rc.seconds,
                                    sr=rc.sample_rate, split="train", seed=rc.seed)
    n_steps = max(r["step"] for r in recorded)
    rerun = _redo_pretrain_steps(rec["train_config"], manifest, tmp_path / "pretrain", n_steps)
    _assert_losses_match(recorded, rerun, loss_tol(rec["train_config"]))
    # The mel BatchNorm statistics come from all rc.n_train clips and stay frozen through every stage, so the
    # shipped model must hold exactly the statistics of the rebuilt data.
    ck = sorted((tmp_path / "pretrain" / "checkpoints").glob("step-*"))[-1]
    mean, var = _bn_stats(load_file(ck / "model.safetensors"))
    s_mean, s_var = _bn_stats(load_file(ASSETS / "tiny-tclap" / "model.safetensors"))
    torch.testing.assert_close(s_mean, mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(s_var, var, rtol=1e-5, atol=1e-5)


def test_shipped_tclap_beats_the_baseline_on_heldout_t_classify(tmp_path):
    """Evaluate both shipped models on the recipe's built-in held-out set; T-CLAP must win T2A (and A2T), and
    the numbers must be the ones the recipe recorded (same data, same weights)."""
    from tclap.evaluation.runner import EvalConfig, evaluate

    recs = {name: _shipped_record(name) for name in ("tiny-baseline", "tiny-tclap")}
    heldout = recs["tiny-tclap"]["recipe"]["heldout_mixes"]
    res = {}
    for name, rec in recs.items():
        res[name] = evaluate(str(ASSETS / name), "builtin-heldout", tmp_path / name, cfg=EvalConfig(heldout_mixes=heldout),
                             cache_dir=tmp_path / "cache", quiet=True)
        # a near-tie can flip with the thread count: allow ~2 of the ~400 decisions
        for k, v in rec["heldout_metrics"].items():
            assert res[name][k] == pytest.approx(v, abs=0.75), f"{name} {k}: {res[name][k]:.2f} vs recorded {v:.2f}"
    t, b = res["tiny-tclap"], res["tiny-baseline"]
    assert t["t_classify_t2a"] >= b["t_classify_t2a"] + 5, (t["t_classify_t2a"], b["t_classify_t2a"])
    assert t["t_classify_a2t"] > b["t_classify_a2t"], (t["t_classify_a2t"], b["t_classify_a2t"])
    assert res["tiny-tclap"]["counts"]["t_classify_t2a_pairs"] >= heldout // 2


# ---------------------------------------------------------------- benchmarks/tclap_seeds.py table maths
def _seeds_module():
    spec = importlib.util.spec_from_file_location("tclap_seeds", ROOT / "benchmarks" / "tclap_seeds.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_KEYS = ("t_classify_t2a", "t_classify_a2t", "t_classify_t2a_audio_blind", "r1_t2a", "r1_a2t", "zero_shot_top1")
# per seed: (baseline values, tclap values) in _KEYS order
_FAKE = {
    0: ((50, 52, 50, 14, 16, 80), (86, 76, 51, 13, 15, 79)),
    1: ((56, 50, 49, 15, 16, 82), (88, 74, 50, 11, 16, 81)),
    2: ((53, 54, 51, 16, 16, 84), (90, 78, 52, 12, 17, 80)),
}


def _write_fake_runs(root: Path, config_for=lambda seed: {"seed": seed, "n_train": 3000}) -> None:
    for seed, (base, tcl) in _FAKE.items():
        d = root / f"clap_s{seed}"
        d.mkdir(parents=True)
        results = {"tiny-baseline": dict(zip(_KEYS, map(float, base))), "tiny-tclap": dict(zip(_KEYS, map(float, tcl)))}
        (d / "summary.json").write_text(json.dumps({"config": config_for(seed), "results": results}))


def test_seed_table_means_stds_and_targets(tmp_path, capsys):
    S = _seeds_module()
    _write_fake_runs(tmp_path)
    summaries = S.load_summaries(tmp_path, [0, 1, 2])
    agg = S.aggregate(summaries)
    # by hand: tclap T2A 86, 88, 90 -> mean 88, sample std sqrt((4 + 0 + 4) / 2) = 2
    assert agg["tiny-tclap"]["t_classify_t2a"] == pytest.approx((88.0, 2.0, 3))
    # baseline T2A 50, 56, 53 -> mean 53, std sqrt((9 + 9 + 0) / 2) = 3
    assert agg["tiny-baseline"]["t_classify_t2a"] == pytest.approx((53.0, 3.0, 3))
    checks = {c["check"]: c for c in S.target_checks(summaries)}
    assert checks["T-CLAP T-Classify T2A"]["passed"] and checks["T-CLAP T-Classify A2T"]["value"] == pytest.approx(76.0)
    # per-seed T2A gains 36, 32, 37 -> mean 35, std sqrt((1 + 9 + 4) / 2) = sqrt(7)
    gain = checks["T2A gain over baseline (points)"]
    assert (gain["value"], gain["std"], gain["passed"]) == (pytest.approx(35.0), pytest.approx(math.sqrt(7)), True)
    # R@1 T2A drops 1, 4, 4 -> mean 3 > 2: fails; R@1 A2T drops 1, 0, -1 -> mean 0: passes
    assert checks["R@1 T2A drop vs baseline (points)"]["value"] == pytest.approx(3.0)
    assert not checks["R@1 T2A drop vs baseline (points)"]["passed"]
    assert checks["R@1 A2T drop vs baseline (points)"]["passed"]
    # the CLI reuses the finished runs (never trains) and prints / writes the same table
    assert S.main(["--runs", str(tmp_path), "--out", str(tmp_path / "t.md")]) == 0
    out = capsys.readouterr().out
    assert out.count("reusing") == 3
    table = (tmp_path / "t.md").read_text()
    assert "| tiny-tclap | 88.0 ± 2.0 | 76.0 ± 2.0 |" in table and "| tiny-baseline | 53.0 ± 3.0 |" in table
    assert "| R@1 T2A drop vs baseline (points) | 3.0 ± 1.7 | <= 2 | FAIL |" in table  # std sqrt(3)
    assert table in out


def test_seed_table_with_a_metric_missing_in_one_seed(tmp_path):
    S = _seeds_module()
    _write_fake_runs(tmp_path)
    p = tmp_path / "clap_s1" / "summary.json"
    s = json.loads(p.read_text())
    del s["results"]["tiny-tclap"]["zero_shot_top1"]
    p.write_text(json.dumps(s))
    agg = S.aggregate(S.load_summaries(tmp_path, [0, 1, 2]))
    # seeds 0 and 2 only: 79, 80 -> mean 79.5, std sqrt(2 * 0.25 / 1)
    assert agg["tiny-tclap"]["zero_shot_top1"] == pytest.approx((79.5, math.sqrt(0.5), 2))


def test_seed_table_bad_input_is_one_line(tmp_path, capsys):
    S = _seeds_module()
    assert S.main(["--runs", str(tmp_path), "--no-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "clap_s0" in err and "summary.json" in err
    _write_fake_runs(tmp_path / "mixed", config_for=lambda seed: {"seed": seed, "n_train": 3000 if seed else 500})
    assert S.main(["--runs", str(tmp_path / "mixed"), "--no-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "n_train" in err
    assert S.main(["--runs", str(tmp_path), "--seeds", "0,x"]) == 2
    assert "--seeds" in capsys.readouterr().err


def test_seed_table_with_the_interpolated_model_and_continued_runs(tmp_path, capsys):
    S = _seeds_module()
    # the summaries `--continue-steps 1500 --wise 0.8` writes, under RUN/continue1500/
    wise = {0: (80, 70, 50, 13, 16, 80), 1: (84, 72, 50, 14, 15, 81), 2: (88, 74, 50, 15, 18, 82)}
    for seed, (base, tcl) in _FAKE.items():
        d = tmp_path / f"clap_s{seed}" / "continue1500"
        d.mkdir(parents=True)
        results = {"tiny-baseline": dict(zip(_KEYS, map(float, base))), "tiny-tclap": dict(zip(_KEYS, map(float, tcl))),
                   "tiny-tclap-wise": dict(zip(_KEYS, map(float, wise[seed])))}
        (d / "summary.json").write_text(json.dumps({"config": {"n_train": 3000, "continue_steps": 1500, "wise_alpha": 0.8},
                                                    "results": results}))
    assert S.main(["--runs", str(tmp_path), "--continue-steps", "1500", "--wise", "0.8", "--no-run"]) == 0
    out = capsys.readouterr().out
    # by hand: wise T2A 80, 84, 88 -> 84 ± 4 (< 85: fails); R@1 T2A drops 14-13, 15-14, 16-15 = 1, 1, 1 -> passes
    assert "| tiny-tclap-wise | 84.0 ± 4.0 | 72.0 ± 2.0 |" in out
    block = out[out.index("tiny-tclap-wise as T-CLAP"):]
    assert "| T-CLAP T-Classify T2A | 84.0 ± 4.0 | >= 85 | FAIL |" in block
    assert "| R@1 T2A drop vs baseline (points) | 1.0 ± 0.0 | <= 2 | pass |" in block
    # the plain T-CLAP keeps its own block
    assert "tiny-tclap as T-CLAP" in out
    assert S.main(["--runs", str(tmp_path), "--wise", "0.8", "--no-run"]) == 2
    assert "--wise needs --continue-steps" in capsys.readouterr().err


def test_continued_runs_train_and_the_unpaired_variant_reuses_the_baseline(tiny_recipe, tmp_path, capsys):
    """--continue-steps on a real (tiny) recipe run: both fine-tunes start from its tiny-baseline; with
    --unpaired positive the T-CLAP run trains L_c on the overlapping-event mix-ups and the baseline is reused."""
    S = _seeds_module()
    out, _ = tiny_recipe
    plain = S.continue_run(out, 2, quiet=True)
    assert plain == out / "continue2"
    for stage in ("tclap", "baseline"):
        cfg = json.loads((plain / "runs" / stage / "train_config.json").read_text())
        assert cfg["config"]["init"] == str(out / "tiny-baseline") and cfg["config"]["steps"] == 2
        assert cfg["config"]["data"]["unpaired"] == "skip"
    n_unpaired = json.loads((plain / "runs" / "tclap" / "train_config.json").read_text())["skipped"][
        "temporal item without a negative caption"]
    assert n_unpaired > 0  # the 24 built-in mix-ups hold some overlapping pairs
    moved = S.continue_run(out, 2, quiet=True, unpaired="positive")
    assert moved == out / "continue2-unpaired"
    t = json.loads((moved / "runs" / "tclap" / "train_config.json").read_text())
    assert t["config"]["data"]["unpaired"] == "positive" and t["moved_to_positive"] == n_unpaired and t["skipped"] == {}
    # the run's 2 single-event clips per class (13 classes) are positives of both continued fine-tunes too
    assert t["pools"]["positive"] == n_unpaired + 26 and t["pools"]["positive"] + t["pools"]["temporal"] == 24 + 26
    assert t["positive"] == [str(out / "data" / "single" / "manifest.jsonl")]
    assert (moved / "runs" / "baseline").resolve() == (plain / "runs" / "baseline").resolve()  # not trained again
    summary = json.loads((moved / "summary.json").read_text())
    assert summary["config"]["unpaired"] == "positive"
    assert summary["results"]["tiny-baseline"] == json.loads((plain / "summary.json").read_text())["results"]["tiny-baseline"]
    capsys.readouterr()
    (tmp_path / "run_s1").symlink_to(out, target_is_directory=True)  # the fixture's run is seed 1
    assert S.main(["--runs", str(tmp_path), "--pattern", "run_s{seed}", "--seeds", "1", "--no-run",
                   "--continue-steps", "2", "--unpaired", "positive"]) == 0
    table = capsys.readouterr().out
    r = summary["results"]["tiny-tclap"]
    assert f"| tiny-tclap | {r['t_classify_t2a']:.1f} ± 0.0 | {r['t_classify_a2t']:.1f} ± 0.0 |" in table
    assert S.main(["--runs", str(out), "--unpaired", "positive", "--no-run"]) == 2
    assert "--unpaired needs --continue-steps" in capsys.readouterr().err
    # --lambda-t: T-CLAP's L_t weight for the continued fine-tune, in a folder of its own; the baseline is reused
    light = S.continue_run(out, 2, quiet=True, unpaired="positive", lambda_t=0.5)
    assert light == out / "continue2-unpaired-lambda0.5"
    t = json.loads((light / "runs" / "tclap" / "train_config.json").read_text())
    assert t["config"]["loss"]["lambda_t"] == 0.5 and t["config"]["data"]["unpaired"] == "positive"
    assert (light / "runs" / "baseline").resolve() == (plain / "runs" / "baseline").resolve()
    assert json.loads((light / "summary.json").read_text())["config"]["lambda_t"] == 0.5
    for bad in (["--lambda-t", "0", "--continue-steps", "2"], ["--lambda-t", "1"]):
        assert S.main(["--runs", str(out), "--no-run", *bad]) == 2
        assert "--lambda-t" in capsys.readouterr().err
