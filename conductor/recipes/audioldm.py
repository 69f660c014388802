"""The embedded default AudioLDMs: one command builds the data, trains them and installs them.

    python -m conductor.recipes.audioldm --out runs/embedded            # full recipe (CPU, hours)
    python -m conductor.recipes.audioldm --out /tmp/r --quick --no-install   # a smoke run

Stages (each resumable: a finished stage is skipped, an interrupted one resumes from its last checkpoint):

1. ``data``: 2-event ordered mix-ups of the clip bank(s) (``tclap.data.mixup``; 4 s at 16 kHz, no overlap
   clips), train split for training and the held-out split for validation. ``banks`` (``--bank``, repeatable):
   the built-in procedural bank by default; ``--bank builtin --bank DIR`` trains on the union of the procedural
   events and a folder bank of recordings (``tclap bank build``), each keeping its own hold-out (docs/bank.md). Every item also contributes its
   negative audio (the same two event instances in the other order) with its negative caption, so the model
   sees each pair of events in both orders: the order in the caption is the only thing that tells them apart.
2. ``vae``: the tiny mel VAE, trained once from scratch (on random mel windows, cheap on CPU).
3. ``ldm-tiny-tclap`` and ``ldm-tiny-baseline``: the tiny UNet on the frozen VAE's latents, trained twice with the
   same seed, data and steps, conditioned on the CLAP *text* embedding of the caption from the embedded
   T-CLAP and from the embedded baseline CLAP (the paper's AudioLDM_T vs AudioLDM_L). Text conditioning (not
   AudioLDM's audio embedding) is used so that the order information of the T-CLAP text embedding is what the
   UNet learns to follow.
4. ``install``: both models are copied into ``audioldm_cond/assets/models/<name>`` with ``recipe.json``
   (the settings and the first logged losses of every stage, which ``tests/test_ldm_recipe.py`` re-checks).
   Every trained model folder (``ldm-<name>/final``, so also the installed copy) holds ``events.json``: the
   events of the bank(s) it was trained on (:mod:`audioldm_cond.events`; what ``audioldm-cond generate
   --list-events`` prints and its unknown-event warning reads).

``--vae-steps`` / ``--ldm-steps`` shorten it. Why 2000 VAE steps: with far fewer, the VAE's reconstruction
loses so much that the event detector no longer finds the order in real mix-ups passed through VAE + vocoder, and
the generation path caps the order accuracy. What each stage costs and how the settings were chosen:
docs/notes/ldm-recipe.md.

Architecture: 4 s of 16 kHz audio -> 400 x 64 log-mel -> VAE (8x down) -> latent 8 x 50 x 8 -> UNet with two
levels (self-attention at the lower one and in the mid block, for a receptive field over the whole clip)
and FiLM conditioning on the 1 x D CLAP vector.

GPU-sized variant: ``--vae tiny-tclap --unet-channels 32,64,128 --ldm-batch 64 --ldm-lr 5e-4 --ldm-warmup 200
--ema-decay 0.999 --ckpt-every 500 --n-train 2048`` reuses the shipped VAE and trains a 4.3M-parameter UNet (what one
H100 session measured with it: docs/notes/ldm-recipe.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from basekit.atomic import atomic_write_text
from basekit.errors import UserError, cli_entry
from audioldm_cond.train.config import (
    DataConfig, LdmStageConfig, OptimConfig, TrainConfig, VaeStageConfig, ValidationConfig, parse_cond_map, parse_unet_channels,
)
from audioldm_cond.train.runlog import read_log
from conductor.recipes.records import BANK_NOTE, LDM_PATHS_NOTE, portable, portable_banks
from tclap.data.manifest import read_manifest, write_manifest

CONDITIONERS = ("tiny-tclap", "tiny-baseline")
BUILTIN = "builtin"  # tclap.data.banks.BUILTIN (that module loads soundfile: imported where it is used)


@dataclass
class RecipeConfig:
    """Settings of the embedded recipe (``quick()`` gives the smoke-test sizes)."""

    seconds: float = 4.0
    sr: int = 16000
    n_train: int = 1024
    n_val: int = 64
    data_seed: int = 0
    seed: int = 0
    arch: dict[str, Any] = field(default_factory=lambda: {
        "vae_channels": [8, 16, 32, 64], "latent_channels": 8, "unet_channels": [16, 32],
        "layers_per_block": 1, "attention": True, "vocoder": "griffinlim", "max_seconds": 4.0})
    vae_steps: int = 2000
    vae_batch: int = 8
    vae_lr: float = 1e-3
    vae_ema: float = 0.99
    vae_crop_frames: int = 48
    # 32 000 steps: the T-CLAP-conditioned UNet's order accuracy was still rising at 16 000 (docs/results.md for
    # the shipped pair, docs/notes/ldm-recipe.md for the steps on the way).
    ldm_steps: int = 32000
    ldm_batch: int = 12
    ldm_lr: float = 1e-3
    ldm_warmup: int = 20
    # The last N of ``ldm_steps`` lower the learning rate linearly to 0 (0: constant to the end). A run extended
    # by resuming with more steps and a decay anneals what it had learned at the constant rate.
    ldm_decay_steps: int = 0
    ema_decay: float = 0.98
    cfg_dropout: float = 0.1
    # Unweighted v-prediction: the loss weighs the clip's layout at high noise, where the condition decides
    # which event goes first (epsilon-prediction with Min-SNR-5, the earlier setting, left the UNets at chance
    # on order). None: the VAE model's scheduler setting / no Min-SNR weighting.
    snr_gamma: float | None = None
    prediction_type: str | None = "v_prediction"
    ckpt_every: int = 20
    val_generate: bool = True  # validation also generates and scores the validation prompts
    val_every: int = 500
    val_prompts: int = 16
    guidance_scales: tuple[float, ...] = (1.0, 2.0, 3.0, 5.0)
    conditioners: tuple[str, ...] = CONDITIONERS
    # The ldm stages' fresh UNet ({"channels": [...], "layers_per_block": n, "attention": bool,
    # "position_channels": n, "cond_map_channels": m, "cond_map_segments": s}): the arch's widths with 4
    # time-position channels and an 8x8 condition map, so the UNet knows where in the clip it is and can lay
    # the condition out over time; None: the UNet built with the VAE from ``arch``. ``vae_dir``: a trained
    # model directory whose VAE (and vocoder) to reuse instead of training the vae stage (e.g. a shipped model).
    ldm_unet: dict | None = field(default_factory=lambda: {
        "channels": [16, 32], "layers_per_block": 1, "attention": True, "position_channels": 4,
        "cond_map_channels": 8, "cond_map_segments": 8})
    vae_dir: str | None = None
    # Continue instead of starting fresh: each ldm stage ``ldm-NAME`` starts from the UNet of the model folder
    # ``<init_from>/NAME`` (or a recipe run's ``<init_from>/ldm-NAME/final``; "shipped": the installed models),
    # with its VAE, which must be ``vae_dir``'s. The optimiser state starts anew (warm-up ``ldm_warmup``) and
    # ``ldm_steps`` counts the steps of this run; ``ldm_unet`` is not used.
    init_from: str | None = None
    judge_clap: str | None = "tiny-tclap"  # CLAP of the validation CLAP metrics (None: the conditioner's own)
    # The clip banks of the training and validation mix-ups (their union when several, each keeping its own
    # hold-out): "builtin", a folder per class, an ESC-50 CSV (docs/bank.md).
    banks: tuple[str, ...] = (BUILTIN,)

    def __post_init__(self) -> None:
        self.banks = tuple(self.banks)  # a record read back from JSON gives a list

    @classmethod
    def quick(cls) -> "RecipeConfig":
        return cls(n_train=16, n_val=4, vae_steps=3, vae_batch=4, ldm_steps=3, ldm_batch=4, ldm_warmup=0,
                   ckpt_every=2, val_prompts=2, guidance_scales=(2.0,), judge_clap=None)


def split_conditioner(spec: str) -> tuple[str, str]:
    """``NAME`` or ``NAME=CLAP`` -> (model name, the CLAP ``tclap.models.load_clap`` loads)."""
    name, _, clap = spec.partition("=")
    name, clap = name.strip(), (clap.strip() or name.strip())
    if not name or "/" in name or name.startswith("."):
        raise UserError(f"--conditioners entry {spec!r}: give NAME or NAME=CLAP_DIR with a plain NAME")
    return name, clap


def build_data(out: Path, rc: RecipeConfig, quiet: bool = False) -> tuple[Path, Path]:
    """Train pairs (each mix-up and its order-swapped negative) and the held-out validation manifest."""
    from tclap.data.banks import bank_setting  # noqa: PLC0415 (loads soundfile; planning a reproduction stays light)
    from tclap.data.mixup import MixupConfig, build_mixups  # noqa: PLC0415 (loads scipy and soundfile; planning a reproduction stays light)

    paths = {}
    for split, n in (("train", rc.n_train), ("heldout", rc.n_val)):
        cfg = MixupConfig(bank=bank_setting(rc.banks), seconds=rc.seconds, sr=rc.sr, split=split, seed=rc.data_seed,
                          min_events=2, max_events=2, overlap_prob=0.0)
        rep = build_mixups(cfg, out / "data" / split, n, quiet=quiet)
        if rep.failed or rep.manifest is None or rep.manifest_items != n:
            raise UserError(f"mix-ups under {out / 'data' / split} are incomplete: {rep.summary()}")
        paths[split] = rep.manifest
    pairs = out / "data" / "train_pairs.jsonl"
    if not pairs.exists():
        items = []
        for it in read_manifest(paths["train"]):
            items.append(it)
            if it.get("negative_audio") and it.get("negative_captions"):
                items.append({**it, "id": it["id"] + "-swap", "audio": it["negative_audio"],
                              "captions": it["negative_captions"], "negative_captions": it["captions"],
                              "negative_audio": it["audio"], "events": it.get("negative_events", [])})
        write_manifest(pairs, items)
    return pairs, paths["heldout"]


def bank_events(rc: RecipeConfig) -> tuple[list[dict], str]:
    """The events of the recipe's bank(s), ``[{"label", "phrase"}]`` (the training split's classes, per bank in the
    order of ``rc.banks``), and a one-line source naming each bank with its count (no folder of this machine)."""
    from tclap.data.banks import bank_parts, open_bank  # noqa: PLC0415 (loads soundfile; planning a reproduction stays light)

    events, names = [], []
    for spec in bank_parts(rc.banks):
        bank = open_bank(spec)
        labels = bank.labels("train")
        events += [{"label": lab, "phrase": bank.phrases[lab]} for lab in labels]
        what = "tclap.synth's procedural events" if spec == BUILTIN else "recorded events"
        names.append(f"{bank.name} ({len(labels)} {what})")
    return events, "conductor.recipes.audioldm: the clip bank(s) it was trained on: " + ", ".join(names)


def write_model_events(final: str | os.PathLike, rc: RecipeConfig) -> Path:
    """``final/events.json``: the events of ``rc.banks`` (see :func:`bank_events`)."""
    from audioldm_cond.events import write_events  # noqa: PLC0415 (keeps this module's imports light)

    events, source = bank_events(rc)
    return write_events(final, events, source)


def vae_train_config(rc: RecipeConfig, out_dir: str | os.PathLike, data, seed: int, ema_decay: float,
                     quiet: bool = False, **extra):
    """The ``vae`` stage's :class:`~audioldm_cond.train.config.TrainConfig` for this recipe (a tiny model from
    ``rc.arch``); ``data`` is a :class:`~audioldm_cond.train.config.DataConfig`."""

    return TrainConfig(
        stage="vae", out_dir=str(out_dir), model="tiny", clap=extra.pop("clap", "tiny"), data=data,
        optim=OptimConfig(steps=rc.vae_steps, batch_size=rc.vae_batch, lr=rc.vae_lr),
        vae=VaeStageConfig(crop_frames=rc.vae_crop_frames), ema_decay=ema_decay, ckpt_every=rc.ckpt_every,
        seed=seed, resume=True, quiet=quiet, tiny_kwargs=dict(rc.arch), **extra,
    )


def ldm_train_config(rc: RecipeConfig, out_dir: str | os.PathLike, vae_final: str | os.PathLike, clap: str,
                     data, seed: int, val, quiet: bool = False, start: str | os.PathLike | None = None):
    """An ``ldm`` stage's :class:`~audioldm_cond.train.config.TrainConfig`: a UNet on ``clap``'s text embedding,
    on the VAE in ``vae_final``; ``val`` is a :class:`~audioldm_cond.train.config.ValidationConfig`. ``start``: a
    model folder whose UNet (and VAE) the stage continues (:func:`init_unet_dir`) instead of a fresh UNet."""

    return TrainConfig(
        stage="ldm", out_dir=str(out_dir), model=str(start or vae_final), clap=str(clap), data=data,
        optim=OptimConfig(steps=rc.ldm_steps, batch_size=rc.ldm_batch, lr=rc.ldm_lr, warmup_steps=rc.ldm_warmup,
                          decay_steps=rc.ldm_decay_steps),
        ldm=LdmStageConfig(cond_source="text", cfg_dropout=rc.cfg_dropout, snr_gamma=rc.snr_gamma,
                           prediction_type=rc.prediction_type,
                           unet=dict(rc.ldm_unet) if rc.ldm_unet and not start else None),
        val=val, ema_decay=rc.ema_decay, ckpt_every=rc.ckpt_every, seed=seed, resume=True, quiet=quiet,
    )


def init_unet_dir(rc: RecipeConfig, name: str) -> Path:
    """The model folder whose UNet the ldm stage ``ldm-<name>`` continues from (``rc.init_from``); its VAE must be
    the recipe's (``rc.vae_dir``), byte for byte, else one :class:`UserError` line."""
    from audioldm_cond.components import assets_dir  # noqa: PLC0415 (loads torch; only this branch needs it)

    root = assets_dir() if rc.init_from == "shipped" else Path(os.path.expanduser(str(rc.init_from)))
    for cand in (root / name, root / f"ldm-{name}" / "final"):
        if (cand / "model_index.json").is_file() and (cand / "unet").is_dir():
            break
    else:
        raise UserError(f"--init-from {rc.init_from}: no model folder for conditioner {name} ({root / name} or "
                        f"{root / f'ldm-{name}' / 'final'}); give a folder holding one per --conditioners name")
    if not rc.vae_dir:
        raise UserError(f"--init-from {rc.init_from} needs --vae: the VAE its UNets were trained on (e.g. --vae {name})")
    from eval_gen.backends.base import file_sha256  # noqa: PLC0415 (same)

    weights = [d / "vae" / "diffusion_pytorch_model.safetensors" for d in (cand, Path(rc.vae_dir))]
    if not all(f.is_file() for f in weights) or file_sha256(weights[0]) != file_sha256(weights[1]):
        raise UserError(f"--init-from: {cand}'s VAE is not --vae {rc.vae_dir}'s; its UNet was trained on other latents "
                        "(give the --vae of the model it continues)")
    return cand.resolve()


