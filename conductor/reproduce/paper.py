"""``--preset paper``: the same stages at real scale, as the commands of the four CLIs (multi-GPU via accelerate).

The inputs are real data and weights that cannot be fetched here, so the preset first checks them and
stops with one line naming every missing one (exit 2). ``--dry-run`` prints the plan (stage by stage,
the exact commands) with placeholders for inputs not given, so it can be read, edited and run by hand on a
cluster. Without ``--dry-run`` and with every input present, the plan's commands run in order under the
same resumable stage runner as the tiny preset (each stage's key is the hash of its commands).

Paper settings (design.md): T-CLAP fine-tunes LAION-CLAP for 30k steps, batch 512, lr 1e-4, 10k warm-up,
λ = 0.5, temporal : positive-only = 1 : 4 in each batch; AudioLDM trained per CLAP with the same settings.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from basekit.errors import UserError
from basekit.atomic import atomic_write_text
from conductor.reproduce.pipeline import Pipeline, Stage
from tclap.data.manifest import read_manifest

# flag -> (dest, metavar, what it is). All are required for a real run.
PAPER_INPUTS = {
    "--clap-init": ("clap_init", "HUB_ID|DIR|PT", "LAION-CLAP to fine-tune: laion/clap-htsat-unfused, a ClapModel dir or a .pt"),
    "--esc50": ("esc50", "CSV", "ESC-50's meta/esc50.csv (audio beside it), for ESC-mixed-up"),
    "--audiocaps": ("audiocaps", "MANIFEST", "AudioCaps train manifest with negative captions (tclap negatives)"),
    "--audiocaps-test": ("audiocaps_test", "MANIFEST", "AudioCaps test manifest (retrieval, T-Classify, prompts)"),
    "--clotho": ("clotho", "MANIFEST", "Clotho train manifest with negative captions"),
    "--positive": ("positive", "MANIFEST", "large positive-only manifest (Auto-ACD in the paper)"),
    "--audioldm": ("audioldm", "DIR", "diffusers AudioLDM directory (e.g. a copy of cvssp/audioldm-s-full-v2)"),
    "--vggish-weights": ("vggish_weights", "PTH", "torchvggish weights for FAD (eval-gen --backend vggish)"),
    "--panns-weights": ("panns_weights", "PTH", "PANNs Cnn14_mAP=0.431.pth for KL (eval-gen --classifier)"),
}


def add_paper_arguments(g) -> None:
    for flag, (dest, metavar, help_text) in PAPER_INPUTS.items():
        g.add_argument(flag, dest=dest, metavar=metavar, default=None, help=f"paper preset: {help_text}")
    g.add_argument("--num-processes", type=int, default=8, help="paper preset: GPUs for accelerate launch (default 8)")
    g.add_argument("--num-machines", type=int, default=1, help="paper preset: machines for accelerate launch")
    g.add_argument("--ldm-steps", type=int, default=500_000, help="paper preset: AudioLDM steps (paper: 500k)")


def _script(name: str) -> str:
    """A console script of this installation (beside the running Python), e.g. ``audioldm-cond``."""
    p = Path(sys.executable).with_name(name)
    return str(p) if p.exists() else name


def _looks_like_hub_id(s: str) -> bool:
    from tclap.models.factory import looks_like_local_path  # noqa: PLC0415 (loads torch; the reproduction planner stays light)

    return s.count("/") == 1 and not looks_like_local_path(s) and not Path(s).exists()


def check_inputs(args: argparse.Namespace) -> list[str]:
    """One entry per missing or unreadable input: ``"--flag (what it is)"`` / ``"--flag PATH does not exist"``."""
    problems = []
    for flag, (dest, _, what) in PAPER_INPUTS.items():
        v = getattr(args, dest, None)
        if not v:
            problems.append(f"{flag} ({what})")
        elif not Path(v).exists() and not (dest == "clap_init" and _looks_like_hub_id(v)):
            problems.append(f"{flag} {v} does not exist")
    return problems


@dataclass
class PlanStage:
    name: str
    commands: list[list[str]] = field(default_factory=list)
    note: str = ""


def build_plan(args: argparse.Namespace, out: Path, seeds: Sequence[int]) -> list[PlanStage]:
    """The paper preset's stages and commands (inputs not given appear as ``<--flag>`` placeholders)."""
    def inp(dest: str) -> str:
        flag = next(f for f, (d, _, _) in PAPER_INPUTS.items() if d == dest)
        return str(getattr(args, dest, None) or f"<{flag}>")

    py = sys.executable
    launch = [py, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(args.num_processes),
              "--num_machines", str(args.num_machines), "-m"]
    o = str(out)
    esc_train, esc_test = f"{o}/data/esc_mixed_up_train", f"{o}/data/esc_mixed_up_test"
    data = PlanStage("data", [
        [py, "-m", "tclap.cli", "mixup", "--bank", inp("esc50"), "--split", "train", "--n", "20000", "--seconds", "10",
         "--test-folds", "5", "--workers", "8", "--out", esc_train, "--quiet"],
        [py, "-m", "tclap.cli", "mixup", "--bank", inp("esc50"), "--split", "heldout", "--n", "2000", "--seconds", "10",
         "--events", "2", "--overlap-prob", "0", "--test-folds", "5", "--out", esc_test, "--quiet"],
    ], note="ESC-mixed-up (test fold 5 held out); AudioCaps/Clotho negatives come from `tclap negatives`")
    clap = PlanStage("clap", note="T-CLAP (λ=0.5) and the same run with λ=0 as the baseline, per seed")
    clap_eval = PlanStage("clap_eval", note="Tables 1-3: retrieval, zero-shot, T-Classify on each test set")
    ldm = PlanStage("ldm", note="AudioLDM_L and AudioLDM_T: the same AudioLDM trained on each CLAP")
    gen = PlanStage("generate", note="AudioCaps test prompts, both systems")
    score = PlanStage("score", note="Table 4: KL (PANNs), FAD/KAD (VGGish), CLAP score, order accuracy")
    for s in seeds:
        for system, lam in (("tclap", "0.5"), ("baseline", "0")):
            run = f"{o}/clap/seed{s}/{system}"
            clap.commands.append(launch + [
                "tclap.cli", "train", "--preset", "paper", "--init", inp("clap_init"), "--train",
                f"{esc_train}/manifest.jsonl", "--train", inp("audiocaps"), "--train", inp("clotho"), "--positive",
                inp("positive"), "--mix-ratio", "1:4", "--lambda-t", lam, "--negative-audio", "--mixed-precision",
                "bf16", "--seed", str(s), "--out", run, "--resume", "--quiet"])
            for name, data_path in (("esc_mixed_up", f"{esc_test}/manifest.jsonl"), ("audiocaps", inp("audiocaps_test"))):
                clap_eval.commands.append([py, "-m", "tclap.cli", "evaluate", "--model", f"{run}/model", "--data",
                                           data_path, "--out", f"{o}/clap_eval/seed{s}/{system}/{name}", "--quiet"])
            ldm_run = f"{o}/ldm/seed{s}/{system}"
            ldm.commands.append(launch + [
                "audioldm_cond.train.cli", "--stage", "ldm", "--model", inp("audioldm"), "--clap", f"{run}/model",
                "--cond-source", "text", "--scaling-factor", "keep", "--train", inp("audiocaps"), "--val",
                inp("audiocaps_test"), "--steps", str(args.ldm_steps), "--batch-size", "64", "--lr", "3e-5",
                "--mixed-precision", "bf16", "--ckpt-every", "5000", "--val-every", "50000", "--val-backend",
                "clap", "--seed", str(s), "--out", ldm_run, "--resume", "--quiet"])
            gen_out = f"{o}/generate/seed{s}/{system}"
            gen.commands.append([_script("audioldm-cond"), "generate", "--prompts", f"{o}/data/prompts.jsonl",
                                 "--model", f"{ldm_run}/final", "--steps", "200", "--guidance", "2.5", "--seed", str(s),
                                 "--device", "cuda", "--out", gen_out, "--quiet"])
            score.commands.append([py, "-m", "eval_gen.cli", "score", "--gen", gen_out, "--ref",
                                   f"{o}/data/reference", "--prompts", f"{o}/data/prompts.jsonl", "--backend", "vggish",
                                   "--weights", inp("vggish_weights"), "--classifier", "panns-cnn14",
                                   "--classifier-weights", inp("panns_weights"), "--clap-model",
                                   f"{o}/clap/seed{s}/tclap/model", "--metrics", "fad,kad,kl,clap,order",
                                   "--device", "cuda", "--out", f"{o}/score/seed{s}/{system}", "--quiet"])
    data.commands.append([py, "-m", "conductor.reproduce.paper", "prompts", inp("audiocaps_test"), f"{o}/data"])
    study = PlanStage("study", [[py, "-m", "conductor.reproduce.paper", "study", o, str(seeds[0])],
                                [py, "-m", "demo.cli", "validate", f"{o}/study/study.yaml"]],
                      note="MOS study of the first seed's clips; then `mos serve` it")
    return [data, clap, clap_eval, ldm, gen, score, study]


