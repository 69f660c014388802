"""The embedded models' recipe: ``python -m conductor.recipes.clap --out DIR [--seed 0]``.

Stages (each resumable; a finished stage is skipped on a re-run):

1. ``data``: ``n`` mix-ups of the clip bank's **training** clips (held-out ones never enter; see
   :func:`tclap.synth.instance_split` and docs/bank.md). ``banks`` (``--bank``, repeatable): the built-in
   procedural bank by default (the shipped models); ``--bank builtin --bank DIR`` trains on the union of the
   procedural events and a folder bank of recordings (``tclap bank build``), mix-ups pairing events of both.
2. ``pretrain``: a tiny CLAP from random init with L_c only.
2b. ``warm`` (only when ``warm_steps`` > 0): continue (2) with L_c only, a second schedule (warm-up, cosine);
   the start of both fine-tunes. A longer contrastive start is what lets L_t learn order without losing the
   events (measurements: docs/notes/clap-recipe.md).
3. ``tclap``: fine-tune (2b, else 2) with L_c + λ·L_t for ``finetune_steps`` -> **tiny-tclap**; with
   ``singles_per_class`` > 0 every batch mixes in single-event clips of the training instances as a
   positive-only set (1:4, :mod:`tclap.data.singles`; built into ``data/single``).
4. ``baseline``: continue (2b, else 2) with L_c only for the same ``finetune_steps`` -> **tiny-baseline** (a
   fair baseline: same data, positive-only set included, same total steps, no L_t). With ``baseline="start"``
   there is no such stage: **tiny-baseline** is the model T-CLAP is fine-tuned from (2b, else 2), the paper's
   protocol (its baseline is the CLAP it starts from), and the T-CLAP fine-tune has every core to itself.
4b. ``wise`` (only when ``wise_alpha`` < 1): **tiny-tclap** becomes the weight-space blend
   ``(1 − α)·baseline + α·T-CLAP fine-tune`` of the two fine-tunes (WiSE-FT / a two-model soup,
   :mod:`tclap.interpolate`); the un-blended fine-tune is still evaluated, as ``tiny-tclap-finetune``.
5. ``evaluate``: the models on ``builtin-heldout`` (``heldout_metrics``, as always), and for every other bank of
   ``banks`` on its own held-out set (``bank_heldout_metrics[<bank>]``): ``heldout_mixes`` mix-ups of its held-out
   recordings (T-Classify T2A and A2T, the audio-blind control, retrieval R@1/5/10 over their captions) and every
   held-out recording alone (zero-shot top-1, prompted with the class phrase), both built under ``DIR/eval_data``;
   ``DIR/summary.json`` and ``DIR/summary.md``.
6. ``export``: ``DIR/tiny-baseline`` and ``DIR/tiny-tclap`` (the folders shipped under
   ``tclap/assets/models/``), each with a ``recipe.json``: the recipe's settings, every stage's resolved
   training config and first logged losses (the first :data:`N_FIRST_LOSSES` optimizer steps, recorded
   while the stage ran), and the model's held-out metrics, so that ``tests/test_recipe.py`` can redo those
   steps and check that the shipped weights came from this recipe.

Why pre-train first: L_t stays at ln 2 until L_c has learned what the events are, so order can only be learned
on top of event identity. How each default was chosen, with the runs that measured it: docs/notes/clap-recipe.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from basekit.atomic import atomic_write_text
from basekit.errors import UserError, cli_entry
from conductor.recipes.records import BANK_NOTE, portable_banks
from tclap.train.config import preset

BASELINES = ("finetune", "start")  # RecipeConfig.baseline
BUILTIN = "builtin"  # tclap.data.banks.BUILTIN, the procedural bank (that module loads soundfile: imported lazily)
N_FIRST_LOSSES = 5  # optimizer steps whose losses each stage records in first_losses.json
FIRST_LOSSES_FILE = "first_losses.json"
LOSS_KEYS = ("step", "loss", "contrastive_loss", "temporal_loss", "lr")


@dataclass
class RecipeConfig:
    seed: int = 0
    # Enough mix-ups that T-CLAP does not overfit the temporal pairs (fewer cost it retrieval R@1).
    n_train: int = 10000
    seconds: float = 4.0
    sample_rate: int = 16000
    batch_size: int = 64
    pretrain_steps: int = 800
    # An L_c stage after pretrain that both fine-tunes start from (0: none): L_t learns order only once L_c
    # knows the events.
    warm_steps: int = 1000
    finetune_steps: int = 1500
    pretrain_lr: float = 1e-3
    finetune_lr: float = 1e-3
    # λ = 1 (not the paper's 0.5): at 0.5 the tiny model's L_t stays on its ln 2 plateau too long; a larger λ
    # trades event identity (R@1) for order.
    lambda_t: float = 1.0
    negative_audio: bool = True  # order-swapped audio as an A2T hard negative during fine-tuning
    # The T-CLAP stage's mix-ups of overlapping events (no negative caption): "skip" them, or use them for L_c
    # only ("positive"). Skipping leaves T-CLAP blind to "A and B at the same time" captions (part of the
    # held-out set), and its R@1 on them falls.
    unpaired: str = "positive"
    # > 0: both fine-tunes mix a positive-only set into every batch (1:4, the paper's ratio): this many
    # single-event clips per class of the bank's training instances, captioned with the event's phrase
    # (:mod:`tclap.data.singles`; the miniature's stand-in for the paper's AudioCaps/Clotho positives). 0: none.
    # Without them L_t makes the T-CLAP fine-tune name the wrong events (order right, identity lost).
    singles_per_class: int = 100
    # < 1: ship (1 − α)·baseline + α·T-CLAP fine-tune as tiny-tclap (the fine-tunes share their start; WiSE-FT).
    # With the single-event positives the fine-tune itself keeps R@1 and blends are not monotone in it, so the
    # default ships the fine-tune.
    wise_alpha: float = 1.0
    # "finetune": the baseline is its own L_c-only fine-tune from the same start, for the same steps (the
    # shipped models). "start": the baseline is the start itself (warm, else pretrain), as in the paper, where
    # T-CLAP is fine-tuned from the CLAP it is compared with; one fine-tune instead of two (``tclap reproduce``).
    baseline: str = "finetune"
    heldout_mixes: int = 400
    # "auto": bf16 autocast where the CPU / GPU runs it natively (faster steps), fp32 elsewhere (where torch
    # emulates bf16, which is far slower than fp32). The shipped models were trained under bf16; each stage
    # records the precision it used (train_config.json).
    mixed_precision: str = "auto"
    # The exported folders are <prefix>-baseline and <prefix>-tclap: "tiny" for the shipped models; a smoke run
    # (``tclap reproduce --preset quick``) names its few-step models "smoke" so they are never taken for them.
    export_prefix: str = "tiny"
    # The clip banks the data, the single-event positives and the held-out evaluation come from (their union when
    # several; each keeps its own hold-out): "builtin", a folder per class, an ESC-50 CSV (docs/bank.md).
    banks: tuple[str, ...] = (BUILTIN,)

    def __post_init__(self) -> None:
        self.banks = tuple(self.banks)  # a record read back from JSON gives a list


def _stage_cfg(rc: RecipeConfig, init: str, steps: int, lr: float, lambda_t: float, neg_audio: bool):

    cfg = preset("tiny")
    cfg.init, cfg.steps, cfg.seed = init, steps, rc.seed
    cfg.data.batch_size, cfg.optim.lr = rc.batch_size, lr
    cfg.optim.warmup_steps = min(cfg.optim.warmup_steps, max(1, steps // 10))
    cfg.loss.lambda_t = lambda_t
    cfg.data.use_negative_audio = neg_audio and lambda_t > 0
    cfg.data.unpaired = rc.unpaired if lambda_t > 0 else "skip"
    cfg.checkpoint_every = max(1, min(cfg.checkpoint_every, steps))
    from tclap.distributed import resolve_mixed_precision  # noqa: PLC0415 (loads torch; the reproduction planner imports this module and stays light)

    cfg.mixed_precision = resolve_mixed_precision(rc.mixed_precision)
    return cfg


def _train_stage(name: str, out: Path, cfg, manifest: Path, quiet: bool, positive: Sequence[str] = ()) -> Path:
    from tclap.train.trainer import _checkpoints, train  # noqa: PLC0415 (loads torch; the reproduction planner imports this module and stays light)

    run = out / "runs" / name
    model = run / "model"
    if (model / "config.json").exists():
        print(f"recipe: stage {name} already done ({model})")
        return model
    print(f"recipe: stage {name}: {cfg.steps} steps, λ={cfg.loss.lambda_t}, init={cfg.init}")
    first: list[dict] = []

    def record(step: int, rec: dict) -> None:
        # The metrics log keeps every ``log_every``-th step only; the first steps are kept in full so a
        # test can redo them. A resumed run that started past them leaves the file as it was.
        if step <= N_FIRST_LOSSES and len(first) == step - 1:
            first.append({k: rec[k] for k in LOSS_KEYS})
            if step == N_FIRST_LOSSES or step == cfg.steps:
                atomic_write_text(run / FIRST_LOSSES_FILE, json.dumps(first, indent=1))

    train(cfg, [str(manifest)], run, positive_manifests=list(positive), resume=bool(_checkpoints(run)), quiet=quiet,
          step_callback=record)
    return model


def first_losses(run_dir: Path) -> list[dict]:
    """The first recorded step losses of a recipe stage, ``[{"step", "loss", "contrastive_loss", ...}]``.

    From ``first_losses.json`` when the stage wrote one (steps 1..N_FIRST_LOSSES); for a stage trained
    before that file existed, the metrics log's records of those steps (step 1 and every ``log_every``-th).
    """
    run_dir = Path(run_dir)
    path = run_dir / FIRST_LOSSES_FILE
    if path.is_file():
        return json.loads(path.read_text())
    log = run_dir / "metrics.jsonl"
    if not log.is_file():
        return []
    recs = [json.loads(ln) for ln in log.read_text().splitlines() if ln.strip()]
    return [{k: r[k] for k in LOSS_KEYS if k in r} for r in recs if r.get("step", 0) <= N_FIRST_LOSSES]


def _stage_record(out: Path, name: str) -> dict:
    run = out / "runs" / name
    cfg = json.loads((run / "train_config.json").read_text())
    # Paths inside the run folder are recorded relative to it (the command's DIR): the record names no folder of
    # the machine it was made on, and a stage's start reads "runs/warm/model" as the command creates it.
    init = cfg["config"].get("init")
    if init and Path(init).exists():  # a folder, not a config name such as "tiny"
        cfg["config"]["init"] = _relative(init, out)
    return {"train_config": cfg["config"], "pools": cfg.get("pools"), "skipped": cfg.get("skipped"),
            "positive": [_relative(p, out) for p in cfg.get("positive") or []],
            "first_losses": first_losses(run)}


def _relative(path: str, root: Path) -> str:
    """``path`` relative to ``root`` when inside it (records stay valid when a run folder moves)."""
    p, r = Path(path).resolve(), Path(root).resolve()
    return str(p.relative_to(r)) if p.is_relative_to(r) else str(path)


def write_recipe_record(rc: RecipeConfig, out: Path, dest: Path, name: str, stages: Sequence[str],
                        metrics: dict, bank_metrics: dict | None = None) -> Path:
    """``dest/recipe.json``: how the model in ``dest`` was made (settings, stages, first losses, metrics).

    A bank folder outside the repository is recorded as ``BANK_DIR`` (``BANK_DIR2``, ...): the record names no
    folder of the machine it was made on; ``banks`` says what each bank held (classes, recordings, hold-out).
    """
    banks = portable_banks(rc.banks)
    prc = RecipeConfig(**{**asdict(rc), "banks": tuple(banks[b] for b in rc.banks)})
    rec = {"model": name, "recipe": asdict(prc), "command": _command(prc),
           "stages": {s: _stage_record(out, s) for s in stages}, "heldout_metrics": metrics,
           "paths": "relative to the recipe's --out folder (DIR in the command)"}
    if rc.banks != RecipeConfig().banks:
        rec["banks"] = [{"spec": banks[b], **_bank_summary(b)} for b in rc.banks]
        rec["bank_heldout_metrics"] = bank_metrics or {}
        rec["paths"] += "; " + BANK_NOTE
    path = dest / "recipe.json"
    atomic_write_text(path, json.dumps(rec, indent=2))
    return path


def _command(rc: RecipeConfig) -> str:
    d = RecipeConfig()
    cmd = f"python -m conductor.recipes.clap --out DIR --seed {rc.seed}"
    for flag, field in (("--n-train", "n_train"), ("--batch-size", "batch_size"), ("--pretrain-steps", "pretrain_steps"),
                        ("--warm-steps", "warm_steps"), ("--finetune-steps", "finetune_steps"),
                        ("--singles-per-class", "singles_per_class"),
                        ("--heldout-mixes", "heldout_mixes")):
        if getattr(rc, field) != getattr(d, field):
            cmd += f" {flag} {getattr(rc, field)}"
    for flag, field in (("--finetune-lr", "finetune_lr"), ("--lambda-t", "lambda_t"), ("--wise-alpha", "wise_alpha"),
                        ("--mixed-precision", "mixed_precision")):
        if getattr(rc, field) != getattr(d, field):
            cmd += f" {flag} {getattr(rc, field)}"
    if not rc.negative_audio:
        cmd += " --no-negative-audio"
    if rc.unpaired != d.unpaired:
        cmd += f" --unpaired {rc.unpaired}"
    if rc.baseline != d.baseline:
        cmd += f" --baseline {rc.baseline}"
    if rc.export_prefix != d.export_prefix:
        cmd += f" --export-prefix {rc.export_prefix}"
    if rc.banks != d.banks:
        cmd += "".join(f" --bank {shlex.quote(b)}" for b in rc.banks)
    return cmd


def _bank_summary(spec: str) -> dict:
    """What one bank of the recipe held: its name, classes, recordings per split and a sha256 of its hold-out list
    (``label/file`` lines, sorted), so that a later evaluation can tell whether it holds out the same recordings.
    The built-in bank's instances are unlimited and split by :func:`tclap.synth.instance_split`."""
    import hashlib  # noqa: PLC0415

    from tclap.data.banks import open_bank  # noqa: PLC0415 (loads soundfile and the synthesiser; planning a reproduction stays light)

    b = open_bank(spec)
    out = {"name": b.name, "classes": b.labels("train")}
    if spec != BUILTIN:
        out.update({f"{split}_recordings": sum(len(b.keys(lab, split)) for lab in b.labels(split))
                    for split in ("train", "heldout")})
        held = sorted(f"{lab}/{Path(k).name}" for lab in b.labels("heldout") for k in b.keys(lab, "heldout"))
        out["heldout_sha256"] = hashlib.sha256("\n".join(held).encode("utf-8")).hexdigest()
    return out