def continued_record(start: Path, stage: str) -> dict[str, Any]:
    """What an ``--init-from`` run continued: the start model's own record of how its UNet was made (its command,
    recipe and ``stage`` record, and what that one continued in turn), so a shipped continuation keeps its history."""
    src = start / "recipe.json"
    if not src.is_file():
        return {"model": str(start), "record": None}
    prev = json.loads(src.read_text())
    stage_rec = (prev.get("stages") or {}).get(stage) or {}
    return {"model": str(start), "command": prev.get("command"), "recipe": prev.get("recipe"),
            "stage": {k: v for k, v in stage_rec.items() if k != "continued_from"},
            "continued_from": stage_rec.get("continued_from")}


def stage_configs(out: Path, rc: RecipeConfig, train: Path, val: Path, quiet: bool = False) -> dict[str, Any]:
    """The :class:`TrainConfig` of every training stage, by stage name."""

    data = DataConfig(train_manifest=str(train), val_manifest=str(val), seconds=rc.seconds,
                      cache_dir=str(out / "cache"))
    vae_final = rc.vae_dir or str(out / "vae" / "final")
    cfgs = {} if rc.vae_dir else {"vae": vae_train_config(rc, out / "vae", data, rc.seed, rc.vae_ema, quiet)}
    for spec in rc.conditioners:
        name, clap = split_conditioner(spec)
        val_cfg = ValidationConfig(every=rc.val_every, num_prompts=rc.val_prompts, generate=rc.val_generate,
                                   guidance_scales=tuple(rc.guidance_scales), backend="mel-stats",
                                   clap_model=rc.judge_clap or clap)
        start = init_unet_dir(rc, name) if rc.init_from else None
        cfgs[f"ldm-{name}"] = ldm_train_config(rc, out / f"ldm-{name}", vae_final, clap, data, rc.seed, val_cfg, quiet,
                                               start=start)
    return cfgs


