"""Settings of ``tclap reproduce``, grouped by stage (dataclasses), and the ``quick`` / ``tiny`` presets.

Each stage's settings are hashed into its ``DONE.json`` key (see :mod:`conductor.reproduce.pipeline`): change
one and that stage and every stage after it re-run; the others are kept.

The sizes of the ``tiny`` preset come from the two embedded recipes (``conductor.recipes.clap`` for the
CLAPs, ``conductor.recipes.audioldm`` for the AudioLDMs), scaled so that the whole pipeline fits the
45-minute budget on 2 CPU cores. Both are the recipes' own config classes, never copies: the CLAP settings are
overrides of :class:`conductor.recipes.clap.RecipeConfig`, the AudioLDM settings an instance of
:class:`conductor.recipes.audioldm.RecipeConfig`, whose training configs (``audioldm_cond.train.config.TrainConfig``)
the ldm stage builds with the recipe's own builders.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any

from basekit.errors import UserError
from conductor.recipes.audioldm import RecipeConfig as LdmRecipe

PRESETS = ("quick", "tiny", "paper")


@dataclass
class DataSettings:
    """The AudioLDM training mix-ups and the held-out prompts / reference clips (built-in bank, 16 kHz).

    Held-out items use held-out bank *instances* only (:func:`tclap.synth.instance_split`), so no generated
    prompt's reference clip was heard in training. 2-event sequences without overlap: every prompt states
    an order that the detector can check.
    """

    seconds: float = 4.0
    sr: int = 16000
    n_ldm_train: int = 512
    n_heldout: int = 24  # prompts generated per system and seed
    data_seed: int = 0


@dataclass
class GenerateSettings:
    """``audioldm-cond generate`` settings (the same for both systems)."""

    steps: int = 20
    guidance: float = 3.0
    scheduler: str = "dpm"
    batch_size: int = 8


@dataclass
class ScoreSettings:
    """``eval-gen score``: FAD/KAD on ``backend``, KL on the built-in event classifier, CLAP score and order."""

    backend: str = "mel-stats"  # independent of both CLAPs under comparison
    classifier: str = "builtin-events"
    n_boot: int = 100


@dataclass
class StudySettings:
    """The MOS study written for ``mos serve``."""

    clips_per_rater: int = 12
    min_ratings_per_clip: int = 5


@dataclass
class ReproConfig:
    """Everything ``tclap reproduce`` runs (the ``paper`` preset uses :class:`conductor.reproduce.paper.PaperInputs`)."""

    preset: str = "tiny"
    seeds: tuple[int, ...] = (0,)
    # CLAP recipe (conductor.recipes.clap.RecipeConfig) overrides, all but ``seed``.
    clap: dict[str, Any] = field(default_factory=dict)
    data: DataSettings = field(default_factory=DataSettings)
    # The AudioLDM recipe's settings: the reproduction's VAE keeps no EMA (its runs are one-shot) and checkpoints
    # every 500 steps; validation does not generate (the generate and score stages do that).
    ldm: LdmRecipe = field(default_factory=lambda: LdmRecipe(vae_ema=0.0, ckpt_every=500, val_generate=False))
    generate: GenerateSettings = field(default_factory=GenerateSettings)
    score: ScoreSettings = field(default_factory=ScoreSettings)
    study: StudySettings = field(default_factory=StudySettings)

    def validate(self) -> None:
        from conductor.recipes.clap import RecipeConfig  # noqa: PLC0415

        if not self.seeds:
            raise UserError("--seeds is empty; give at least one seed, e.g. --seeds 0,1,2")
        if len(set(self.seeds)) != len(self.seeds):
            raise UserError(f"--seeds {','.join(map(str, self.seeds))} repeats a seed; give distinct seeds")
        known = {f.name for f in dataclasses.fields(RecipeConfig)} - {"seed"}
        bad = sorted(set(self.clap) - known)
        if bad:
            raise UserError(f"unknown CLAP recipe setting(s) {', '.join(bad)}; known: {', '.join(sorted(known))}")
        if self.data.n_heldout < 2 or self.data.n_ldm_train < 2:
            raise UserError("the data stage needs at least 2 held-out prompts and 2 training mix-ups")
        if self.generate.steps < 1 or self.ldm.vae_steps < 1 or self.ldm.ldm_steps < 1:
            raise UserError("step counts must be >= 1")

    def recipe_config(self, seed: int):
        """The CLAP recipe's :class:`~conductor.recipes.clap.RecipeConfig` for ``seed``."""
        from conductor.recipes.clap import RecipeConfig  # noqa: PLC0415

        return RecipeConfig(**{**self.clap, "seed": seed})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["seeds"] = list(self.seeds)
        return d