def format_plan(plan: list[PlanStage], missing: list[str]) -> str:
    lines = ["# tclap reproduce --preset paper: plan", ""]
    if missing:
        lines += [f"# missing inputs (placeholders below): {'; '.join(missing)}", ""]
    for i, st in enumerate(plan, 1):
        lines.append(f"## {i}. {st.name}: {st.note}")
        lines += [shlex.join(c) for c in st.commands]
        lines.append("")
    return "\n".join(lines)


def run_paper(args: argparse.Namespace, out: Path, seeds: Sequence[int]) -> int:

    missing = check_inputs(args)
    plan = build_plan(args, out, seeds)
    if args.dry_run:
        print(format_plan(plan, missing))
        return 0
    if missing:
        raise UserError(f"--preset paper needs real data and weights; missing: {'; '.join(missing)} "
                        "(see --dry-run for the plan)")

    def runner(cmds: list[list[str]]):
        def run(sdir: Path) -> dict:
            for c in cmds:
                print("$ " + shlex.join(c), flush=True)
                rc = subprocess.run(c).returncode
                if rc != 0:
                    raise UserError(f"stage command failed (exit {rc}): {shlex.join(c)[:300]}")
            return {"commands": len(cmds)}
        return run

    stages = [Stage(st.name, runner(st.commands), st.commands, (plan[i - 1].name,) if i else (), st.note)
              for i, st in enumerate(plan)]
    Pipeline(out, stages).run(force=args.force_stage, from_stage=args.from_stage)
    return 0