def run_stage(cfg) -> dict[str, Any]:
    """Train one stage unless its ``final/`` exists; returns ``{"final", "first_losses", "seconds"}``."""
    from audioldm_cond.train.trainer import Trainer  # noqa: PLC0415 (loads torch and diffusers; only a training run needs them)

    run = Path(cfg.out_dir)
    t0 = time.time()
    summary = None
    if (run / "final" / "model_index.json").exists():
        _check_same_settings(run, cfg)
    else:
        summary = Trainer(cfg).fit()
    log = read_log(run, "train")
    vals = read_log(run, "val")
    bias = [e["value"] for e in read_log(run, "event") if e.get("event") == "init_output_bias"]
    return {"final": str(run / "final"), "first_losses": [r["loss"] for r in log[:5]],
            "init_output_bias": bias[0] if bias else None,
            "last_loss": log[-1]["loss"] if log else None, "validation": vals[-1] if vals else None,
            "seconds_this_run": round(time.time() - t0, 1), "trained_now": summary is not None}


def _check_same_settings(run: Path, cfg) -> None:
    """A finished stage is reused only when it was trained with the settings asked for now."""
    volatile = ("resume", "quiet")
    saved = json.loads((run / "config.json").read_text()) if (run / "config.json").exists() else {}
    if saved:
        # Through the dataclasses: a setting added since that run was trained compares at its default value.

        try:
            saved = json.loads(json.dumps(TrainConfig.from_dict(saved).to_dict()))
        except TypeError:  # a key this version does not know: keep the raw dict, which then differs
            pass
    want = json.loads(json.dumps(cfg.to_dict()))  # tuples -> lists, as saved
    diff = sorted(k for k in set(saved) | set(want) if k not in volatile and saved.get(k) != want.get(k))
    if diff:
        raise UserError(f"{run} was trained with other settings ({', '.join(diff)} differ); use a new --out "
                        "or the settings it was trained with")


