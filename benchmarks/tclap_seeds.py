"""The issue's "must show" table: tiny-baseline vs tiny-tclap, mean ± std over seeds, with the target checks.

For each seed the embedded recipe (:mod:`conductor.recipes.clap`) runs into ``RUNS/clap_s{seed}``; a run
that already finished (its ``summary.json`` exists) is reused and an interrupted one resumes, so the
lead's existing runs are not trained again. Then it prints, for T-Classify T2A / A2T / audio-blind
control, R@1 both ways and zero-shot top-1, ``mean ± std`` (sample standard deviation, ddof = 1, over
the seeds) per model, and the targets of issue 3:

* T-CLAP T-Classify text-to-audio >= 85 and audio-to-text >= 75 (means);
* T-CLAP T2A >= 20 points above the baseline (mean of the per-seed differences);
* T-CLAP retrieval R@1 (each direction) at most 2 points below the baseline's (mean per-seed difference).

    python benchmarks/tclap_seeds.py --runs /work/runs [--seeds 0,1,2] [--no-run] [--out table.md]

``--continue-steps N`` measures a longer contrastive start: in each seed's run it fine-tunes T-CLAP and the
baseline again, both from that run's ``tiny-baseline`` (pre-training + an L_c fine-tune), for N steps with the
recipe's settings, into ``RUN/continue{N}/`` (resumable; a finished one is reused), and tabulates those.
``--wise ALPHA`` also evaluates the weight-space blend ``(1 − α)·baseline + α·T-CLAP`` of each seed's pair
(``tclap interpolate``) and checks the targets for it as the T-CLAP candidate. ``--unpaired positive`` fine-tunes
T-CLAP with the overlapping-event mix-ups (no negative caption) as L_c-only items instead of skipping them, into
``RUN/continue{N}-unpaired/``; the baseline (λ = 0 uses every item either way) is taken from ``RUN/continue{N}/``
when that one finished. ``--lambda-t W`` sets T-CLAP's L_t weight for the continued fine-tune (the folder gains
``-lambda{W}``).

    python benchmarks/tclap_seeds.py --runs /work/runs --pattern r3_s{seed} --continue-steps 1500 --wise 0.8
    python benchmarks/tclap_seeds.py --runs /work/runs --pattern r3_s{seed} --continue-steps 1500 --unpaired positive --lambda-t 1
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Sequence

from basekit.atomic import atomic_write_text
from basekit.errors import UserError, cli_entry

MODELS = ("tiny-baseline", "tiny-tclap")
WISE = "tiny-tclap-wise"
METRICS = (
    ("t_classify_t2a", "T-Classify T2A"),
    ("t_classify_a2t", "T-Classify A2T"),
    ("t_classify_t2a_audio_blind", "T2A audio-blind"),
    ("r1_t2a", "R@1 T2A"),
    ("r1_a2t", "R@1 A2T"),
    ("zero_shot_top1", "zero-shot top-1"),
)
RUN_PATTERN = "clap_s{seed}"


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1; 0 for a single value)."""
    n = len(values)
    if n == 0:
        raise UserError("no values to average: no seed has this metric")
    m = sum(values) / n
    if n == 1:
        return m, 0.0
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))


def load_summaries(runs: Path, seeds: Sequence[int], pattern: str = RUN_PATTERN) -> dict[int, dict]:
    """``{seed: summary}`` from ``runs/<pattern>/summary.json``; every run must use the same recipe settings."""
    out: dict[int, dict] = {}
    for seed in seeds:
        path = runs / pattern.format(seed=seed) / "summary.json"
        if not path.is_file():
            raise UserError(f"{path} is missing: run the recipe for seed {seed} (drop --no-run) or fix --runs")
        try:
            summary = json.loads(path.read_text())
            results = summary["results"]
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{path} is not a recipe summary ({exc}); re-run the recipe for seed {seed}") from None
        missing = [m for m in MODELS if m not in results]
        if missing:
            raise UserError(f"{path} has no results for {', '.join(missing)}; re-run the recipe for seed {seed}")
        out[seed] = summary
    configs = {s: {k: v for k, v in (sm.get("config") or {}).items() if k != "seed"} for s, sm in out.items()}
    first = next(iter(configs.values()), {})
    for s, c in configs.items():
        if c != first:
            diff = sorted(k for k in set(c) | set(first) if c.get(k) != first.get(k))
            raise UserError(f"seed {s}'s run used other recipe settings ({', '.join(diff)}) than seed {seeds[0]}'s; "
                            "a mean over seeds needs one recipe: re-run those seeds with the same settings")
    return out