# The reproduction's CLAP method, pinned (not the CLAP recipe's defaults): as in the paper, the baseline is the
# CLAP that T-CLAP is fine-tuned from (``baseline="start"``): 800 L_c pre-training steps plus the recipe's
# 1000-step L_c warm stage; T-CLAP fine-tunes it 1000 steps at λ = 4, skipping the overlapping-event mix-ups,
# with no single-event positives and no order-swapped audio as an A2T hard negative (L_t on the text side only,
# as in the paper). The audio tower is nearly all of a step's cost (tiny CLAP, batch 64, fp32, one thread on a
# busy 2-core AVX2 EPYC: audio forward + backward 1.20 s for 64 clips, 2.53 s for 128; text 0.05 / 0.13 s), so
# the swapped audio, which doubles it, is what is left out, and λ buys the order back. Fine-tunes of the same
# warm start (seed 0, 1000 steps unless said; T-Classify T2A / A2T, R@1 T2A, cosine of a held-out prompt's text
# embedding and its order-swapped twin's, on 200 held-out mix-ups): λ = 2: 72.0 / 77.7, 65.5, 0.90; λ = 2 with
# the swapped audio, 500 steps (the same audio cost): 70.7 / 72.6, 66.0, 0.92; λ = 2 with the audio tower frozen:
# 46.5 / 51.6 (the warm audio embedding holds no order to align with); λ = 4: 94.3 / 92.4, 60.0, 0.78 (the shipped
# tiny-tclap: 0.75; the baseline: 0.998). What the AudioLDM comparison needs is that cosine: the AudioLDM recipe's
# UNets learned the order from the shipped T-CLAP's text embedding, not from a 0.90 one (README, Table-4 section).
REPRO_CLAP_METHOD = {"warm_steps": 1000, "baseline": "start", "lambda_t": 4.0, "unpaired": "skip", "wise_alpha": 1.0,
                     "singles_per_class": 0, "negative_audio": False}