def default_jobs() -> int:
    """Jobs side by side by default: 2 on a machine with 2 or more cores (the two fine-tunes), else 1."""
    return max(1, min(2, os.cpu_count() or 1))


def _train_stage_in_child(name: str, out: Path, cfg, manifest: Path, quiet: bool, threads: int,
                          positive: Sequence[str] = ()) -> str:
    import torch  # noqa: PLC0415 (torch is heavy; loaded only when this path runs)

    torch.set_num_threads(threads)
    return str(_train_stage(name, out, cfg, manifest, quiet, positive))


def _train_stages(stages: Sequence[tuple[str, object]], out: Path, manifest: Path, quiet: bool,
                  jobs: int, positive: Sequence[str] = ()) -> list[Path]:
    """Train independent stages (``[(name, cfg)]``), ``jobs`` at a time; returns their model folders in order.

    With ``jobs > 1`` each stage trains in its own (spawned) process with ``cpu_count // jobs`` torch
    threads: the tiny models use two threads poorly (a step at 2 threads is far from twice as fast as at 1),
    so two stages side by side finish sooner than one after the other. Each stage resumes on its own.
    """
    todo = [(n, c) for n, c in stages if not (out / "runs" / n / "model" / "config.json").exists()]
    if jobs <= 1 or len(todo) <= 1:
        return [_train_stage(n, out, c, manifest, quiet, positive) for n, c in stages]
    import multiprocessing  # noqa: PLC0415
    from concurrent.futures import ProcessPoolExecutor  # noqa: PLC0415

    threads = max(1, (os.cpu_count() or 1) // min(jobs, len(todo)))
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=ctx) as pool:
        futures = [pool.submit(_train_stage_in_child, n, out, c, manifest, quiet, threads, positive) for n, c in todo]
        for f in futures:
            f.result()  # re-raises a stage's error (a UserError stays one line)
    return [out / "runs" / n / "model" for n, _ in stages]


