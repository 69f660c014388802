"""The stages of the miniature reproduction (``--preset tiny`` / ``quick``) on the built-in sound-event bank.

``data`` -> ``clap`` -> ``clap_eval`` -> ``ldm`` -> ``generate`` -> ``score`` -> ``study`` -> ``report``.

``tclap`` sits at the base of the import layers (``tests/test_guards.py``), so the AudioLDM, scoring and
MOS stages run the other packages' command lines as subprocesses (``audioldm_cond.train.cli``, ``audioldm_cond.cli``,
``eval_gen.cli``, ``demo.cli``: their ``main(argv)`` in a fresh Python), exactly the commands a user would type; each subprocess's output goes
to ``<stage>/logs/<step>.log``. Every step inside a stage is resumable on its own (training from its last
checkpoint, generation and mix-ups per clip, scoring from its content-keyed embedding cache), so an
interrupted stage continues where it stopped.

Output layout (``OUT``)::

    data/        ldm_train/ (mix-ups), ldm_train_pairs.jsonl, heldout/ (reference clips), prompts.jsonl
    clap/        seed<S>/tiny-baseline, seed<S>/tiny-tclap     (ClapModel directories, the CLAP recipe's output;
                 smoke-baseline / smoke-tclap in a --preset quick smoke run)
    clap_eval/   seed<S>/<system>/metrics.json, similarities.json
    ldm/         vae/final, seed<S>/<system>/final           (diffusers-format AudioLDM directories)
    generate/    seed<S>/<system>/<prompt id>.wav|.png, prompts.jsonl
    score/       seed<S>/<system>/scores.json, ceiling/scores.json
    study/       study.yaml + its clips (``mos serve OUT/study/study.yaml``)
    report/      figures/*.png;   OUT/report.md, OUT/results.json
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from tqdm.auto import tqdm

from basekit.atomic import atomic_write_text
from basekit.errors import UserError
from conductor.reproduce.config import ReproConfig
from conductor.reproduce.layout import SYSTEMS, Paths, model_prefix, read_jsonl
from conductor.reproduce.pipeline import Stage
from audioldm_cond.train.config import DataConfig, ValidationConfig
from conductor.recipes.audioldm import ldm_train_config, vae_train_config
from conductor.recipes.clap import run_recipe
from conductor.reproduce.report import write_report
from tclap.data.manifest import read_manifest, write_manifest



# ------------------------------------------------------------------------------------------------ helpers
def _module_command(module: str, args: Sequence[str]) -> list[str]:
    # ``-c`` calls the module's ``main(argv)`` (not ``-m``): it works whether or not the module has a
    # ``__main__`` guard, and a module without ``main`` fails loudly instead of exiting 0 having done nothing.
    return [sys.executable, "-c", f"import sys; from {module} import main; sys.exit(main(sys.argv[1:]))",
            *map(str, args)]


def _failure(returncode: int, log_path: Path, what: str) -> UserError:
    lines = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
    last = lines[-1].strip() if lines else "(no output)"
    return UserError(f"{what} failed (exit {returncode}): {last[:300]} [full log: {log_path}]")


def _open_log(cmd: list[str], log_path: Path):
    log_path.parent.mkdir(parents=True, exist_ok=True)
    f = open(log_path, "ab")  # noqa: SIM115 (closed by the caller once the process has ended)
    f.write(("\n$ " + " ".join(cmd) + "\n").encode())
    f.flush()
    return f


def run_module(module: str, args: Sequence[str], log_path: Path, what: str) -> None:
    """Run ``module.main(args)`` in a fresh Python with its output in ``log_path``; a failure is one :class:`UserError` line.

    Exit status 2 is the called CLI's own one-line refusal, which is repeated; any other failure names
    the log file to read.
    """
    cmd = _module_command(module, args)
    with _open_log(cmd, log_path) as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise _failure(proc.returncode, log_path, what)


@dataclass
class ModuleJob:
    """One :func:`run_module` call, for :func:`run_modules`; ``after()`` runs once it has succeeded (checks
    its output, may raise a :class:`UserError`; advances a progress bar)."""

    module: str
    args: Sequence[str]
    log_path: Path
    what: str
    after: Callable[[], None] | None = None


_TOOLKIT_PACKAGES = ("tclap", "eval_gen", "audioldm_cond", "demo", "conductor")


def check_cli_args(module: str, args: Sequence[str]) -> None:
    """Parse ``args`` with the called command line's own parser (its ``build_parser()``) before any process starts.

    The stages call the other packages' CLIs with arguments built here; a flag renamed or removed there is then a
    one-line :class:`UserError` at once (and in the tests), not a failure inside a subprocess log. Modules without
    a ``build_parser`` (the trainer job reads a ``TrainConfig`` file), and modules outside the toolkit's packages,
    are not checked here.
    """
    if module.split(".")[0] not in _TOOLKIT_PACKAGES:
        return
    build = getattr(importlib.import_module(module), "build_parser", None)
    if build is None:
        return
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            build().parse_args([str(a) for a in args])
    except SystemExit as exc:
        if exc.code:
            said = [ln for ln in err.getvalue().splitlines() if ln.strip()]
            raise UserError(f"{module} refuses the arguments tclap reproduce builds for it: "
                            f"{said[-1] if said else 'exit ' + str(exc.code)}") from None


def run_modules(jobs: Sequence[ModuleJob], parallel: int = 1) -> None:
    """Run independent module jobs, ``parallel`` at a time, each followed by its ``after()``.

    With ``parallel > 1`` each process gets ``cpu_count // parallel`` threads (``OMP_NUM_THREADS``, unless
    the caller set it): tiny models gain little from a second thread, so two jobs side by side finish
    sooner than one after the other. After the first failure (an exit status or a failed ``after()``) no new
    job starts, the running ones finish (each resumes on its own next time), and that failure is raised.
    Ctrl-C stops them all. Every job's arguments are checked against its CLI's parser first
    (:func:`check_cli_args`).
    """
    for job in jobs:
        check_cli_args(job.module, job.args)
    if parallel <= 1 or len(jobs) <= 1:
        for job in jobs:
            run_module(job.module, job.args, job.log_path, job.what)
            if job.after:
                job.after()
        return
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // min(parallel, len(jobs)))))
    pending, running, errors = list(jobs), [], []
    try:
        while pending or running:
            while pending and not errors and len(running) < parallel:
                job = pending.pop(0)
                cmd = _module_command(job.module, job.args)
                f = _open_log(cmd, job.log_path)
                proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
                running.append((job, proc, f))
            if errors and not running:
                break
            time.sleep(0.2)
            for entry in [r for r in running if r[1].poll() is not None]:
                running.remove(entry)
                job, proc, f = entry
                f.close()
                if proc.returncode != 0:
                    errors.append(_failure(proc.returncode, job.log_path, job.what))
                elif job.after:
                    try:
                        job.after()
                    except UserError as exc:
                        errors.append(exc)
    finally:
        for _, proc, f in running:  # only on an exception (Ctrl-C): stop what still runs
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            f.close()
    if errors:
        raise errors[0]


def _bar(total: int, desc: str, quiet: bool):
    return tqdm(total=total, desc=desc, unit="step", disable=quiet or None, leave=False)


# ------------------------------------------------------------------------------------------------ stages
def stage_data(cfg: ReproConfig, paths: Paths, sdir: Path, quiet: bool) -> dict:
    """AudioLDM training pairs and the held-out prompts with their reference clips.

    Like the AudioLDM recipe, every training mix-up also contributes its order-swapped negative audio with
    the negative caption, so the UNet hears each pair of events in both orders and only the caption's
    order tells them apart. (The CLAP recipe builds its own training mix-ups, per seed, in ``clap``.)
    """
    from tclap.data.mixup import MixupConfig, build_mixups  # noqa: PLC0415 (loads scipy and soundfile; only the data stage needs them)

    d = cfg.data
    manifests = {}
    for split, n, folder in (("train", d.n_ldm_train, "ldm_train"), ("heldout", d.n_heldout, "heldout")):
        mcfg = MixupConfig(bank="builtin", seconds=d.seconds, sr=d.sr, split=split, seed=d.data_seed,
                           min_events=2, max_events=2, overlap_prob=0.0)
        rep = build_mixups(mcfg, sdir / folder, n, quiet=quiet)
        if rep.failed or rep.manifest is None or rep.manifest_items != n:
            raise UserError(f"mix-ups under {sdir / folder} are incomplete: {rep.summary()}")
        manifests[split] = rep.manifest
    pairs = []
    for it in read_manifest(manifests["train"]):
        pairs.append(it)
        if it.get("negative_audio") and it.get("negative_captions"):
            pairs.append({**it, "id": it["id"] + "-swap", "audio": it["negative_audio"],
                          "captions": it["negative_captions"], "negative_captions": it["captions"],
                          "negative_audio": it["audio"], "events": it.get("negative_events", [])})
    write_manifest(paths.ldm_train, pairs)
    prompts = []
    skipped = 0
    for it in read_manifest(manifests["heldout"]):
        if not it.get("negative_captions"):
            skipped += 1  # cannot happen with overlap_prob=0, but never drop an item silently
            continue
        prompts.append({"id": it["id"], "prompt": it["captions"][0], "negative_prompt": it["negative_captions"][0],
                        "events": it.get("events", []), "negative_audio": it.get("negative_audio")})
    if skipped:
        print(f"reproduce: data: {skipped} held-out item(s) without a negative caption are not prompts")
    atomic_write_text(paths.prompts, "".join(json.dumps(p) + "\n" for p in prompts))
    return {"ldm_train_items": len(pairs), "heldout_prompts": len(prompts), "skipped_heldout": skipped}


def stage_clap(cfg: ReproConfig, paths: Paths, sdir: Path, quiet: bool, jobs: int = 1) -> dict:
    """Baseline CLAP and T-CLAP per seed with the CLAP recipe (pre-train L_c; fine-tune L_c + λ·L_t vs L_c).

    With ``jobs > 1`` the two fine-tunes of a seed train side by side (see ``run_recipe``).
    """

    out = {}
    for seed in tqdm(cfg.seeds, desc="clap seeds", disable=quiet or None, leave=False):
        summary = run_recipe(cfg.recipe_config(seed), sdir / f"seed{seed}", quiet=quiet, jobs=jobs)
        out[str(seed)] = summary["results"]
    return {"recipe_results": out}


def stage_clap_eval(cfg: ReproConfig, paths: Paths, sdir: Path, quiet: bool) -> dict:
    """Zero-shot, retrieval and T-Classify (+ audio-blind control) of both CLAPs on the built-in held-out set.

    Also keeps the per-pair similarities ``sim(audio, positive caption)`` and ``sim(audio, negative caption)``
    for the report's histogram, read from the evaluation's own embedding cache (no second embedding pass).
    """
    from tclap.evaluation.runner import (  # noqa: PLC0415 (loads torch; only the evaluation stage needs it)
        EmbeddingCache, EvalConfig, builtin_heldout, embed_audio_paths, embed_texts, evaluate, model_fingerprint,
    )
    from tclap.models import load_clap  # noqa: PLC0415 (loads torch; tests patch tclap.models.load_clap)

    cache = sdir / "cache"
    results: dict = {}
    jobs = [(s, m) for s in cfg.seeds for m in SYSTEMS]
    # The same held-out set for every seed and system (EvalConfig's seed 0): cfg.clap_eval.heldout_mixes captions.
    ecfg = EvalConfig(heldout_mixes=cfg.clap_eval.heldout_mixes)
    for seed, system in tqdm(jobs, desc="clap_eval", disable=quiet or None, leave=False):
        model_dir = paths.clap(seed, system)
        res = evaluate(str(model_dir), "builtin-heldout", paths.clap_eval(seed, system), cfg=ecfg,
                       cache_dir=cache, quiet=True)
        results.setdefault(str(seed), {})[system] = {k: v for k, v in res.items() if isinstance(v, float)}
        bundle = load_clap(str(model_dir))
        items, _ = builtin_heldout(cache / "data", float(bundle.frontend.max_length_s), bundle.sample_rate, ecfg)
        root = cache / "embeddings" / model_fingerprint(bundle)[:24]
        a_cache, t_cache = EmbeddingCache(root, "audio"), EmbeddingCache(root, "text")
        pairs = [(it["audio"], it["captions"][0], it["negative_captions"][0])
                 for it in items if it.get("negative_captions")]
        audio = embed_audio_paths(bundle, [p[0] for p in pairs], a_cache, ecfg.batch_size, True)  # [N, D]
        tp = embed_texts(bundle, [p[1] for p in pairs], t_cache, ecfg.batch_size, True)  # [N, D]
        tn = embed_texts(bundle, [p[2] for p in pairs], t_cache, ecfg.batch_size, True)
        sims = {"positive": (audio * tp).sum(1).tolist(), "negative": (audio * tn).sum(1).tolist()}
        atomic_write_text(paths.clap_eval(seed, system) / "similarities.json", json.dumps(sims))
    return {"metrics": results}


def ldm_train_configs(cfg: ReproConfig, paths: Paths, sdir: Path) -> dict[str, Any]:
    """The ``TrainConfig`` of every AudioLDM training run, by run name (``vae``, ``seed<S>-<system>``), built by the
    AudioLDM recipe's own builders from ``cfg.ldm`` (a :class:`conductor.recipes.audioldm.RecipeConfig`)."""

    rc = cfg.ldm
    data = DataConfig(train_manifest=str(paths.ldm_train), val_manifest=str(paths.heldout_manifest),
                      seconds=cfg.data.seconds, cache_dir=str(sdir / "cache"))
    val = ValidationConfig(generate=rc.val_generate)
    out = {"vae": vae_train_config(rc, paths.vae(), data, cfg.data.data_seed, rc.vae_ema, quiet=True, clap=None,
                                   val=val)}
    for seed in cfg.seeds:
        for system in SYSTEMS:
            out[f"seed{seed}-{system}"] = ldm_train_config(rc, paths.ldm(seed, system), paths.vae() / "final",
                                                           str(paths.clap(seed, system)), data, seed, val, quiet=True)
    return out