def make_config(preset: str, seeds: tuple[int, ...] | None = None) -> ReproConfig:
    """The settings of ``preset`` (``quick`` or ``tiny``), with ``seeds`` when given.

    ``quick`` is a smoke run for tests (a few optimiser steps everywhere, 4 prompts; minutes on 2 cores):
    its numbers are meaningless. ``tiny`` is the miniature reproduction whose report is read.
    """
    if preset == "quick":
        cfg = ReproConfig(
            preset="quick", seeds=(0,),
            clap={**REPRO_CLAP_METHOD, "n_train": 24, "batch_size": 8, "pretrain_steps": 2, "warm_steps": 2,
                  "finetune_steps": 2, "heldout_mixes": 12},
            data=DataSettings(n_ldm_train=8, n_heldout=4),
            ldm=LdmRecipe(vae_steps=2, vae_batch=4, ldm_steps=2, ldm_batch=4, ldm_warmup=0, ckpt_every=1, vae_ema=0.0,
                          val_generate=False),
            generate=GenerateSettings(steps=3, batch_size=4),
            score=ScoreSettings(n_boot=0),
            study=StudySettings(clips_per_rater=4, min_ratings_per_clip=2),
        )
    elif preset == "tiny":
        # Budget: 45 minutes on 2 CPU cores. Measured from a fresh clone (this machine, 2 cores, --jobs 2) with
        # 3000 CLAP mix-ups, 512 AudioLDM mix-ups, 24 prompts and 3000 LDM steps: 24 min 36 s in all (CLAP
        # stage 17.0 min: pre-training at 2 threads, then both fine-tunes side by side; VAE + both UNets side
        # by side 6.9 min; generation and scoring 31 s). That left room, spent here where it buys the most:
        # 10 000 CLAP mix-ups (from the CLAP recipe's runs: at 3000, T-CLAP's retrieval R@1 fell ~30 points
        # below the baseline's, at 10 000 ~10-14: the conditioner's event identity is what the AudioLDM
        # comparison needs), 1024 AudioLDM mix-ups (the AudioLDM recipe's n_train), 6000 LDM steps (at 3000
        # both UNets were still at the floor: 1-2 of 24 prompts right, FAD ~360) and 100 held-out prompts
        # (24 cannot tell two systems apart). Batch 64 and 1000 fine-tuning steps at λ = 2 from the CLAP
        # recipe (a run at batch 32 / 900 steps never left L_t's ln 2 plateau). Measured with these settings
        # from a fresh clone: 29 min 52 s (CLAP 16.2 min, LDM 12.3 min, generation 51 s, scoring 16 s).
        # One seed by default; ``--seeds 0,1,2`` gives the three-seed spread at ~3x the time.
        # That machine had native bf16 (AMX). On an AVX2-only EPYC the same CLAP stage would run bf16 emulated (8x
        # slower); the CLAP recipe now picks fp32 there ("auto"), and this preset drops the swapped-audio hard
        # negative (half the T-CLAP fine-tune's cost) and trains the UNets (now the AudioLDM recipe's: position
        # channels, condition map, v-prediction) 5000 steps: both UNets side by side run 5.8 steps/s each there.
        # Fresh-clone runs since (T-Classify T2A / A2T of T-CLAP vs the baseline; detected order accuracy of
        # AudioLDM_T vs AudioLDM_L; UNet order preference T vs L):
        #   AVX2, λ = 2, no warm stage: 38 min 46 s; 71.3 / 73.9 vs 48.4 / 52.9; 19% vs 21%; 55% vs 40%.
        #   AVX2, λ = 2, warm stage, baseline = warm start: 42 min 44 s; 72.0 / 77.7 vs 46.5 / 56.7; 19% vs 20%;
        #   53% vs 42%.
        #   Intel Xeon with AMX (bf16), λ = 4 (REPRO_CLAP_METHOD above), commit 6f15830: 25 min 9 s after a 55 s
        #   install (CLAP 12.4 min, LDM 11.0 min, generation 60 s, scoring 32 s); 88.5 / 84.1 vs 43.3 / 54.8;
        #   24% vs 14% (400 clips of benchmarks/ldm_table4.py: 32.8% vs 27.5%); 70% vs 47%. On the AVX2 machine
        #   the same commit's CLAP stage took 18.4 min (90.4 / 88.5 vs 46.5 / 56.7), ~39 min in all by the
        #   other stages' times there.
        cfg = ReproConfig(
            preset="tiny", seeds=(0,),
            clap={**REPRO_CLAP_METHOD, "n_train": 10000, "batch_size": 64, "pretrain_steps": 800,
                  "finetune_steps": 1000, "heldout_mixes": 200},
            data=DataSettings(n_ldm_train=1024, n_heldout=100),
            ldm=LdmRecipe(vae_steps=1000, ldm_steps=5000, ckpt_every=500, vae_ema=0.0, val_generate=False),
        )
    else:
        raise UserError(f"unknown preset {preset!r}; use quick, tiny or paper")
    if seeds is not None:
        cfg.seeds = tuple(seeds)
    cfg.validate()
    return cfg


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` -> ``(0, 1, 2)``; a bad list is a one-line :class:`UserError`."""
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise UserError(f"--seeds {text!r}: give comma-separated integers, e.g. 0,1,2") from None
    if not seeds or any(s < 0 for s in seeds):
        raise UserError(f"--seeds {text!r}: give one or more non-negative integers, e.g. 0,1,2")
    return seeds