def positive_sets(rc: RecipeConfig, out: Path) -> list[str]:
    """The fine-tunes' positive-only manifests: ``out/data/single`` (built or reused) when ``singles_per_class`` > 0:
    that many single-event clips per class of the banks' training split (a file bank's class: at most that many)."""
    if rc.singles_per_class <= 0:
        return []
    from tclap.data.banks import bank_setting  # noqa: PLC0415 (loads soundfile; planning a reproduction stays light)
    from tclap.data.singles import SinglesConfig, build_singles  # noqa: PLC0415 (same)

    cfg = SinglesConfig(bank=bank_setting(rc.banks), per_class=rc.singles_per_class, seconds=rc.seconds,
                        sr=rc.sample_rate)
    report = build_singles(cfg, Path(out) / "data" / "single", quiet=True)
    if report.failed:
        raise UserError(f"single-event clips under {Path(out) / 'data' / 'single'} are incomplete: {report.summary()}")
    return [str(report.manifest)]


def train_mixups(rc: RecipeConfig, out: Path, workers: int) -> Path:
    """``out/data/train``: ``n_train`` mix-ups of the banks' training split (built or resumed); its manifest."""
    from tclap.data.banks import bank_setting  # noqa: PLC0415 (loads soundfile; planning a reproduction stays light)
    from tclap.data.mixup import MixupConfig, build_mixups  # noqa: PLC0415 (same)

    cfg = MixupConfig(bank=bank_setting(rc.banks), seconds=rc.seconds, sr=rc.sample_rate, split="train", seed=rc.seed)
    report = build_mixups(cfg, Path(out) / "data" / "train", rc.n_train, workers=workers, quiet=True)
    if report.failed or report.manifest is None or report.manifest_items != rc.n_train:
        raise UserError(f"mix-ups under {Path(out) / 'data' / 'train'} are incomplete: {report.summary()}")
    return report.manifest


