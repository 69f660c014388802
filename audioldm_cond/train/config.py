"""Configuration of ``audioldm-cond train``, grouped by component (dataclasses, no flag soup).

The resolved :class:`TrainConfig` is written as ``config.json`` into the run directory and into every
checkpoint, so a run can be inspected, resumed or repeated from its own record.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from basekit.errors import UserError

Stage = Literal["vae", "ldm"]
CondSource = Literal["text", "audio", "mix"]
STAGES = ("vae", "ldm")
COND_SOURCES = ("text", "audio", "mix")
MIXED_PRECISION = ("no", "fp16", "bf16")


@dataclass
class DataConfig:
    """Where the clips come from and how they are cut.

    ``seconds``: every clip is cut or zero-padded to this length before the mel front end (None: the
    length of the first training clip). ``cache_dir``: where mels, latents and conditioning embeddings are
    cached (None: ``<out>/cache``); cache files are keyed by the content they were computed from.
    """

    train_manifest: str = ""
    val_manifest: str | None = None
    seconds: float | None = None
    cache_dir: str | None = None
    max_val_items: int = 64
    # Every --train SOURCE (() = just train_manifest). One manifest is read into memory with the caches above;
    # shards, pipe: commands, bank:SPEC, or several sources stream instead (audioldm_cond.train.stream), with
    # the settings below (as `tclap train` takes them; docs/streaming.md).
    train_sources: tuple[str, ...] = ()
    workers: int = 2  # DataLoader workers (readers) per process; 0 reads in the training process
    resampled: bool = False  # draw shards with replacement, endlessly, instead of epochs
    shuffle_buffer: int = 128  # items per reader shuffled within a shard
    data_timeout: float = 600.0  # seconds without data from a worker before the run stops with one line
    log_sample_ids: bool = False  # write each micro-step's item ids to OUT/sample_ids.rank<R>.jsonl
    shard_index: tuple[str, ...] = ()  # index files counting pipe:/remote shards by tar name
    bank_events: tuple[int, int] = (2, 3)  # bank: sources: events per ordered mix-up (length: --seconds)
    bank_overlap_prob: float = 0.2  # bank: sources: share of overlap mix-ups
    bank_test_folds: tuple[int, ...] = (5,)  # bank: sources: ESC-50 folds held out of the training mixes
    bank_phrases: str | None = None  # bank: sources: label -> caption phrase file

    def sources(self) -> list[str]:
        """The training SOURCE strings."""
        return list(self.train_sources) or ([self.train_manifest] if self.train_manifest else [])

    def streamed(self) -> bool:
        """Whether the run streams: a source that is not a manifest, or several sources."""
        from tclap.data.stream.sources import is_streamed  # noqa: PLC0415 (tclap.data.stream loads torch; the config stays torch-free)

        srcs = self.sources()
        return len(srcs) > 1 or any(is_streamed(s) for s in srcs)


@dataclass
class OptimConfig:
    """Optimiser and schedule: AdamW; linear warm-up, then constant (diffusers' examples default), and with
    ``decay_steps`` > 0 the last ``decay_steps`` of ``steps`` fall linearly to 0 (warm-up / stable / decay).

    The schedule is a function of the step alone, so a run resumed with more ``steps`` and a decay continues
    the constant phase it was in, then anneals: the recipe's way to end a long constant-rate run.
    """

    steps: int = 1000
    batch_size: int = 16
    lr: float = 1e-4
    grad_accum: int = 1
    weight_decay: float = 1e-2
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    decay_steps: int = 0


@dataclass
class VaeStageConfig:
    """Stage ``vae``: reconstruction (L1 + L2) of log-mels plus a small KL term (AudioLDM uses ~1e-6).

    ``crop_frames`` must be a multiple of the VAE's downsampling factor.
    """

    l1_weight: float = 1.0
    l2_weight: float = 1.0
    kl_weight: float = 1e-6
    # Train on random windows of this many mel frames (None: whole clips). The VAE is convolutional, so
    # windows teach it the same local maps at a fraction of the cost of full clips on a CPU.
    crop_frames: int | None = None
    # Start the decoder's output bias at the mean training log-mel (about -8 here, where Adam at lr 1e-3 would
    # need thousands of steps to walk it from 0); only for a VAE built from scratch (--model tiny).
    init_output_bias: bool = True


@dataclass
class LdmStageConfig:
    """Stage ``ldm``: noise-prediction MSE of the UNet on frozen, scaled VAE latents.

    ``cond_source``: what the frozen conditioner embeds during training: ``audio`` (AudioLDM's choice:
    the CLAP audio embedding of the training clip), ``text`` (the CLAP text embedding of one of its
    captions) or ``mix`` (text or audio, a coin flip per sample). ``cfg_dropout``: share of samples whose
    condition is replaced by the unconditional one (classifier-free guidance; training only).
    ``scaling_factor``: ``estimate`` sets ``vae.config.scaling_factor`` to 1/std of the training latents
    (a VAE trained from scratch), ``keep`` keeps the loaded one (fine-tuning a real AudioLDM), or a number.
    """

    cond_source: CondSource = "text"
    cfg_dropout: float = 0.1
    scaling_factor: str = "estimate"
    snr_gamma: float | None = None
    # The UNet's target: None keeps the model's scheduler setting; "epsilon" or "v_prediction" sets it (saved
    # with the model's scheduler, so generation follows). Unweighted v-prediction weighs the layout of the
    # clip at high noise far more than epsilon-prediction does.
    prediction_type: str | None = None
    # A fresh UNet of this architecture instead of the loaded model's: {"channels": [32, 64, 128],
    # "layers_per_block": 1, "attention": true, "position_channels": 4} (e.g. a larger UNet on the embedded
    # model's VAE; position_channels: fixed time-position input channels, ``components.TimePositionChannels``).
    unet: dict | None = None


def parse_unet_channels(text: str, layers_per_block: int = 1, position_channels: int = 0,
                        cond_map_channels: int = 0, cond_map_segments: int = 8) -> dict:
    """``"32,64,128"`` -> the ``LdmStageConfig.unet`` dict; a bad list is a one-line :class:`UserError`."""
    try:
        chans = [int(c) for c in str(text).split(",") if c.strip()]
    except ValueError:
        chans = []
    if not chans or min(chans) < 8 or layers_per_block < 1:
        raise UserError(f"--unet-channels {text!r}: give comma-separated widths of at least 8, e.g. 32,64,128 "
                        "(and --unet-layers >= 1)")
    if not 0 <= int(position_channels) <= 64:
        raise UserError(f"--unet-position-channels {position_channels}: give 0 (none, as AudioLDM) to 64, e.g. 4")
    if not 0 <= int(cond_map_channels) <= 64 or not 2 <= int(cond_map_segments) <= 64:
        raise UserError(f"--unet-cond-map {cond_map_channels}x{cond_map_segments}: give 0 (none, as AudioLDM) to 64 "
                        "channels over 2-64 segments, e.g. 8x8")
    out = {"channels": chans, "layers_per_block": int(layers_per_block), "attention": True}
    if position_channels:
        out["position_channels"] = int(position_channels)
    if cond_map_channels:
        out["cond_map_channels"], out["cond_map_segments"] = int(cond_map_channels), int(cond_map_segments)
    return out


def parse_cond_map(text: str | None) -> tuple[int, int]:
    """``"8x8"`` (channels x segments) or ``"8"`` (8 segments) -> ``(8, 8)``; None/"0" -> ``(0, 8)``."""
    if text in (None, "", "0"):
        return 0, 8
    try:
        parts = [int(p) for p in str(text).lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2):
        raise UserError(f"--unet-cond-map {text!r}: give CHANNELSxSEGMENTS, e.g. 8x8")
    return parts[0], parts[1] if len(parts) == 2 else 8


@dataclass
class ValidationConfig:
    """Validation every ``every`` optimiser steps (0: only at the end).

    Stage ``ldm`` generates ``num_prompts`` validation prompts at each guidance scale in
    ``guidance_scales`` with ``num_inference_steps`` sampler steps, and scores them with eval_gen
    against the validation clips (FAD / KAD on ``backend``, CLAP score, temporal-order accuracy).
    """

    every: int = 0
    num_prompts: int = 16
    guidance_scales: tuple[float, ...] = (1.0, 2.5, 4.0)
    num_inference_steps: int = 20
    backend: str = "mel-stats"
    clap_model: str = "tiny-tclap"  # the CLAP that judges CLAP score / CLAP order accuracy
    generate: bool = True


@dataclass
class TrainConfig:
    """Everything one ``audioldm-cond train`` run needs."""

    stage: Stage = "ldm"
    out_dir: str = ""
    model: str = "tiny"
    clap: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    vae: VaeStageConfig = field(default_factory=VaeStageConfig)
    ldm: LdmStageConfig = field(default_factory=LdmStageConfig)
    val: ValidationConfig = field(default_factory=ValidationConfig)
    ema_decay: float = 0.999
    mixed_precision: str = "no"
    ckpt_every: int = 500
    ckpt_keep: int = 2
    seed: int = 0
    resume: bool = False
    quiet: bool = False
    tiny_kwargs: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise :class:`UserError` (one line) on a setting that cannot work."""
        if self.stage not in STAGES:
            raise UserError(f"--stage {self.stage!r} is unknown; use one of {', '.join(STAGES)}")
        if not self.out_dir:
            raise UserError("--out is required: the run directory for checkpoints, logs and the final model")
        if not self.data.sources():
            raise UserError("--train is required: a JSON Lines manifest of training clips (see `tclap mixup`), "
                            "shards or bank:SPEC")
        if self.data.workers < 0 or self.data.shuffle_buffer < 0 or not self.data.data_timeout > 0:
            raise UserError("--workers and --shuffle-buffer must be >= 0 and --data-timeout > 0")
        if self.ldm.cond_source not in COND_SOURCES:
            raise UserError(f"--cond-source {self.ldm.cond_source!r} is unknown; use text, audio or mix")
        if self.mixed_precision not in MIXED_PRECISION:
            raise UserError(f"--mixed-precision {self.mixed_precision!r} is unknown; use no, fp16 or bf16")
        for name, value in (("--steps", self.optim.steps), ("--batch-size", self.optim.batch_size),
                            ("--grad-accum", self.optim.grad_accum)):
            if value < 1:
                raise UserError(f"{name} must be >= 1, got {value}")
        if not self.optim.lr > 0:
            raise UserError(f"--lr must be > 0, got {self.optim.lr}")
        if self.optim.decay_steps < 0 or self.optim.decay_steps > max(0, self.optim.steps - self.optim.warmup_steps):
            raise UserError(f"--decay-steps {self.optim.decay_steps} must be in [0, steps - warm-up steps = "
                            f"{self.optim.steps - self.optim.warmup_steps}]; e.g. --decay-steps "
                            f"{max(0, (self.optim.steps - self.optim.warmup_steps) // 8)}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise UserError(f"--ema-decay must be in [0, 1), got {self.ema_decay} (0 turns EMA off)")
        if self.ldm.prediction_type not in (None, "epsilon", "v_prediction"):
            raise UserError(f"--prediction-type {self.ldm.prediction_type!r}: use epsilon or v_prediction")
        if self.ldm.unet is not None:
            unknown = sorted(set(self.ldm.unet) - {"channels", "layers_per_block", "attention", "position_channels",
                                              "cond_map_channels", "cond_map_segments"})
            if unknown or not self.ldm.unet.get("channels"):
                raise UserError(f"ldm.unet {self.ldm.unet}: give channels (and optionally layers_per_block, attention)"
                                + (f"; unknown keys {unknown}" if unknown else ""))
        if not 0.0 <= self.ldm.cfg_dropout < 1.0:
            raise UserError(f"--cfg-dropout must be in [0, 1), got {self.ldm.cfg_dropout}")
        if self.val.every < 0 or self.ckpt_every < 0:
            raise UserError("--val-every and --ckpt-every must be >= 0 (0: only at the end)")
        if self.data.seconds is not None and not self.data.seconds > 0:
            raise UserError(f"--seconds must be > 0, got {self.data.seconds}")
        sf = self.ldm.scaling_factor
        if sf not in ("estimate", "keep"):
            try:
                ok = float(sf) > 0
            except ValueError:
                ok = False
            if not ok:
                raise UserError(f"--scaling-factor {sf!r}: use 'estimate', 'keep' or a positive number")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        d = dict(d)
        sub = {"data": DataConfig, "optim": OptimConfig, "vae": VaeStageConfig, "ldm": LdmStageConfig,
               "val": ValidationConfig}
        for key, klass in sub.items():
            if key in d and isinstance(d[key], dict):
                v = dict(d[key])
                if key == "val" and "guidance_scales" in v:
                    v["guidance_scales"] = tuple(v["guidance_scales"])
                d[key] = klass(**v)
        return cls(**d)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir)

    @property
    def cache_dir(self) -> Path:
        return Path(self.data.cache_dir) if self.data.cache_dir else self.run_dir / "cache"