def stage_ldm(cfg: ReproConfig, paths: Paths, sdir: Path, quiet: bool, jobs: int = 1) -> dict:
    """The mel VAE once, then per seed an AudioLDM UNet on each CLAP's text embedding (same seed, data, steps).

    A training run whose ``final/`` exists is done; an unfinished one resumes from its last checkpoint. Each run's
    ``TrainConfig`` is written to ``ldm/configs/<run>.json`` and trained in its own process
    (:mod:`conductor.reproduce.train_job`); the UNets (independent once the VAE exists) train ``jobs`` at a time.
    """
    configs = ldm_train_configs(cfg, paths, sdir)
    bar = _bar(len(configs), "ldm", quiet)
    todo: list[list[ModuleJob]] = [[], []]  # the VAE first, then the UNets
    for name, tc in configs.items():
        run = Path(tc.out_dir)
        if (run / "final" / "model_index.json").exists():
            bar.update(1)
            continue
        cfg_path = sdir / "configs" / f"{name}.json"
        atomic_write_text(cfg_path, json.dumps(tc.to_dict(), indent=2, sort_keys=True) + "\n")
        log = sdir / "logs" / f"{name}.log"

        def finished(run=run, name=name, log=log) -> None:
            if not (run / "final" / "model_index.json").exists():
                raise UserError(f"AudioLDM training ({name}) ended without {run / 'final'}; see {log}")
            bar.update(1)

        todo[name != "vae"].append(ModuleJob("conductor.reproduce.train_job", [cfg_path], log,
                                             f"AudioLDM training ({name})", finished))
    for group in todo:
        run_modules(group, jobs)
    bar.close()
    return {"models": {f"seed{s}/{m}": str(paths.ldm(s, m) / "final") for s in cfg.seeds for m in SYSTEMS}}


