"""The reproduction presets make the report's claims testable (issue 25): ``--preset tiny`` generates at least 400
paired clips per seed (both systems, the same prompts and sampler seeds), every held-out prompt states an order the
detector checks, Table 1's retrieval runs over at least 1000 held-out captions, and the retrieval claim's verdict;
``--preset quick`` stays a small smoke run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from conductor.reproduce.config import make_config
from conductor.reproduce.layout import SYSTEMS, Paths
from conductor.reproduce.report import (
    ORDER_CLAIM_MIN_PAIRS,
    RETRIEVAL_MAX_DROP,
    RETRIEVAL_MIN_CAPTIONS,
    collect,
    markdown,
)


def test_tiny_preset_sizes_reach_the_claims_minimums_and_quick_stays_small():
    tiny, quick = make_config("tiny"), make_config("quick")
    assert tiny.data.n_heldout * len(tiny.seeds) >= ORDER_CLAIM_MIN_PAIRS == 400
    assert tiny.clap_eval.heldout_mixes >= RETRIEVAL_MIN_CAPTIONS == 1000
    # the probe and the MOS study keep their size
    assert tiny.score.probe_clips == 100 and tiny.study.max_prompts == 100
    # the smoke run: a handful of prompts and captions, its claims "not shown"
    assert quick.data.n_heldout * len(quick.seeds) < ORDER_CLAIM_MIN_PAIRS and quick.data.n_heldout == 4
    assert quick.clap_eval.heldout_mixes < RETRIEVAL_MIN_CAPTIONS


def test_a_larger_retrieval_set_reruns_the_evaluation_not_the_training(tmp_path):
    """The held-out captions are a setting of the clap_eval stage only: the CLAP stage's key does not move."""
    from conductor.reproduce.pipeline import stage_key
    from conductor.reproduce.stages import build_stages

    cfg = make_config("tiny")
    more = dataclasses.replace(cfg, clap_eval=dataclasses.replace(cfg.clap_eval, heldout_mixes=2000))
    a = {s.name: s for s in build_stages(cfg, tmp_path)}
    b = {s.name: s for s in build_stages(more, tmp_path)}
    assert stage_key(a["clap"], {}) == stage_key(b["clap"], {})
    assert stage_key(a["clap_eval"], {"clap": "x"}) != stage_key(b["clap_eval"], {"clap": "x"})


def test_tiny_heldout_prompts_each_state_the_order_of_two_distinct_events(tmp_path):
    """The tiny preset's data stage (its held-out settings; 2 training mix-ups instead of 1024, which the held-out
    set does not depend on) gives 400 prompts, each stating the order of its real clip's two events: 400 pairs."""
    from conductor.reproduce.stages import stage_data
    from eval_gen.temporal import prompt_order

    cfg = make_config("tiny")
    cfg.data = dataclasses.replace(cfg.data, n_ldm_train=2)
    paths = Paths(tmp_path)
    summary = stage_data(cfg, paths, tmp_path / "data", quiet=True)
    prompts = [json.loads(ln) for ln in paths.prompts.read_text().splitlines()]
    assert summary["heldout_prompts"] == len(prompts) == 400 and summary["skipped_heldout"] == 0
    assert len({p["id"] for p in prompts}) == 400
    for p in prompts:
        truth = [e["label"] for e in sorted(p["events"], key=lambda e: e["onset"])]  # from the mix-up itself
        assert len(set(truth)) == 2 and prompt_order(p["prompt"]) == truth, p
        assert (paths.references / f"{p['id']}.wav").is_file()


def _captured_jobs(monkeypatch, stage, cfg, tmp_path) -> list:
    """The module jobs ``stage`` would run (nothing runs), each checked against its CLI's own parser."""
    import conductor.reproduce.stages as stages

    jobs = []
    monkeypatch.setattr(stages, "run_modules", lambda group, parallel=1: jobs.extend(group))
    stage(cfg, Paths(tmp_path), tmp_path / "stage", True, 1)
    for job in jobs:
        stages.check_cli_args(job.module, job.args)
    return jobs


def _flag(args, name):
    args = [str(a) for a in args]
    return args[args.index(name) + 1]


def test_both_systems_generate_the_same_prompts_with_the_same_seed(monkeypatch, tmp_path):
    from conductor.reproduce.stages import stage_generate

    cfg = make_config("tiny", seeds=(0, 3))
    jobs = _captured_jobs(monkeypatch, stage_generate, cfg, tmp_path)
    assert len(jobs) == 2 * len(SYSTEMS)
    by_seed: dict = {}
    for job in jobs:
        assert _flag(job.args, "--prompts") == str(Paths(tmp_path).prompts)
        by_seed.setdefault(Path(_flag(job.args, "--out")).parent.name, set()).add(
            (_flag(job.args, "--seed"), _flag(job.args, "--steps"), _flag(job.args, "--guidance")))
    # one sampler seed and setting per seed, shared by both systems
    assert by_seed == {"seed0": {("0", "20", "3.0")}, "seed3": {("3", "20", "3.0")}}


def test_score_stage_probes_100_clips_and_scores_every_generated_folder(monkeypatch, tmp_path):
    from conductor.reproduce.stages import stage_score

    cfg = make_config("tiny")
    jobs = _captured_jobs(monkeypatch, stage_score, cfg, tmp_path)
    probes = [j for j in jobs if "probe-order" in map(str, j.args)]
    scores = [j for j in jobs if j.module == "eval_gen.cli"]
    assert len(probes) == len(SYSTEMS) and {_flag(j.args, "--n") for j in probes} == {"100"}
    assert len(scores) == 1 + len(SYSTEMS)  # the ceiling on the references, then each system's clips
    assert all("order" in _flag(j.args, "--metrics") for j in scores)