def _models(summaries: dict[int, dict]) -> tuple[str, ...]:
    """The baseline, T-CLAP, then every other model that all seeds report (e.g. the interpolated model, or the
    recipe's un-blended fine-tune when it ships a blend), sorted by name."""
    if not summaries:
        return MODELS
    common = set.intersection(*(set(sm["results"]) for sm in summaries.values())) - set(MODELS)
    return MODELS + tuple(sorted(common))


def aggregate(summaries: dict[int, dict]) -> dict[str, dict[str, tuple[float, float, int]]]:
    """``{model: {metric: (mean, std, n_seeds)}}`` over the seeds that report the metric."""
    agg: dict[str, dict[str, tuple[float, float, int]]] = {}
    for model in _models(summaries):
        agg[model] = {}
        for key, _ in METRICS:
            vals = [sm["results"][model][key] for sm in summaries.values() if key in sm["results"][model]]
            if vals:
                agg[model][key] = (*mean_std(vals), len(vals))
    return agg


def _paired(summaries: dict[int, dict], key: str, model: str = "tiny-tclap") -> list[float]:
    """Per-seed ``model - baseline`` of ``key`` (seeds where both report it)."""
    out = []
    for sm in summaries.values():
        r = sm["results"]
        if key in r[model] and key in r["tiny-baseline"]:
            out.append(r[model][key] - r["tiny-baseline"][key])
    return out


def target_checks(summaries: dict[int, dict], model: str = "tiny-tclap") -> list[dict]:
    """The issue's targets for ``model`` as T-CLAP: ``[{"check", "value", "std", "target", "passed"}]``
    (value = mean over seeds)."""
    agg = aggregate(summaries)
    t = agg[model]
    checks = []

    def add(name: str, vals: tuple[float, float] | None, op: str, target: float) -> None:
        if vals is None:
            checks.append({"check": name, "value": None, "std": None, "target": f"{op} {target:g}", "passed": False})
            return
        m, s = vals
        ok = m >= target if op == ">=" else m <= target
        checks.append({"check": name, "value": m, "std": s, "target": f"{op} {target:g}", "passed": bool(ok)})

    add("T-CLAP T-Classify T2A", t["t_classify_t2a"][:2] if "t_classify_t2a" in t else None, ">=", 85)
    add("T-CLAP T-Classify A2T", t["t_classify_a2t"][:2] if "t_classify_a2t" in t else None, ">=", 75)
    gain = _paired(summaries, "t_classify_t2a", model)
    add("T2A gain over baseline (points)", mean_std(gain) if gain else None, ">=", 20)
    for key, label in (("r1_t2a", "R@1 T2A"), ("r1_a2t", "R@1 A2T")):
        drop = [-d for d in _paired(summaries, key, model)]  # baseline - tclap
        add(f"{label} drop vs baseline (points)", mean_std(drop) if drop else None, "<=", 2)
    return checks


