"""``tclap reproduce``: the stage runner's skip / resume / invalidate rules, the paper preset's plan and
input check, and one ``--quick`` run end to end (interrupted in the score stage, then resumed)."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from conductor.cli import main
from basekit.errors import UserError
from conductor.reproduce.pipeline import DONE_FILE, Pipeline, Stage


# ------------------------------------------------------------------------------------------------ runner
def _toy(tmp_path: Path, settings: dict, calls: list, fail_in: str | None = None):
    """Three stages a -> b -> c writing one file each; ``calls`` records (stage, files already there)."""

    def make(name):
        def run(sdir: Path) -> dict:
            calls.append((name, sorted(p.name for p in sdir.iterdir())))
            (sdir / "part.txt").write_text("partial")
            if name == fail_in:
                raise KeyboardInterrupt
            (sdir / "out.txt").write_text(f"{name}:{settings[name]}")
            return {"value": settings[name]}
        return run

    return Pipeline(tmp_path, [Stage("a", make("a"), settings["a"]), Stage("b", make("b"), settings["b"], ("a",)),
                               Stage("c", make("c"), settings["c"], ("b",))], log=lambda s: None)


def _mtimes(root: Path, names) -> dict:
    return {n: (root / n / DONE_FILE).stat().st_mtime_ns for n in names}


def test_runner_skips_up_to_date_and_reruns_changed_stage_and_later(tmp_path):
    calls: list = []
    s = {"a": 1, "b": 1, "c": 1}
    st = _toy(tmp_path, s, calls).run()
    assert [x.action for x in st] == ["ran", "ran", "ran"]
    before = _mtimes(tmp_path, "abc")
    calls.clear()
    st = _toy(tmp_path, s, calls).run()
    assert [x.action for x in st] == ["skipped"] * 3 and calls == []
    assert _mtimes(tmp_path, "abc") == before
    s2 = {"a": 1, "b": 2, "c": 1}  # b's settings changed: b and c re-run, a is kept
    calls.clear()
    st = _toy(tmp_path, s2, calls).run()
    assert [x.action for x in st] == ["skipped", "ran", "ran"]
    assert [c[0] for c in calls] == ["b", "c"]
    assert (tmp_path / "b" / "out.txt").read_text() == "b:2"
    assert (tmp_path / "a" / DONE_FILE).stat().st_mtime_ns == before["a"]


def test_runner_resumes_an_interrupted_stage_in_place(tmp_path):
    calls: list = []
    s = {"a": 1, "b": 1, "c": 1}
    with pytest.raises(KeyboardInterrupt):
        _toy(tmp_path, s, calls, fail_in="b").run()
    assert not (tmp_path / "b" / DONE_FILE).exists() and (tmp_path / "a" / DONE_FILE).exists()
    a_done = (tmp_path / "a" / DONE_FILE).stat().st_mtime_ns
    calls.clear()
    st = _toy(tmp_path, s, calls).run()
    assert [x.action for x in st] == ["skipped", "resumed", "ran"]
    # the resumed stage found its partial output (same key: resume, not wipe)
    assert calls[0] == ("b", ["STARTED.json", "part.txt"])
    assert (tmp_path / "a" / DONE_FILE).stat().st_mtime_ns == a_done


def test_runner_wipes_partial_output_of_other_settings(tmp_path):
    calls: list = []
    with pytest.raises(KeyboardInterrupt):
        _toy(tmp_path, {"a": 1, "b": 1, "c": 1}, calls, fail_in="b").run()
    calls.clear()
    _toy(tmp_path, {"a": 1, "b": 5, "c": 1}, calls).run()
    assert calls[0] == ("b", ["STARTED.json"])  # stale partial files removed before the run


def test_runner_force_and_from_stage(tmp_path):
    calls: list = []
    s = {"a": 1, "b": 1, "c": 1}
    _toy(tmp_path, s, calls).run()
    calls.clear()
    st = _toy(tmp_path, s, calls).run(force=["a"])
    assert [x.action for x in st] == ["ran", "ran", "ran"]  # later stages follow a forced one
    calls.clear()
    st = _toy(tmp_path, s, calls).run(from_stage="b")
    assert [x.action for x in st] == ["skipped", "ran", "ran"]
    with pytest.raises(UserError, match="earlier stage a is out of date"):
        _toy(tmp_path, {"a": 9, "b": 1, "c": 1}, calls).run(from_stage="b")
    with pytest.raises(UserError, match="not a stage"):
        _toy(tmp_path, s, calls).run(force=["nope"])


# ------------------------------------------------------------------------------------------------ CLI input
def test_bad_inputs_are_one_line_exit_2(tmp_path, capsys):
    assert main(["reproduce", "--out", str(tmp_path / "r"), "--seeds", "a,b"]) == 2
    assert main(["reproduce", "--quick", "--out", str(tmp_path / "r"), "--force-stage", "bogus"]) == 2
    assert main(["reproduce", "--quick", "--out", str(tmp_path / "r"), "--seeds", "1,1"]) == 2
    assert main(["reproduce", "--quick", "--out", str(tmp_path / "r"), "--jobs", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4
    assert "--seeds 'a,b'" in err[0] and "'bogus' is not a stage" in err[1] and "repeats a seed" in err[2]
    assert "--jobs '0'" in err[3]
    assert not (tmp_path / "r" / "data").exists()


def test_parse_jobs():
    from conductor.commands.reproduce import parse_jobs

    assert parse_jobs("3", "tiny") == 3 and parse_jobs("auto", "quick") == 1
    assert parse_jobs("auto", "tiny") == max(1, min(2, os.cpu_count() or 1))
    for bad in ("0", "-1", "two"):
        with pytest.raises(UserError, match="--jobs"):
            parse_jobs(bad, "tiny")


def _module(root: Path, name: str, body: str) -> None:
    (root / f"{name}.py").write_text("import os, sys, time\n\ndef main(argv):\n" + body)


def test_run_modules_side_by_side_with_a_share_of_the_cores_each(tmp_path, monkeypatch):
    """Two jobs run at once (each sees the other's start file before it ends) with cpu_count // 2 threads."""
    from conductor.reproduce.stages import ModuleJob, run_modules

    _module(tmp_path, "side_job", """    me, other = argv
    open(me, "w").write(os.environ.get("OMP_NUM_THREADS", "unset"))
    t0 = time.time()
    while not os.path.exists(other):  # only finishes once the other job has started too
        if time.time() - t0 > 60:
            return 1
        time.sleep(0.05)
    print("saw", other)
    return 0
""")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    a, b = tmp_path / "a.started", tmp_path / "b.started"
    done = []
    jobs = [ModuleJob("side_job", [a, b], tmp_path / "logs" / "a.log", "job a", lambda: done.append("job a")),
            ModuleJob("side_job", [b, a], tmp_path / "logs" / "b.log", "job b", lambda: done.append("job b"))]
    run_modules(jobs, parallel=2)
    assert sorted(done) == ["job a", "job b"]
    want = str(max(1, (os.cpu_count() or 1) // 2))
    assert a.read_text() == want and b.read_text() == want
    assert f"saw {b}" in (tmp_path / "logs" / "a.log").read_text()


def test_run_modules_failure_is_one_line_and_starts_nothing_more(tmp_path, monkeypatch):
    from conductor.reproduce.stages import ModuleJob, run_modules

    _module(tmp_path, "fail_job", """    print("first line")
    print("boom: the thing went wrong")
    return 3
""")
    _module(tmp_path, "ok_job", """    open(argv[0], "w").write("ran")
    return 0
""")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    never = tmp_path / "never.txt"
    jobs = [ModuleJob("fail_job", [], tmp_path / "f.log", "job f"), ModuleJob("fail_job", [], tmp_path / "g.log", "job g"),
            ModuleJob("ok_job", [never], tmp_path / "o.log", "job o")]
    with pytest.raises(UserError) as e:
        run_modules(jobs, parallel=2)
    msg = str(e.value)
    assert "\n" not in msg and "failed (exit 3)" in msg and "boom: the thing went wrong" in msg
    assert msg.startswith("job f") or msg.startswith("job g")
    assert not never.exists()  # the third job never started after a failure


def test_run_modules_ctrl_c_stops_the_running_jobs(tmp_path, monkeypatch):
    """An interrupt while jobs run side by side (here raised when the quick job ends) terminates the slow one."""
    from conductor.reproduce.stages import ModuleJob, run_modules

    _module(tmp_path, "pid_job", """    open(argv[0], "w").write(str(os.getpid()))
    t0 = time.time()
    while not all(os.path.exists(f) for f in argv[2:]) and time.time() - t0 < 60:  # wait for the other's pid file
        time.sleep(0.05)
    time.sleep(float(argv[1]))
    return 0
""")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    quick, slow = tmp_path / "quick.pid", tmp_path / "slow.pid"
    def interrupt():
        raise KeyboardInterrupt

    jobs = [ModuleJob("pid_job", [slow, 120], tmp_path / "s.log", "slow"),
            # the quick job ends 0.5 s after the slow one has written its pid, however late that one started
            ModuleJob("pid_job", [quick, 0.5, slow], tmp_path / "q.log", "quick", interrupt)]
    with pytest.raises(KeyboardInterrupt):
        run_modules(jobs, parallel=2)
    pid = int(slow.read_text())
    time.sleep(0.2)
    with pytest.raises(ProcessLookupError):  # terminated and reaped, not left running for 2 minutes
        os.kill(pid, 0)


def test_paper_preset_fails_fast_naming_missing_inputs(tmp_path, capsys):
    csv = tmp_path / "esc50.csv"
    csv.write_text("filename,fold,target,category\n")
    rc = main(["reproduce", "--preset", "paper", "--out", str(tmp_path / "p"), "--esc50", str(csv),
               "--audioldm", str(tmp_path / "nope")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    for flag in ("--clap-init", "--audiocaps ", "--clotho", "--positive", "--vggish-weights", "--panns-weights"):
        assert flag in err[0]
    assert "--audioldm " + str(tmp_path / "nope") + " does not exist" in err[0]
    assert "--esc50" not in err[0]  # given and present
    assert not (tmp_path / "p").exists()


def test_paper_dry_run_prints_the_plan(tmp_path, capsys):
    csv = tmp_path / "esc50.csv"
    csv.write_text("filename,fold,target,category\n")
    rc = main(["reproduce", "--preset", "paper", "--out", str(tmp_path / "p"), "--dry-run", "--seeds", "0,1",
               "--esc50", str(csv), "--clap-init", "laion/clap-htsat-unfused", "--num-processes", "4"])
    out = capsys.readouterr().out
    assert rc == 0 and not (tmp_path / "p").exists()
    stages = re.findall(r"^## \d+\. (\w+):", out, flags=re.M)
    assert stages == ["data", "clap", "clap_eval", "ldm", "generate", "score", "study"]
    assert "missing inputs" in out and "<--audiocaps>" in out and "<--clap-init>" not in out
    lines = out.splitlines()
    train = [ln for ln in lines if " tclap.cli train " in ln]
    assert len(train) == 4  # 2 seeds x (T-CLAP, baseline)
    assert all("accelerate.commands.launch" in ln and "--num_processes 4" in ln for ln in train)
    assert sum("--lambda-t 0.5" in ln for ln in train) == 2 and sum("--lambda-t 0 " in ln for ln in train) == 2
    assert all("--mix-ratio 1:4" in ln and "--init laion/clap-htsat-unfused" in ln for ln in train)
    assert sum("audioldm_cond.train.cli" in ln for ln in lines) == 4
    assert sum(" eval_gen.cli score " in ln for ln in lines) == 4
    assert any("demo.cli validate" in ln for ln in lines)


# ------------------------------------------------------------------------------------------------ end to end
STAGES = ["data", "clap", "clap_eval", "ldm", "generate", "score", "study", "report"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One --quick run, killed in the score stage (after scoring one folder), then re-run to the end."""
    import conductor.reproduce.stages as stages

    out = tmp_path_factory.mktemp("repro") / "run"
    real = stages.run_module
    seen = {"eval": 0}

    def interrupting(module, args, log_path, what):
        if module == "eval_gen.cli":
            seen["eval"] += 1
            if seen["eval"] == 2:
                raise KeyboardInterrupt  # as if the user pressed Ctrl-C during the second scoring job
        return real(module, args, log_path, what)

    argv = ["reproduce", "--quick", "--out", str(out), "--quiet"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(stages, "run_module", interrupting)
        rc1 = main(argv)
    after_interrupt = {n: (out / n / DONE_FILE).stat().st_mtime_ns for n in STAGES if (out / n / DONE_FILE).exists()}
    ceiling_mtime = (out / "score" / "ceiling" / "scores.json").stat().st_mtime_ns
    rc2 = main(argv)
    return {"out": out, "rc1": rc1, "rc2": rc2, "after_interrupt": after_interrupt, "ceiling_mtime": ceiling_mtime}


@pytest.mark.slow
def test_quick_run_interrupted_then_resumed(quick_run):
    out = quick_run["out"]
    assert quick_run["rc1"] == 130 and quick_run["rc2"] == 0
    # the stages finished before the interruption were not redone by the re-run
    assert set(quick_run["after_interrupt"]) == {"data", "clap", "clap_eval", "ldm", "generate"}
    for name, mtime in quick_run["after_interrupt"].items():
        assert (out / name / DONE_FILE).stat().st_mtime_ns == mtime, name
    # the interrupted stage resumed: the folder it had scored was kept, not re-scored
    assert (out / "score" / "ceiling" / "scores.json").stat().st_mtime_ns == quick_run["ceiling_mtime"]
    done = json.loads((out / "score" / DONE_FILE).read_text())
    assert done["summary"]["scored"] == 3
    for name in STAGES:
        assert (out / name / DONE_FILE).exists(), name


@pytest.mark.slow
def test_quick_run_outputs(quick_run):
    out = quick_run["out"]
    res = json.loads((out / "results.json").read_text())
    assert res["preset"] == "quick" and res["seeds"] == [0]
    prompts = [json.loads(ln) for ln in (out / "data" / "prompts.jsonl").read_text().splitlines()]
    assert len(prompts) == 4
    for system in ("baseline", "tclap"):
        gen = out / "generate" / "seed0" / system
        assert sorted(p.stem for p in gen.glob("*.wav")) == sorted(p["id"] for p in prompts)
        for k in ("t_classify_t2a", "t_classify_a2t", "t_classify_t2a_audio_blind", "r1_t2a", "zero_shot_top1"):
            v = res["clap"][system][k]["mean"]
            assert v is not None and 0.0 <= v <= 100.0
        metrics = json.loads((out / "clap_eval" / "seed0" / system / "metrics.json").read_text())
        assert res["clap"][system]["t_classify_a2t"]["mean"] == metrics["t_classify_a2t"]
        scores = json.loads((out / "score" / "seed0" / system / "scores.json").read_text())
        assert res["generation"][system]["fad"]["mean"] == scores["metrics"]["fad"]["value"]
        assert res["generation"][system]["order_detector"]["mean"] == pytest.approx(
            100 * scores["metrics"]["order_detector"]["value"])
        # the likelihood order probe of the UNet ran on the real held-out clips that have a swapped caption
        probe = json.loads((out / "score" / "seed0" / f"{system}-probe" / "order_probe.json").read_text())
        (p,) = probe.values()
        wins = sum(row["prefers_order"] for row in p["items"])
        assert 1 <= p["n_items"] <= 4 and p["order_preference"] == pytest.approx(100 * wins / p["n_items"])
        assert res["generation"][system]["unet_order_preference"]["mean"] == p["order_preference"]
    # the detector scores real held-out clips: its ceiling is a real number, not a placeholder
    assert 0.0 <= res["detector_ceiling"]["order_detector"] <= 100.0
    # a smoke run is too small for the claims that are tests: 4 pairs, 12 captions
    assert res["order_claim"]["verdict"] == "not shown" and res["order_claim"]["n_pairs"] <= 4
    assert res["retrieval_claim"]["verdict"] == "not shown" and res["retrieval_captions"] == {
        "seed0/baseline": 12, "seed0/tclap": 12}
    # claims are derived from the table values
    c = res["clap"]
    assert res["checks"]["tclap_above_baseline_t_classify_t2a"] == (
        c["tclap"]["t_classify_t2a"]["mean"] > c["baseline"]["t_classify_t2a"]["mean"])
    # figures exist and are PNGs
    figs = [f for files in res["figures"].values() for f in files]
    assert len(figs) >= 9 + 1 + 2
    for f in figs:
        assert (out / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the study validates and names both systems' clips
    import yaml

    study = yaml.safe_load((out / "study" / "study.yaml").read_text())
    assert [s["name"] for s in study["systems"]] == ["AudioLDM_L", "AudioLDM_T"]
    assert len(study["prompts"]) == 4
    assert "ok (2 systems x 4 prompts" in (out / "study" / "logs" / "validate.log").read_text()


def _numbers(obj) -> set[str]:
    out: set[str] = set()
    if isinstance(obj, dict):
        for v in obj.values():
            out |= _numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            out |= _numbers(v)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        out.add(f"{obj:.2f}")
    return out


@pytest.mark.slow
def test_report_numbers_are_in_results_json(quick_run):
    out = quick_run["out"]
    md = (out / "report.md").read_text()
    known = _numbers(json.loads((out / "results.json").read_text()))
    cells = 0
    for line in md.splitlines():
        if not line.startswith("| ") or line.startswith("| model") or line.startswith("| stage"):
            continue
        for cell in line.strip("|").split("|")[1:]:
            for num in re.findall(r"-?\d+\.\d+", cell):
                cells += 1
                assert num in known, f"{num} in report.md row {line!r} is not in results.json"
    assert cells > 60
    for section in ("Table 1 analogue", "Table 2 analogue", "Table 3 analogue", "Table 4 analogue"):
        assert section in md
    for fig in re.findall(r"\]\(([^)]+\.png)\)", md):
        assert (out / fig).is_file()


@pytest.mark.slow
def test_rerun_skips_everything(quick_run, capsys):
    out = quick_run["out"]
    before = {n: (out / n / DONE_FILE).stat().st_mtime_ns for n in STAGES}
    assert main(["reproduce", "--quick", "--out", str(out), "--quiet"]) == 0
    assert "0 stage(s) ran" in capsys.readouterr().out
    assert {n: (out / n / DONE_FILE).stat().st_mtime_ns for n in STAGES} == before
    assert os.path.getsize(out / "report.md") > 0


def test_ldm_stage_configs_come_from_the_audioldm_recipe(tmp_path):
    """The reproduction's AudioLDM runs are the AudioLDM recipe's TrainConfigs (its own builders), not re-typed
    flags: a recipe setting reaches the run, and the config written for each run loads back as a TrainConfig."""
    import dataclasses

    from audioldm_cond.train.config import TrainConfig
    from conductor.recipes.audioldm import RecipeConfig
    from conductor.reproduce.config import make_config
    from conductor.reproduce.layout import Paths
    from conductor.reproduce.stages import ldm_train_configs

    cfg = make_config("tiny", (0, 1))
    assert isinstance(cfg.ldm, RecipeConfig)
    cfg.ldm = dataclasses.replace(cfg.ldm, ldm_lr=3e-4, prediction_type="epsilon")
    runs = ldm_train_configs(cfg, Paths(tmp_path), tmp_path / "ldm")
    assert sorted(runs) == ["seed0-baseline", "seed0-tclap", "seed1-baseline", "seed1-tclap", "vae"]
    for name, tc in runs.items():
        assert TrainConfig.from_dict(tc.to_dict()) == tc
        if name != "vae":
            assert tc.optim.lr == 3e-4 and tc.ldm.prediction_type == "epsilon" and tc.ldm.unet == cfg.ldm.ldm_unet
            assert tc.seed == int(name[4]) and tc.optim.steps == cfg.ldm.ldm_steps == 5000
            assert tc.clap.endswith(f"tiny-{name.split('-')[1]}")
    assert runs["vae"].ema_decay == 0.0 and runs["vae"].tiny_kwargs == cfg.ldm.arch


@pytest.mark.slow
def test_quick_run_with_jobs_side_by_side(tmp_path):
    """--jobs 2: the fine-tunes, UNets, generations and scorings run two at a time and every stage completes."""
    out = tmp_path / "run"
    assert main(["reproduce", "--quick", "--jobs", "2", "--out", str(out), "--quiet"]) == 0
    for name in STAGES:
        assert (out / name / DONE_FILE).exists(), name
    prompts = [json.loads(ln) for ln in (out / "data" / "prompts.jsonl").read_text().splitlines()]
    for system in ("baseline", "tclap"):
        assert (out / "clap" / "seed0" / f"smoke-{system}" / "config.json").is_file()  # a smoke run's names
        assert (out / "ldm" / "seed0" / system / "final" / "model_index.json").is_file()
        assert len(list((out / "generate" / "seed0" / system).glob("*.wav"))) == len(prompts)
        assert (out / "score" / "seed0" / system / "scores.json").is_file()
    assert json.loads((out / "score" / DONE_FILE).read_text())["summary"]["scored"] == 3


def test_report_flags_silent_generated_clips():
    """A scored folder with near-silent clips (eval-gen's verdict, judged before any gain) is a warning line in
    report.md, not a silent table of noise scores."""
    from conductor.reproduce.report import _silence_notes

    res = {"generation_counts": {
        "seed0/baseline": {"n_gen": 4, "silent": {"gen": ["a", "b", "c", "d"], "ref": []}, "silence_threshold_dbfs": -60.0},
        "seed0/tclap": {"n_gen": 4, "silent": {"gen": [], "ref": []}, "silence_threshold_dbfs": -60.0}}}
    lines = _silence_notes(res)
    assert len([ln for ln in lines if ln]) == 1
    assert "4 of 4 generated clips of `seed0/baseline` are silent or near-silent (peak below -60 dBFS" in lines[0]
    assert _silence_notes({"generation_counts": {"seed0/tclap": res["generation_counts"]["seed0/tclap"]}}) == []


def test_quick_preset_names_its_models_smoke_and_its_report_says_so():
    """--preset quick trains for a few steps: its CLAPs are smoke-baseline / smoke-tclap (never the shipped
    tiny-* names), and its report says in its title and first lines that its numbers mean nothing (issue 21)."""
    from conductor.reproduce.config import make_config
    from conductor.reproduce.layout import Paths, model_prefix
    from conductor.reproduce.report import aggregate, markdown

    quick, tiny = make_config("quick"), make_config("tiny")
    assert quick.recipe_config(0).export_prefix == "smoke" and tiny.recipe_config(0).export_prefix == "tiny"
    assert Paths(Path("/r"), model_prefix("quick")).clap(0, "tclap") == Path("/r/clap/seed0/smoke-tclap")
    assert Paths(Path("/r"), model_prefix("tiny")).clap(0, "baseline") == Path("/r/clap/seed0/tiny-baseline")
    none = aggregate({0: None})
    res = {"preset": "quick", "seeds": [0], "checks": {k: None for k in (
               "tclap_above_baseline_t_classify_t2a", "tclap_above_baseline_t_classify_a2t",
               "audioldm_t_above_audioldm_l_order_detector")},
           "clap": {m: {k: none for k in ("r1_t2a", "r5_t2a", "r10_t2a", "r1_a2t", "r5_a2t", "r10_a2t",
                                           "zero_shot_top1", "t_classify_t2a", "t_classify_a2t",
                                           "t_classify_t2a_audio_blind")} for m in ("baseline", "tclap")},
           "generation": {m: {k: none for k in ("kl_softmax", "fad", "kad", "clap_score", "order_detector",
                                                 "order_clap", "unet_order_preference")} for m in ("baseline", "tclap")},
           "detector_ceiling": {"order_detector": None, "order_clap": None}, "generation_counts": {},
           "study": "s.yaml", "stage_seconds_last_run": {"data": 1.0, "report": 2.5}}
    md = markdown(res, {})
    head = md.splitlines()
    assert head[0] == "# T-CLAP reproduction (quick preset): a smoke run, its numbers mean nothing"
    assert "Smoke run (`--preset quick`)" in head[2] and "`smoke-baseline` and `smoke-tclap`" in head[2]
    assert "| report | 2.50 |" in md  # the report stage is in the stage-times table
    res["preset"] = "tiny"
    assert "smoke" not in markdown(res, {}).lower()


def test_paper_preset_says_a_missing_clap_init_folder_does_not_exist(tmp_path, monkeypatch):
    """``--clap-init clap-htsat-unfused/`` (a folder, by its trailing /) that is not there is a missing input, not a
    hub id; ``laion/clap-htsat-unfused`` still is one (issue 21)."""
    import argparse

    from conductor.reproduce.paper import PAPER_INPUTS, check_inputs

    monkeypatch.chdir(tmp_path)
    args = argparse.Namespace(**{dest: "x" for dest, _, _ in PAPER_INPUTS.values()})
    (tmp_path / "x").write_text("")
    args.clap_init = "clap-htsat-unfused/"
    assert check_inputs(args) == ["--clap-init clap-htsat-unfused/ does not exist"]
    args.clap_init = "laion/clap-htsat-unfused"
    assert check_inputs(args) == []


def test_stage_arguments_are_checked_by_the_called_cli_before_any_process_starts(tmp_path):
    """A flag the called CLI does not know is one UserError naming it, before a subprocess runs; the arguments the
    score stage builds are accepted as they are."""
    from basekit.errors import UserError
    from conductor.reproduce.stages import ModuleJob, check_cli_args, run_modules

    with pytest.raises(UserError, match="eval_gen.cli refuses .*--no-such-flag"):
        run_modules([ModuleJob("eval_gen.cli", ["score", "--gen", "g", "--ref", "r", "--out", "o", "--no-such-flag"],
                               tmp_path / "log.txt", "scoring")])
    assert not (tmp_path / "log.txt").exists()  # nothing ran
    check_cli_args("eval_gen.cli", ["score", "--gen", "g", "--ref", "r", "--out", "o"])
    with pytest.raises(UserError, match="audioldm_cond.cli refuses"):
        check_cli_args("audioldm_cond.cli", ["generate", "a beep", "--out", "o", "--stepz", "3"])
    with pytest.raises(UserError, match="demo.cli refuses"):
        check_cli_args("demo.cli", ["validate"])