# ------------------------------------------------------------------------------------------------ helper steps
def write_prompts(manifest: str, data_dir: str) -> None:
    """AudioCaps test manifest -> ``prompts.jsonl`` (first caption per clip) and ``reference/<id>.<ext>`` links."""

    out = Path(data_dir)
    ref = out / "reference"
    ref.mkdir(parents=True, exist_ok=True)
    lines = []
    for it in read_manifest(manifest):
        pid = "".join(ch if ch.isalnum() or ch in "_.-" else "_" for ch in str(it["id"]))
        src = Path(it["audio"])
        link = ref / f"{pid}{src.suffix}"
        if not link.exists():
            link.symlink_to(src)
        neg = (it.get("negative_captions") or [None])[0]
        lines.append(json.dumps({"id": pid, "prompt": it["captions"][0], "negative_prompt": neg}))
    atomic_write_text(out / "prompts.jsonl", "\n".join(lines) + "\n")


def write_paper_study(out: str, seed: str) -> None:
    """The MOS study of the paper preset: AudioLDM_L vs AudioLDM_T clips of ``seed`` for the AudioCaps prompts."""
    import yaml  # noqa: PLC0415


    o = Path(out)
    prompts = [json.loads(ln) for ln in (o / "data" / "prompts.jsonl").read_text().splitlines() if ln.strip()]
    study = {"name": "tclap-reproduce-paper", "seed": int(seed),
             "systems": [{"name": "AudioLDM_L", "dir": f"../generate/seed{seed}/baseline"},
                         {"name": "AudioLDM_T", "dir": f"../generate/seed{seed}/tclap"}],
             "prompts": [{"id": p["id"], "text": p["prompt"]} for p in prompts],
             "clips_per_rater": min(20, 2 * len(prompts)), "min_ratings_per_clip": 5}
    atomic_write_text(o / "study" / "study.yaml", yaml.safe_dump(study, sort_keys=False))


if __name__ == "__main__":
    cmd, *rest = sys.argv[1:] or [""]
    if cmd == "prompts" and len(rest) == 2:
        write_prompts(*rest)
    elif cmd == "study" and len(rest) == 2:
        write_paper_study(*rest)
    else:
        raise SystemExit("usage: python -m conductor.reproduce.paper prompts MANIFEST DATA_DIR | study OUT SEED")