def install(out: Path, rc: RecipeConfig, results: dict[str, Any], argv: Sequence[str]) -> list[Path]:
    """Copy each trained LDM into ``audioldm_cond/assets/models/<name>`` with its ``recipe.json`` (atomic)."""
    from audioldm_cond.components import assets_dir  # noqa: PLC0415 (loads torch; only installing the model needs it)

    done = []
    for name in (split_conditioner(c)[0] for c in rc.conditioners):
        src = Path(results[f"ldm-{name}"]["final"])
        dst = assets_dir() / name
        tmp = dst.with_name(f".{name}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("training.json"))
        # A bank folder outside the repository is named BANK_DIR (BANK_DIR2, ...) in the record, as in the command,
        # whose --bank arguments are written again from the banks (one per --bank, '+' specs split).
        banks = portable_banks(rc.banks)
        prc = dataclasses.replace(rc, banks=tuple(banks[b] for b in rc.banks))
        args = ["DIR" if i and argv[i - 1] == "--out" else a for i, a in enumerate(argv)
                if a != "--bank" and not a.startswith("--bank=") and not (i and argv[i - 1] == "--bank")]
        if rc.banks != RecipeConfig().banks:
            args += [x for b in prc.banks for x in ("--bank", shlex.quote(b))]
        record = {"command": "python -m conductor.recipes.audioldm " + " ".join(args),
                  "recipe": dataclasses.asdict(prc), "stages": {k: results[k] for k in ("vae", f"ldm-{name}")}}
        record = {**portable(record, out), "paths": LDM_PATHS_NOTE}
        if rc.banks != RecipeConfig().banks:
            record["paths"] += "; " + BANK_NOTE
        atomic_write_text(tmp / "recipe.json", json.dumps(record, indent=2))
        if dst.exists():
            shutil.rmtree(dst)
        os.replace(tmp, dst)
        done.append(dst)
    return done


def run_recipe(out: str | os.PathLike, rc: RecipeConfig, do_install: bool = True, quiet: bool = False,
               argv: Sequence[str] = ()) -> dict[str, Any]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train, val = build_data(out, rc, quiet=quiet)
    cfgs = stage_configs(out, rc, train, val, quiet=quiet)
    results: dict[str, Any] = {}
    if rc.vae_dir:
        results["vae"] = {"final": rc.vae_dir, "reused": True}
        # A shipped model's VAE keeps the record of the run that trained it (its first losses are re-checked by
        # the tests), so an installed model built on it still says how its VAE was made.
        src = Path(rc.vae_dir) / "recipe.json"
        if src.is_file():
            prev = json.loads(src.read_text())
            vae_rec = (prev.get("stages") or {}).get("vae")
            if isinstance(vae_rec, dict) and vae_rec.get("first_losses"):
                results["vae"] = {**vae_rec, "final": rc.vae_dir, "reused": True,
                                  "trained_by": vae_rec.get("trained_by", prev.get("command"))}
    for name, cfg in cfgs.items():
        continued = name.startswith("ldm-") and rc.init_from
        history = Path(cfg.out_dir) / "continued_from.json"
        if continued and not history.is_file():
            # Kept with the run before it trains: installing overwrites the start model's record when it is a
            # shipped model, and a re-run must still say what the run continued.
            Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
            atomic_write_text(history, json.dumps(continued_record(Path(cfg.model), name), indent=2))
        results[name] = run_stage(cfg)
        if continued:
            results[name]["continued_from"] = json.loads(history.read_text())
        if name.startswith("ldm-"):
            write_model_events(results[name]["final"], rc)
        atomic_write_text(out / "recipe_results.json", json.dumps(results, indent=2))
    if do_install:
        results["installed"] = [str(p) for p in install(out, rc, results, argv)]
    atomic_write_text(out / "recipe_results.json", json.dumps(results, indent=2))
    return results


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m conductor.recipes.audioldm", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="work directory (data, runs, caches); re-run to resume")
    p.add_argument("--quick", action="store_true", help="tiny sizes and a few steps (smoke test)")
    p.add_argument("--no-install", action="store_true", help="do not copy the models into the package")
    p.add_argument("--ldm-steps", type=int, default=None)
    p.add_argument("--vae-steps", type=int, default=None)
    p.add_argument("--conditioners", default=",".join(CONDITIONERS),
                   help="CLAPs to condition on, comma-separated NAME or NAME=CLAP_DIR "
                        "(default: tiny-tclap,tiny-baseline; the installed model is named NAME)")
    p.add_argument("--val-prompts", type=int, default=None, help="validation prompts generated per guidance scale")
    p.add_argument("--unet-channels", default=None,
                   help="a larger UNet for the ldm stages, comma-separated widths, e.g. 32,64,128 (default: the arch's)")
    p.add_argument("--unet-layers", type=int, default=None, help="res blocks per UNet level (default 1)")
    p.add_argument("--unet-position-channels", type=int, default=None,
                   help="fixed time-position input channels of the ldm UNets (default 4; 0: none, as AudioLDM)")
    p.add_argument("--prediction-type", default=None, choices=("epsilon", "v_prediction"),
                   help="the ldm UNets' target (default: v_prediction; AudioLDM's is epsilon)")
    p.add_argument("--snr-gamma", default=None, help="Min-SNR loss weighting of the ldm stages, e.g. 5 (default: none)")
    p.add_argument("--unet-cond-map", default=None, metavar="MxS",
                   help="a learned layout of the condition over time as M input channels at S anchors "
                        "(default 8x8; 0: none, as AudioLDM)")
    p.add_argument("--vae", default=None, help="reuse the VAE (and vocoder) of this trained model directory or "
                   "shipped name instead of training one")
    p.add_argument("--init-from", default=None, metavar="DIR|shipped",
                   help="continue: each conditioner NAME's UNet starts from the model DIR/NAME (or DIR/ldm-NAME/final; "
                        "shipped: the installed models) instead of a fresh UNet; needs --vae, the VAE it was trained on")
    p.add_argument("--n-train", type=int, default=None, help="training mix-ups (each also used order-swapped)")
    p.add_argument("--ldm-batch", type=int, default=None)
    p.add_argument("--ldm-lr", type=float, default=None)
    p.add_argument("--ldm-warmup", type=int, default=None, help="linear learning-rate warm-up steps of the ldm stages")
    p.add_argument("--ldm-decay-steps", type=int, default=None,
                   help="the last N ldm steps lower the learning rate linearly to 0 (default 0: constant)")
    p.add_argument("--ema-decay", type=float, default=None, help="EMA decay of the ldm stages (default 0.98: "
                   "CPU-sized runs; ~0.999 for runs of tens of thousands of steps)")
    p.add_argument("--ckpt-every", type=int, default=None, help="checkpoint every N steps (default 20: CPU-sized)")
    p.add_argument("--val-every", type=int, default=None)
    p.add_argument("--no-val-generate", action="store_true",
                   help="validation computes the held-out loss only (no generation and scoring)")
    p.add_argument("--bank", action="append", default=None, metavar="BANK",
                   help="clip bank of the training and validation mix-ups: builtin (default), a folder per class (tclap "
                        "bank build), or an ESC-50 CSV; repeat it (--bank builtin --bank DIR) to train on the union of "
                        "several banks, each keeping its own hold-out (docs/bank.md)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    rc = RecipeConfig.quick() if args.quick else RecipeConfig()
    if args.bank:
        from tclap.data.banks import bank_parts  # noqa: PLC0415 (loads soundfile; only this branch needs it)

        rc.banks = tuple(bank_parts(args.bank))
    rc.val_generate = not args.no_val_generate
    if args.ldm_steps is not None:
        rc.ldm_steps = args.ldm_steps
    if args.vae_steps is not None:
        rc.vae_steps = args.vae_steps
    if args.val_prompts is not None:
        rc.val_prompts = args.val_prompts
    for flag, attr in (("n_train", "n_train"), ("ldm_batch", "ldm_batch"), ("ldm_lr", "ldm_lr"),
                       ("ckpt_every", "ckpt_every"), ("val_every", "val_every"), ("ldm_warmup", "ldm_warmup"),
                       ("ldm_decay_steps", "ldm_decay_steps"),
                       ("ema_decay", "ema_decay"), ("prediction_type", "prediction_type")):
        if getattr(args, flag) is not None:
            setattr(rc, attr, getattr(args, flag))
    if args.snr_gamma is not None:
        if str(args.snr_gamma).lower() in ("none", "off", "0"):
            rc.snr_gamma = None
        else:
            try:
                rc.snr_gamma = float(args.snr_gamma)
            except ValueError:
                raise UserError(f"--snr-gamma {args.snr_gamma!r}: give a number (e.g. 5) or none") from None
    if any(v is not None for v in (args.unet_channels, args.unet_layers, args.unet_position_channels,
                                   args.unet_cond_map)):

        base = rc.ldm_unet or {}  # what a flag leaves unsaid keeps the recipe's default
        widths = args.unet_channels or ",".join(str(c) for c in base.get("channels", rc.arch["unet_channels"]))
        layers = args.unet_layers if args.unet_layers is not None else base.get("layers_per_block", 1)
        pos = args.unet_position_channels if args.unet_position_channels is not None else base.get(
            "position_channels", 0)
        cmap = (parse_cond_map(args.unet_cond_map) if args.unet_cond_map is not None
                else (base.get("cond_map_channels", 0), base.get("cond_map_segments", 8)))
        rc.ldm_unet = parse_unet_channels(widths, layers, pos, *cmap)
    if args.vae:
        from audioldm_cond.components import resolve_model_dir  # noqa: PLC0415 (loads torch; only this branch needs it)

        rc.vae_dir = str(resolve_model_dir(args.vae))
    if args.init_from:
        rc.init_from = args.init_from
    rc.conditioners = tuple(c.strip() for c in args.conditioners.split(",") if c.strip())
    if not rc.conditioners:
        raise UserError("--conditioners is empty; name at least one CLAP, e.g. tiny-tclap")
    res = run_recipe(args.out, rc, do_install=not args.no_install, quiet=args.quiet, argv=argv)
    print(json.dumps({k: (v.get("last_loss") if isinstance(v, dict) else v) for k, v in res.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