def stage_generate(cfg: ReproConfig, paths: Paths, sdir: Path, quiet: bool, jobs: int = 1) -> dict:
    """Every held-out ordered prompt with both systems, per seed (the same sampler seed for both systems)."""
    g = cfg.generate
    runs = [(s, m) for s in cfg.seeds for m in SYSTEMS]
    bar = _bar(len(runs), "generate", quiet)
    todo = []
    for seed, system in runs:
        folder, log, what = paths.generated(seed, system), sdir / "logs" / f"seed{seed}-{system}.log", \
            f"generation (seed {seed}, {system})"

        def finished(folder=folder, log=log, what=what) -> None:
            missing = [p["id"] for p in read_jsonl(paths.prompts) if not (folder / f"{p['id']}.wav").is_file()]
            if missing:
                raise UserError(f"{what} left {len(missing)} prompt(s) without a clip, e.g. {missing[0]}; see {log}")
            bar.update(1)

        # audioldm-cond generate resumes by itself: clips already written with the same settings are skipped.
        todo.append(ModuleJob("audioldm_cond.cli", [
            "generate", "--prompts", paths.prompts, "--out", folder,
            "--model", paths.ldm(seed, system) / "final", "--steps", g.steps, "--guidance", g.guidance,
            "--scheduler", g.scheduler, "--seed", seed, "--batch-size", g.batch_size, "--quiet",
        ], log, what, finished))
    run_modules(todo, jobs)
    bar.close()
    return {"clips": {f"seed{s}/{m}": len(list(paths.generated(s, m).glob("*.wav"))) for s, m in runs}}