def format_table(summaries: dict[int, dict]) -> str:
    """The Markdown report: the metric table and the target checks."""
    agg = aggregate(summaries)
    seeds = ", ".join(str(s) for s in summaries)
    lines = [f"Built-in held-out mix-ups, mean ± std over seeds {seeds} (percent).", "",
             "| model | " + " | ".join(label for _, label in METRICS) + " |",
             "|---|" + "---:|" * len(METRICS)]
    for model in _models(summaries):
        cells = []
        for key, _ in METRICS:
            v = agg[model].get(key)
            cells.append("n/a" if v is None else f"{v[0]:.1f} ± {v[1]:.1f}")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    for model in _models(summaries)[1:]:
        lines += ["", f"| target (issue 3), {model} as T-CLAP | value | goal | status |", "|---|---:|---|---|"]
        for c in target_checks(summaries, model):
            val = "n/a" if c["value"] is None else f"{c['value']:.1f} ± {c['std']:.1f}"
            lines.append(f"| {c['check']} | {val} | {c['target']} | {'pass' if c['passed'] else 'FAIL'} |")
    return "\n".join(lines) + "\n"


def continue_dir(run: Path, steps: int, unpaired: str = "skip", lambda_t: float | None = None) -> Path:
    return run / (f"continue{steps}" + ("-unpaired" if unpaired == "positive" else "")
                  + ("" if lambda_t is None else f"-lambda{lambda_t:g}"))