def test_clap_eval_embeds_the_preset_retrieval_set(monkeypatch, tmp_path):
    """Every (seed, system) evaluation gets cfg.clap_eval.heldout_mixes held-out mix-ups (not the recipe's 200)."""
    import tclap.evaluation.runner as runner
    import tclap.models

    from conductor.reproduce.stages import stage_clap_eval

    seen = []
    monkeypatch.setattr(runner, "evaluate", lambda model, data, out, cfg, cache_dir, quiet: seen.append(
        (data, cfg.heldout_mixes)) or {"r1_t2a": 1.0})
    monkeypatch.setattr(runner, "builtin_heldout", lambda cache, seconds, sr, cfg: seen.append(
        ("similarities", cfg.heldout_mixes)) or ([], []))
    monkeypatch.setattr(runner, "model_fingerprint", lambda bundle: "f" * 24)
    monkeypatch.setattr(runner, "embed_audio_paths", lambda *a: np.zeros((0, 4)))
    monkeypatch.setattr(runner, "embed_texts", lambda *a: np.zeros((0, 4)))
    monkeypatch.setattr(tclap.models, "load_clap", lambda d: SimpleNamespace(
        frontend=SimpleNamespace(max_length_s=4.0), sample_rate=16000))
    cfg = make_config("tiny", seeds=(0, 1))
    assert cfg.recipe_config(0).heldout_mixes == 200
    out = stage_clap_eval(cfg, Paths(tmp_path), tmp_path / "clap_eval", True)
    assert seen == [("builtin-heldout", 1000), ("similarities", 1000)] * 4
    assert out["metrics"]["1"]["tclap"] == {"r1_t2a": 1.0}


# ------------------------------------------------------------------------------------------------ retrieval claim
def _write(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _run(tmp_path: Path, r1: dict, captions: int) -> dict:
    """``collect`` over a run folder holding what it reads; ``r1[system] = (T2A R@1, A2T R@1)``, one seed."""
    cfg = make_config("quick")
    paths = Paths(tmp_path)
    per = {"p0": True, "p1": False}
    for system in SYSTEMS:
        t2a, a2t = r1[system]
        _write(paths.clap_eval(0, system) / "metrics.json",
               {"r1_t2a": t2a, "r1_a2t": a2t, "counts": {"retrieval_captions": captions}})
        _write(paths.scores(0, system) / "scores.json", {"n_gen": 2, "metrics": {"order_detector": {
            "value": 0.5, "n": 2, "correct": 1, "skipped": {}, "per_clip": per}}})
    _write(paths.ceiling / "scores.json", {"metrics": {"order_detector": {"value": 1.0, "n": 2, "correct": 2}}})
    return collect(cfg, paths)


def _claim_line(res: dict) -> str:
    return next(ln for ln in markdown(res, {}).splitlines() if ln.startswith("- T-CLAP keeps the baseline's retrieval"))


def test_retrieval_claim_yes_within_two_points_over_1000_captions(tmp_path):
    res = _run(tmp_path, {"baseline": (60.0, 58.5), "tclap": (58.25, 59.0)}, captions=1000)
    rc = res["retrieval_claim"]
    assert rc["verdict"] == "yes" and rc["captions"] == 1000 and RETRIEVAL_MAX_DROP == 2.0
    assert rc["differences"] == pytest.approx({"r1_t2a": -1.75, "r1_a2t": 0.5})
    assert res["checks"]["tclap_retrieval_r1_within_max_drop"] is True
    line = _claim_line(res)
    assert line.endswith("**yes**. T-CLAP minus baseline R@1: text-to-audio -1.75, audio-to-text +0.50 points over "
                         "1000 held-out captions (needs at most 2 points below over at least 1000 captions).")
    assert "(1000 captions)" in markdown(res, {})  # Table 1 says how many


def test_retrieval_claim_no_when_either_direction_drops_more(tmp_path):
    res = _run(tmp_path, {"baseline": (60.0, 58.0), "tclap": (61.0, 55.5)}, captions=1200)
    assert res["retrieval_claim"]["verdict"] == "no" and "2.50 points below" in res["retrieval_claim"]["reason"]
    assert res["checks"]["tclap_retrieval_r1_within_max_drop"] is False
    assert "**no**. T-CLAP minus baseline R@1: text-to-audio +1.00, audio-to-text -2.50" in _claim_line(res)


def test_retrieval_claim_not_shown_over_too_few_captions_and_not_measured_without_counts(tmp_path):
    res = _run(tmp_path / "few", {"baseline": (60.0, 58.0), "tclap": (60.0, 58.0)}, captions=999)
    assert res["retrieval_claim"]["verdict"] == "not shown"
    assert res["checks"]["tclap_retrieval_r1_within_max_drop"] is None
    assert "**not shown** (too few captions (999 < 1000))" in _claim_line(res)
    res = _run(tmp_path / "old", {"baseline": (60.0, 58.0), "tclap": (60.0, 58.0)}, captions=None)
    assert res["retrieval_claim"]["verdict"] == "not measured" and "not measured" in _claim_line(res)