def bank_heldout_sets(rc: RecipeConfig, out: Path, seed: int = 0) -> dict[str, tuple[Path, Path]]:
    """For every bank of ``rc.banks`` but the built-in one (which ``builtin-heldout`` covers): ``name -> (mix-up
    manifest, single-recording manifest)`` of its held-out split, built (or reused) under ``out/eval_data/<name>``.

    The mix-ups are made as the built-in held-out set is (``heldout_mixes`` of 2-3 events, a share overlapping,
    data seed ``seed``), from that bank's held-out recordings only; the singles are every held-out recording,
    each item carrying its class phrase as ``class_text`` (the zero-shot prompt's label).
    """
    from tclap.data.banks import bank_parts, open_bank  # noqa: PLC0415 (loads soundfile; planning a reproduction stays light)
    from tclap.data.manifest import read_manifest, write_manifest  # noqa: PLC0415 (same)
    from tclap.data.mixup import MixupConfig, build_mixups  # noqa: PLC0415 (same)
    from tclap.data.singles import SinglesConfig, build_singles  # noqa: PLC0415 (same)

    sets: dict[str, tuple[Path, Path]] = {}
    for spec in bank_parts(rc.banks):
        if spec == BUILTIN:
            continue
        bank = open_bank(spec)
        name = bank.name if bank.name not in sets and bank.name != BUILTIN else f"{bank.name}{len(sets) + 1}"
        root = Path(out) / "eval_data" / name
        mix = build_mixups(MixupConfig(bank=spec, seconds=rc.seconds, sr=rc.sample_rate, split="heldout", seed=seed),
                           root / "mixups", rc.heldout_mixes, quiet=True, bank=bank)
        if mix.failed or mix.manifest is None or mix.manifest_items != rc.heldout_mixes:
            raise UserError(f"held-out mix-ups under {root / 'mixups'} are incomplete: {mix.summary()}")
        labels = bank.check_split("heldout")
        per = max(len(bank.keys(lab, "heldout")) for lab in labels)
        single = build_singles(SinglesConfig(bank=spec, per_class=per, seconds=rc.seconds, sr=rc.sample_rate,
                                             split="heldout"), root / "single", quiet=True)
        if single.failed:
            raise UserError(f"held-out recordings under {root / 'single'} are incomplete: {single.summary()}")
        items = [{**it, "class_text": bank.phrases[it["events"][0]["label"]]} for it in read_manifest(single.manifest)]
        sets[name] = (mix.manifest, write_manifest(root / "single_eval.jsonl", items))
    return sets