def continue_run(run: Path, steps: int, wise: float | None = None, quiet: bool = False, jobs: int = 1,
                 unpaired: str = "skip", lambda_t: float | None = None) -> Path:
    """Fine-tune T-CLAP and the baseline again from ``run/tiny-baseline`` for ``steps`` steps (the recipe's
    settings otherwise; T-CLAP's unpaired items as ``unpaired`` says, its L_t weight ``lambda_t`` when given),
    evaluate both (and their blend at ``wise``) into ``continue_dir(run, steps, unpaired, lambda_t)/summary.json``."""
    import dataclasses  # noqa: PLC0415

    from tclap.evaluation.runner import EvalConfig, evaluate  # noqa: PLC0415
    from tclap.interpolate import interpolate_models  # noqa: PLC0415
    from conductor.recipes.clap import RecipeConfig, _stage_cfg, _train_stages, positive_sets  # noqa: PLC0415

    cfg_file, start = run / "recipe_config.json", run / "tiny-baseline"
    if not cfg_file.is_file() or not (start / "config.json").is_file():
        raise UserError(f"{run} is not a finished recipe run (no recipe_config.json or tiny-baseline/); run the "
                        "recipe first (drop --no-run)")
    recorded = json.loads(cfg_file.read_text())
    recorded.setdefault("singles_per_class", 0)  # a run from before the single-event positives had none
    rc = dataclasses.replace(RecipeConfig(**recorded), unpaired=unpaired)
    if lambda_t is not None:
        rc = dataclasses.replace(rc, lambda_t=lambda_t)
    out = continue_dir(run, steps, unpaired, lambda_t)
    summary_file = out / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else None
    if summary is None or (wise is not None and summary["config"].get("wise_alpha") != wise):
        plain = continue_dir(run, steps) / "runs" / "baseline"
        if out != plain.parent.parent and (plain / "model" / "config.json").is_file():
            # λ = 0 trains on every item whatever `unpaired` says: the plain continuation's baseline is this one
            (out / "runs").mkdir(parents=True, exist_ok=True)
            link = out / "runs" / "baseline"
            if not link.exists():
                link.symlink_to(plain.resolve(), target_is_directory=True)
        manifest = run / "data" / "train" / "manifest.jsonl"
        stages = [("tclap", _stage_cfg(rc, str(start), steps, rc.finetune_lr, rc.lambda_t, rc.negative_audio)),
                  ("baseline", _stage_cfg(rc, str(start), steps, rc.finetune_lr, 0.0, False))]
        # the run's own positive-only set (none for runs from before it), as its fine-tunes had
        tcl, base = _train_stages(stages, out, manifest, quiet, jobs, positive_sets(rc, run))
        models = {"tiny-baseline": base, "tiny-tclap": tcl}
        if wise is not None:
            models[WISE] = interpolate_models(base, tcl, wise, out / "wise")
        ecfg = EvalConfig(heldout_mixes=rc.heldout_mixes)
        results = {}
        for name, model in models.items():
            res = evaluate(str(model), "builtin-heldout", out / "eval" / name, cfg=ecfg, cache_dir=out / "eval_cache",
                           quiet=quiet)
            results[name] = {k: v for k, v in res.items() if isinstance(v, float)}
        summary = {"config": {**dataclasses.asdict(rc), "start": "tiny-baseline", "continue_steps": steps,
                              "wise_alpha": wise}, "results": results}
        atomic_write_text(summary_file, json.dumps(summary, indent=2))
    return out


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--seeds {text!r}: give comma-separated integers, e.g. 0,1,2") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds {text!r}: give at least one seed, each once")
    return seeds


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", required=True, help="folder holding (or receiving) one recipe run per seed")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--pattern", default=RUN_PATTERN, help="run folder name per seed (default clap_s{seed})")
    p.add_argument("--no-run", action="store_true", help="only tabulate finished runs; never train")
    p.add_argument("--out", default=None, help="also write the Markdown table here (atomically)")
    p.add_argument("--continue-steps", type=int, default=None,
                   help="fine-tune both models again from each run's tiny-baseline for N steps, tabulate those")
    p.add_argument("--wise", type=float, default=None, help="with --continue-steps: also the blend at this alpha")
    p.add_argument("--jobs", type=int, default=1, help="fine-tunes side by side (--continue-steps)")
    p.add_argument("--unpaired", choices=("skip", "positive"), default="skip",
                   help="with --continue-steps: T-CLAP skips the overlapping-event mix-ups (the default here, as "
                        "the earlier recipe did) or trains L_c on them (the recipe's default now)")
    p.add_argument("--lambda-t", type=float, default=None,
                   help="with --continue-steps: T-CLAP's L_t weight (default: the recipe run's)")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    if a.unpaired != "skip" and a.continue_steps is None:
        raise UserError("--unpaired needs --continue-steps (it changes the continued T-CLAP fine-tune)")
    if a.lambda_t is not None and (a.continue_steps is None or not a.lambda_t > 0):
        raise UserError(f"--lambda-t {a.lambda_t:g}: give a weight > 0, with --continue-steps")
    if a.wise is not None and a.continue_steps is None:
        raise UserError("--wise needs --continue-steps (the blend is of the two continued fine-tunes)")
    if a.continue_steps is not None and a.continue_steps < 1:
        raise UserError(f"--continue-steps {a.continue_steps}: give 1 or more")
    seeds = parse_seeds(a.seeds)
    if "{seed}" not in a.pattern:
        raise UserError(f"--pattern {a.pattern!r} must contain {{seed}}")
    runs = Path(a.runs)
    if not a.no_run:
        from conductor.recipes.clap import RecipeConfig, run_recipe  # noqa: PLC0415

        for seed in seeds:
            run = runs / a.pattern.format(seed=seed)
            if (run / "summary.json").is_file():
                print(f"tclap_seeds: seed {seed}: reusing {run}")
                continue
            print(f"tclap_seeds: seed {seed}: running the recipe into {run} (resumes if interrupted)")
            run_recipe(RecipeConfig(seed=seed), run, quiet=a.quiet)
    pattern = a.pattern
    if a.continue_steps is not None:
        for seed in [] if a.no_run else seeds:
            continue_run(runs / a.pattern.format(seed=seed), a.continue_steps, a.wise, a.quiet, a.jobs, a.unpaired,
                         a.lambda_t)
        pattern = f"{a.pattern}/{continue_dir(Path(), a.continue_steps, a.unpaired, a.lambda_t).name}"
    table = format_table(load_summaries(runs, seeds, pattern))
    sys.stdout.write("\n" + table)
    if a.out:
        atomic_write_text(Path(a.out), table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