def stage_score(cfg: ReproConfig, paths: Paths, sdir: Path, quiet: bool, jobs: int = 1) -> dict:
    """``eval-gen score`` of every generated folder against the held-out references, and the detector ceiling.

    FAD / KAD on ``score.backend`` (mel statistics by default: independent of both CLAPs), KL on the
    built-in event classifier (paired by prompt id), CLAP score and order accuracy by the seed's T-CLAP, and
    order accuracy by the frame-level event detector. The ceiling is the detector's order accuracy on the
    *real* held-out mix-ups themselves (the same prompts), the best a generator can be credited with. Then the
    likelihood order probe of each UNet on the first ``score.probe_clips`` of those real clips
    (``audioldm-cond probe-order``).
    """
    s = cfg.score
    first = cfg.seeds[0]
    common = ["--prompts", paths.prompts, "--backend", s.backend, "--classifier", s.classifier,
              "--cache-dir", sdir / "cache", "--quiet"]
    runs = [("ceiling", first, None)] + [("gen", seed, m) for seed in cfg.seeds for m in SYSTEMS]
    bar = _bar(len(runs), "score", quiet)
    todo = []
    for kind, seed, system in runs:
        if kind == "ceiling":
            out, gen = paths.ceiling, paths.references
            extra = ["--metrics", "order", "--n-boot", 0, "--no-plot", "--clap-model", paths.clap(seed, "tclap")]
            name = "ceiling"
        else:
            out, gen = paths.scores(seed, system), paths.generated(seed, system)
            extra = ["--metrics", "fad,kad,kl,clap,order", "--n-boot", s.n_boot, "--seed", seed,
                     "--clap-model", paths.clap(seed, "tclap")]
            name = f"seed{seed}-{system}"
        if (out / "scores.json").exists():
            bar.update(1)
            continue
        log = sdir / "logs" / f"{name}.log"

        def finished(out=out, name=name, log=log) -> None:
            if not (out / "scores.json").exists():
                raise UserError(f"scoring ({name}) wrote no {out / 'scores.json'}; see {log}")
            bar.update(1)

        todo.append(ModuleJob("eval_gen.cli", ["score", "--gen", gen, "--ref", paths.references, "--out", out, *common,
                                               *extra], log, f"scoring ({name})", finished))
    # The likelihood order probe of each trained UNet on the real held-out clips (no sampling): does the UNet
    # prefer the prompted order over the swapped one at all? (`audioldm-cond probe-order`)
    probes = []
    for seed in cfg.seeds:
        for system in SYSTEMS:
            out = paths.probe(seed, system)
            if (out / "order_probe.json").exists():
                continue
            name = f"probe-seed{seed}-{system}"
            log = sdir / "logs" / f"{name}.log"

            def probed(out=out, name=name, log=log) -> None:
                if not (out / "order_probe.json").exists():
                    raise UserError(f"order probe ({name}) wrote no {out / 'order_probe.json'}; see {log}")

            probes.append(ModuleJob("audioldm_cond.cli", [
                "probe-order", "--model", paths.ldm(seed, system) / "final", "--data", paths.heldout_manifest,
                "--n", min(s.probe_clips, cfg.data.n_heldout), "--seed", seed, "--out", out, "--quiet"], log,
                f"order probe ({name})",
                probed))

    # The first job runs alone: it trains the event detector that every job uses and caches it (the
    # others would each train their own copy); the rest share the cache's atomic writes safely.
    if todo:
        run_modules(todo[:1], 1)
        run_modules(todo[1:], jobs)
    run_modules(probes, jobs)
    bar.close()
    return {"scored": len(runs)}


