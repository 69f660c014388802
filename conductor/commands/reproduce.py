"""``tclap reproduce``: the paper's pipeline end to end, resumable stage by stage.

    tclap reproduce --preset tiny --out runs/repro                 # built-in bank, 2 CPU cores
    tclap reproduce --preset quick --out /tmp/repro                # smoke run (minutes)
    tclap reproduce --preset paper --out runs/paper --clap-init laion/clap-htsat-unfused --esc50 ESC-50/meta/esc50.csv \\
        --audiocaps ac_train.jsonl --audiocaps-test ac_test.jsonl --clotho clotho_train.jsonl --positive auto_acd.jsonl \\
        --audioldm audioldm-s-full-v2/ --vggish-weights vggish.pth --panns-weights Cnn14_mAP=0.431.pth --dry-run

Stages: data, clap, clap_eval, ldm, generate, score, study, report. A finished stage is skipped while its
settings and inputs are unchanged; ``--force-stage S`` re-runs S (and, as their input changed, the stages
after it); ``--from-stage S`` re-runs S and everything after it, requiring the earlier stages to be done.
Outputs: ``OUT/report.md``, ``OUT/report/figures/*.png``, ``OUT/results.json``, ``OUT/study/study.yaml``.
"""

from __future__ import annotations

import argparse

from basekit.errors import UserError
from conductor.recipes.clap import default_jobs
from conductor.reproduce.config import make_config, parse_seeds
from conductor.reproduce.paper import add_paper_arguments, run_paper
from conductor.reproduce.pipeline import Pipeline
from conductor.reproduce.stages import build_stages


def add_arguments(p: argparse.ArgumentParser) -> None:

    p.add_argument("--preset", choices=("tiny", "quick", "paper"), default="tiny",
                   help="tiny: the miniature on the built-in bank (default); quick: a smoke run; paper: real data")
    p.add_argument("--out", required=True, help="run folder (re-run the same command to resume)")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default 0; 0,1,2 for the paper's three-seed spread)")
    p.add_argument("--quick", action="store_true", help="same as --preset quick")
    p.add_argument("--from-stage", default=None, metavar="STAGE",
                   help="re-run STAGE and every later stage (earlier ones must be done)")
    p.add_argument("--force-stage", action="append", default=[], metavar="STAGE",
                   help="re-run STAGE even if it is up to date (repeatable); later stages follow")
    p.add_argument("--dry-run", action="store_true", help="print the plan of stages and commands, run nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--jobs", default="auto",
                   help="independent trainings / generations run at once, each in its own process with its share "
                        "of the cores (auto: 2 on a machine with 2 or more cores, 1 for --preset quick, whose "
                        "steps are too short to pay for the extra process starts)")
    add_paper_arguments(p.add_argument_group("paper preset inputs"))


def parse_jobs(text: str, preset: str) -> int:
    """``--jobs``: ``auto`` or a positive integer; a bad value is a one-line :class:`UserError`."""

    if text == "auto":
        return 1 if preset == "quick" else default_jobs()
    try:
        jobs = int(text)
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise UserError(f"--jobs {text!r}: give a positive integer or 'auto'")
    return jobs


def run(args: argparse.Namespace) -> int:
    from pathlib import Path  # noqa: PLC0415


    preset = "quick" if args.quick else args.preset
    if args.quick and args.preset == "paper":
        raise UserError("--quick and --preset paper contradict each other; choose one")
    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder")
    if preset == "paper":

        return run_paper(args, out, seeds or (0, 1, 2))

    cfg = make_config(preset, seeds)
    if preset == "quick":
        print("reproduce: --preset quick is a smoke run (a few optimiser steps; its models are named smoke-*): it "
              "checks that every stage runs, its numbers mean nothing (--preset tiny is the miniature reproduction)")
    pipe = Pipeline(out, build_stages(cfg, out, quiet=args.quiet, jobs=parse_jobs(args.jobs, preset)))
    pipe.check_stage_names(args.force_stage, "--force-stage")
    if args.from_stage is not None:
        pipe.check_stage_names([args.from_stage], "--from-stage")
    if args.dry_run:
        for i, s in enumerate(pipe.stages, 1):
            print(f"{i}. {s.name}: {s.description}")
        return 0
    statuses = pipe.run(force=args.force_stage, from_stage=args.from_stage)
    ran = [s.name for s in statuses if s.action != "skipped"]
    print(f"reproduce: done ({len(ran)} stage(s) ran: {', '.join(ran) or 'none'}); report: {out / 'report.md'}")
    return 0