BANK_METRICS = ("t_classify_t2a", "t_classify_a2t", "t_classify_t2a_audio_blind", "r1_t2a", "r1_a2t", "r5_t2a",
                "r5_a2t", "r10_t2a", "r10_a2t", "map10_t2a", "map10_a2t")


def evaluate_on_bank(model: Path, mixups: Path, singles: Path, out: Path, cache: Path, ecfg, quiet: bool) -> dict:
    """One model on one bank's held-out set: T-Classify, the audio-blind control and retrieval on the mix-ups,
    zero-shot top-1 on the single recordings (:func:`tclap.evaluation.runner.evaluate` on each manifest)."""
    from tclap.evaluation.runner import evaluate  # noqa: PLC0415 (loads torch; the reproduction planner imports this module and stays light)

    res = evaluate(str(model), str(mixups), out / "mixups", cfg=ecfg, cache_dir=cache, quiet=quiet)
    zs = evaluate(str(model), str(singles), out / "single", cfg=ecfg, cache_dir=cache, quiet=quiet)
    got = {k: res[k] for k in BANK_METRICS if isinstance(res.get(k), float)}
    if isinstance(zs.get("zero_shot_top1"), float):
        got["zero_shot_top1"] = zs["zero_shot_top1"]
    return got


def run_recipe(rc: RecipeConfig, out_dir: str | Path, quiet: bool = False, jobs: int = 1) -> dict:
    """Run every stage; returns the summary (also written to ``out_dir/summary.json``).

    ``jobs``: how many training stages may run at once (the T-CLAP and baseline fine-tunes are
    independent); see :func:`_train_stages`.
    """
    from tclap.evaluation.runner import EvalConfig, evaluate  # noqa: PLC0415 (loads torch; the reproduction planner imports this module and stays light)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "recipe_config.json", json.dumps(asdict(rc), indent=2))
    manifest = Path(train_mixups(rc, out, workers=max(1, jobs)))
    pre = _train_stage("pretrain", out, _stage_cfg(rc, "tiny", rc.pretrain_steps, rc.pretrain_lr, 0.0, False), manifest, quiet)
    start_stages: tuple[str, ...] = ("pretrain",)
    if rc.warm_steps > 0:
        pre = _train_stage("warm", out, _stage_cfg(rc, str(pre), rc.warm_steps, rc.finetune_lr, 0.0, False), manifest, quiet)
        start_stages += ("warm",)
    if rc.baseline not in BASELINES:
        raise UserError(f"baseline={rc.baseline!r}: give one of {', '.join(BASELINES)}")
    finetunes = [("tclap", _stage_cfg(rc, str(pre), rc.finetune_steps, rc.finetune_lr, rc.lambda_t, rc.negative_audio))]
    if rc.baseline == "finetune":
        finetunes.append(("baseline", _stage_cfg(rc, str(pre), rc.finetune_steps, rc.finetune_lr, 0.0, False)))
    models = _train_stages(finetunes, out, manifest, quiet, jobs, positive_sets(rc, out))
    tcl = models[0]
    if rc.baseline == "finetune":
        base, base_stages = models[1], (*start_stages, "baseline")
    else:  # the start itself, as in the paper
        base, base_stages = pre, start_stages
    px = rc.export_prefix
    shipped = [(f"{px}-baseline", base, base_stages), (f"{px}-tclap", tcl, (*start_stages, "tclap"))]
    if rc.wise_alpha < 1.0:
        from tclap.interpolate import interpolate_models  # noqa: PLC0415 (loads torch; the reproduction planner imports this module and stays light)

        soup = out / "runs" / "wise" / "model"
        if not (soup / "config.json").is_file():
            print(f"recipe: stage wise: (1 − {rc.wise_alpha:g})·baseline + {rc.wise_alpha:g}·tclap")
            interpolate_models(base, tcl, rc.wise_alpha, soup)  # atomic export
        shipped = [shipped[0], (f"{px}-tclap", soup, (*start_stages, "tclap", "baseline")),
                   (f"{px}-tclap-finetune", tcl, None)]
    results: dict[str, dict] = {}
    bank_results: dict[str, dict] = {}
    ecfg = EvalConfig(heldout_mixes=rc.heldout_mixes)
    held = bank_heldout_sets(rc, out, seed=ecfg.seed)
    for name, model, stages in shipped:
        res = evaluate(str(model), "builtin-heldout", out / "eval" / name, cfg=ecfg, cache_dir=out / "eval_cache", quiet=quiet)
        results[name] = {k: v for k, v in res.items() if isinstance(v, float)}
        bank_results[name] = {b: evaluate_on_bank(model, mix, single, out / "eval" / name / b, out / "eval_cache",
                                                  ecfg, quiet) for b, (mix, single) in held.items()}
        if stages is None:  # evaluated for the record, not exported
            continue
        dest = out / name
        # Copy to a temp folder, add recipe.json, then swap in: a kill never leaves a half export.
        tmp = out / f".tmp-{name}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(model, tmp)
        write_recipe_record(rc, out, tmp, name, stages, results[name], bank_results[name])
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    keys = ("t_classify_t2a", "t_classify_a2t", "t_classify_t2a_audio_blind", "r1_t2a", "r1_a2t", "zero_shot_top1")

    def table(rows: dict[str, dict]) -> list[str]:
        head = ["| model | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
        return head + [f"| {name} | " + " | ".join(f"{r.get(k, float('nan')):.1f}" for k in keys) + " |"
                       for name, r in rows.items()]

    lines = table(results)
    for b in held:  # each other bank's held-out recordings
        lines += ["", f"{b} (held-out recordings: {rc.heldout_mixes} mix-ups; zero-shot on each recording alone)", ""]
        lines += table({name: bank_results[name][b] for name in bank_results})
    summary = {"config": asdict(rc), "results": results}
    if held:
        summary["bank_results"] = bank_results
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    atomic_write_text(out / "summary.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m conductor.recipes.clap", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    d = RecipeConfig()
    p.add_argument("--n-train", type=int, default=d.n_train)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--pretrain-steps", type=int, default=d.pretrain_steps)
    p.add_argument("--warm-steps", type=int, default=d.warm_steps,
                   help="an L_c stage after pre-training that both fine-tunes start from (0: none)")
    p.add_argument("--finetune-steps", type=int, default=d.finetune_steps)
    p.add_argument("--singles-per-class", type=int, default=d.singles_per_class,
                   help="single-event clips per class mixed into both fine-tunes as positives, 1:4 (0: none)")
    p.add_argument("--heldout-mixes", type=int, default=d.heldout_mixes)
    p.add_argument("--finetune-lr", type=float, default=d.finetune_lr)
    p.add_argument("--lambda-t", type=float, default=d.lambda_t, help="weight of L_t in the T-CLAP stage")
    p.add_argument("--wise-alpha", type=float, default=d.wise_alpha,
                   help="< 1: ship (1 − α)·baseline + α·T-CLAP fine-tune as tiny-tclap (default 1: the fine-tune)")
    p.add_argument("--mixed-precision", choices=("auto", "no", "bf16", "fp16"), default=d.mixed_precision,
                   help="auto (default): bf16 where the CPU/GPU runs it natively (AMX / AVX512-BF16), else fp32 "
                        "('no'); the shipped models were trained with bf16")
    p.add_argument("--no-negative-audio", action="store_true")
    p.add_argument("--unpaired", choices=("skip", "positive"), default=d.unpaired,
                   help="T-CLAP stage: skip the overlapping-event mix-ups (no negative caption) or train L_c on them")
    p.add_argument("--baseline", choices=BASELINES, default=d.baseline,
                   help="finetune (default): the baseline is an L_c-only fine-tune beside T-CLAP's, same start and "
                        "steps; start: the baseline is T-CLAP's start (warm, else pretrain), as in the paper")
    p.add_argument("--bank", action="append", default=None, metavar="BANK",
                   help="clip bank of the data, the positives and the held-out evaluation: builtin (default), a folder "
                        "per class (tclap bank build), or an ESC-50 CSV; repeat it (--bank builtin --bank DIR) to train "
                        "on the union of several banks, each keeping its own hold-out (docs/bank.md)")
    p.add_argument("--export-prefix", default=d.export_prefix,
                   help="names of the exported folders, PREFIX-baseline and PREFIX-tclap (default: tiny)")
    p.add_argument("--jobs", type=int, default=default_jobs(),
                   help="fine-tunes trained side by side, each in its own process (default: 2 on a machine with "
                        "2 or more cores; 1 trains them one after the other)")
    p.add_argument("--quiet", action="store_true")
    return p


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    from tclap.data.banks import bank_parts  # noqa: PLC0415 (loads soundfile; planning a reproduction stays light)

    a = build_parser().parse_args(argv)
    d = RecipeConfig()
    if min(a.n_train, a.batch_size, a.pretrain_steps, a.finetune_steps) < 1:
        raise UserError("--n-train, --batch-size and the step counts must be >= 1")
    if a.jobs < 1:
        raise UserError(f"--jobs {a.jobs}: give 1 or more")
    if not a.lambda_t > 0 or not a.finetune_lr > 0:
        raise UserError("--lambda-t and --finetune-lr must be > 0")
    if not 0.0 < a.wise_alpha <= 1.0:
        raise UserError(f"--wise-alpha {a.wise_alpha:g}: give a weight in (0, 1] (1 ships the T-CLAP fine-tune)")
    if a.singles_per_class < 0:
        raise UserError(f"--singles-per-class {a.singles_per_class}: give 0 (none) or more")
    if a.warm_steps < 0:
        raise UserError(f"--warm-steps {a.warm_steps}: give 0 (no warm stage) or more")
    rc = RecipeConfig(seed=a.seed, n_train=a.n_train, batch_size=a.batch_size, pretrain_steps=a.pretrain_steps,
                      warm_steps=a.warm_steps, wise_alpha=a.wise_alpha, singles_per_class=a.singles_per_class,
                      finetune_steps=a.finetune_steps, heldout_mixes=a.heldout_mixes,
                      negative_audio=not a.no_negative_audio, finetune_lr=a.finetune_lr, lambda_t=a.lambda_t,
                      mixed_precision=a.mixed_precision, unpaired=a.unpaired, baseline=a.baseline,
                      export_prefix=a.export_prefix, banks=tuple(bank_parts(a.bank)) if a.bank else d.banks)
    run_recipe(rc, a.out, quiet=a.quiet, jobs=a.jobs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