def stage_study(cfg: ReproConfig, paths: Paths, sdir: Path, quiet: bool) -> dict:
    """A ready-to-serve MOS study (both systems of the first seed, the first ``study.max_prompts`` held-out prompts),
    checked with ``mos validate``.

    The clips are copied next to the study file so the folder can be moved to a listening server. Training
    page: a real held-out clip. Gold: the order-swapped real clip under its positive prompt (MOS_t must be
    1-2). Attention check: a real clip with "select 2 on both scales".
    """
    import yaml  # noqa: PLC0415

    seed = cfg.seeds[0]
    prompts = read_jsonl(paths.prompts)[: cfg.study.max_prompts]
    systems = []
    for system, (_, label) in SYSTEMS.items():
        dst = sdir / "clips" / label
        dst.mkdir(parents=True, exist_ok=True)
        for p in prompts:
            src = paths.generated(seed, system) / f"{p['id']}.wav"
            if not src.is_file():
                raise UserError(f"generated clip {src} is missing; re-run with --force-stage generate")
            shutil.copy2(src, dst / src.name)
        systems.append({"name": label, "dir": f"clips/{label}"})
    checks = sdir / "clips" / "checks"
    checks.mkdir(parents=True, exist_ok=True)
    ref0, ref1 = prompts[0], prompts[1 % len(prompts)]
    shutil.copy2(paths.references / f"{ref0['id']}.wav", checks / "training.wav")
    shutil.copy2(paths.references / f"{ref1['id']}.wav", checks / "attention.wav")
    gold = []
    if ref1.get("negative_audio") and Path(ref1["negative_audio"]).is_file():
        shutil.copy2(ref1["negative_audio"], checks / "gold_swapped.wav")
        gold = [{"id": "gold-swapped", "file": "clips/checks/gold_swapped.wav", "text": ref1["prompt"],
                 "expect": {"mos_t": [1, 2]}}]
    n_main = len(systems) * len(prompts)
    study = {
        "name": f"tclap-reproduce-{cfg.preset}",
        # a lab study on plain ?rater=ID links; a crowd study switches to signed or crowd (docs/mos.md)
        "access": "open",
        "seed": seed,
        "systems": systems,
        "prompts": [{"id": p["id"], "text": p["prompt"]} for p in prompts],
        "clips_per_rater": min(cfg.study.clips_per_rater, n_main),
        "min_ratings_per_clip": cfg.study.min_ratings_per_clip,
        "training": [{"file": "clips/checks/training.wav", "text": ref0["prompt"],
                      "note": "A real recording of this prompt: the events in the described order (MOS_t 5)."}],
        "gold": gold,
        "attention_checks": [{"id": "attention-1", "file": "clips/checks/attention.wav",
                              "text": "Attention check: select 2 on both scales.", "expect": {"mos_r": 2, "mos_t": 2}}],
    }
    atomic_write_text(paths.study, yaml.safe_dump(study, sort_keys=False, allow_unicode=True))
    run_module("demo.cli", ["validate", paths.study], sdir / "logs" / "validate.log", "mos validate of the study")
    return {"study": str(paths.study), "clips": n_main, "serve": f"mos serve {paths.study}"}


def build_stages(cfg: ReproConfig, out: Path, quiet: bool = False, jobs: int = 1) -> list[Stage]:
    """The stage list of the tiny / quick preset under ``out``.

    ``jobs``: how many independent trainings / generations / scorings may run at once (the two systems'
    CLAP fine-tunes and UNets, ...). It changes no setting, so it is not part of any stage's key.
    """

    paths = Paths(out, model_prefix(cfg.preset))
    d = cfg.to_dict()

    def bind(fn):
        if fn in (stage_clap, stage_ldm, stage_generate, stage_score):
            return lambda sdir: fn(cfg, paths, sdir, quiet, jobs)
        return lambda sdir: fn(cfg, paths, sdir, quiet)

    return [
        Stage("data", bind(stage_data), d["data"], (), "built-in bank mix-ups and held-out prompts"),
        Stage("clap", bind(stage_clap), {"clap": d["clap"], "seeds": d["seeds"]}, (),
              "baseline CLAP and T-CLAP per seed (conductor.recipes.clap)"),
        Stage("clap_eval", bind(stage_clap_eval), {"seeds": d["seeds"], "clap_eval": d["clap_eval"]}, ("clap",),
              "zero-shot, retrieval, T-Classify"),
        Stage("ldm", bind(stage_ldm), {"ldm": d["ldm"], "seeds": d["seeds"]}, ("data", "clap"),
              "AudioLDM_L and AudioLDM_T per seed"),
        Stage("generate", bind(stage_generate), d["generate"], ("data", "ldm"), "held-out ordered prompts"),
        Stage("score", bind(stage_score), d["score"], ("data", "generate"), "KL, FAD, KAD, CLAP score, order"),
        Stage("study", bind(stage_study), d["study"], ("generate",), "MOS study file"),
        Stage("report", lambda sdir: write_report(cfg, paths, sdir), {"preset": cfg.preset},
              ("data", "clap_eval", "score", "study"), "report.md, figures, results.json"),
    ]
