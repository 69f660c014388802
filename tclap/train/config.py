"""Training configuration as dataclasses, and the ``tiny`` / ``paper`` presets.

Mix ratio: the paper adds the temporal sets (ESC-mixed-up, AudioCaps/Clotho with LLM negatives) to the
positive-only set (Auto-ACD) "at a ratio of 1:4 within each batch", i.e. temporal samples are 1 part in 5
of every batch: ``temporal_fraction = 0.2``. ``--mix-ratio T:P`` gives ``T / (T + P)``. When no positive-only
set is given, every sample comes from the temporal sets whatever the fraction.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from basekit.errors import UserError


@dataclass
class OptimConfig:
    """AdamW and the learning-rate schedule (linear warm-up, then constant or cosine to ``min_lr_ratio``)."""

    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.99)
    eps: float = 1e-8
    warmup_steps: int = 10_000
    schedule: str = "constant"  # "constant" | "cosine"
    min_lr_ratio: float = 0.0
    grad_accum: int = 1
    max_grad_norm: float | None = None


@dataclass
class DataConfig:
    """How batches are drawn: global batch size, the share of temporal samples in each, and how streamed sources
    are read (shards, ``bank:`` mix-ups; see :mod:`tclap.data.stream`)."""

    batch_size: int = 512
    temporal_fraction: float = 0.2  # paper: 1:4 (temporal : positive-only)
    use_negative_audio: bool = False  # also embed an item's order-swapped audio as an extra A2T hard negative
    # A --train item without a negative caption (a mix-up of overlapping events: no order to swap) when λ > 0:
    # "skip" it (counted), or move it to the positive-only pool ("positive") so L_c still sees it. Streamed
    # sources keep such items in the temporal share as L_c-only rows with "positive".
    unpaired: str = "skip"
    # Streamed sources only (manifests alone are read into memory and ignore these):
    workers: int = 2  # DataLoader workers per process (readers); 0 reads in the training process
    resampled: bool = False  # draw shards with replacement, endlessly, instead of epochs
    shuffle_buffer: int = 128  # items per reader shuffled within a shard
    data_timeout: float = 600.0  # seconds without a chunk from a worker before the run stops with one line
    log_sample_ids: bool = False  # write the ids of every micro-step's rows to sample_ids.rank<R>.jsonl
    shard_index: tuple[str, ...] = ()  # index files counting pipe:/remote shards by tar name (no reading them)
    # bank:SPEC sources (mix-ups made on the fly from the bank's training split), as `tclap mixup` takes them:
    bank_seconds: float | None = None  # mix-up length; None = the model's clip length
    bank_events: tuple[int, int] = (2, 3)  # events per ordered mix-up
    bank_overlap_prob: float = 0.2  # share of overlap mix-ups (no order to swap: L_c-only rows)
    bank_test_folds: tuple[int, ...] = (5,)  # ESC-50 folds held out of training mixes
    bank_phrases: str | None = None  # label -> caption phrase file for folder / CSV banks


@dataclass
class LossConfig:
    """L_train = L_c + λ·L_t; ``temporal_scale`` multiplies L_t's cosines by the learned logit scale."""

    lambda_t: float = 0.5
    temporal_scale: bool = True


@dataclass
class TrainConfig:
    """Everything one ``tclap train`` run needs (saved as ``train_config.json`` in the run folder)."""

    preset: str = "paper"
    init: str | None = None  # a model name or directory for tclap.models.load_clap
    steps: int = 30_000
    seed: int = 0
    mixed_precision: str = "no"  # "no" | "fp16" | "bf16" | "auto" (bf16 where native, else fp32; resolved by train())
    freeze_audio: bool = False
    freeze_text: bool = False
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    log_every: int = 10
    dropout: float | None = None  # override every dropout probability (None keeps the model's)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        o = dict(d.pop("optim", {}))
        if "betas" in o:
            o["betas"] = tuple(o["betas"])  # JSON stores the pair as a list
        optim = OptimConfig(**o)
        data = dict(d.pop("data", {}))
        for key in ("bank_events", "bank_test_folds", "shard_index"):
            if key in data:
                data[key] = tuple(data[key])  # JSON stores tuples as lists
        return cls(optim=optim, data=DataConfig(**data), loss=LossConfig(**d.pop("loss", {})), **d)

    def validate(self) -> None:
        if self.steps < 1:
            raise UserError(f"--steps must be >= 1, got {self.steps}")
        if self.data.batch_size < 2:
            raise UserError(f"--batch-size must be >= 2 (contrastive learning needs negatives), got {self.data.batch_size}")
        if self.data.unpaired not in ("skip", "positive"):
            raise UserError(f"--unpaired {self.data.unpaired!r}: give skip or positive")
        if not 0.0 <= self.data.temporal_fraction <= 1.0:
            raise UserError(f"--temporal-fraction must lie in [0, 1], got {self.data.temporal_fraction}")
        if self.loss.lambda_t < 0:
            raise UserError(f"--lambda-t must be >= 0, got {self.loss.lambda_t}")
        if self.optim.lr <= 0:
            raise UserError(f"--lr must be > 0, got {self.optim.lr}")
        if self.optim.warmup_steps < 0 or self.optim.grad_accum < 1:
            raise UserError("--warmup must be >= 0 and --grad-accum >= 1")
        if self.optim.schedule not in ("constant", "cosine"):
            raise UserError(f"--schedule must be 'constant' or 'cosine', got {self.optim.schedule!r}")
        if self.mixed_precision not in ("no", "fp16", "bf16", "auto"):
            raise UserError(f"--mixed-precision must be no, fp16, bf16 or auto, got {self.mixed_precision!r}")
        if self.data.workers < 0 or self.data.shuffle_buffer < 0 or self.data.data_timeout <= 0:
            raise UserError("--workers and --shuffle-buffer must be >= 0 and --data-timeout > 0")
        if self.freeze_audio and self.freeze_text:
            raise UserError("--freeze-audio and --freeze-text together leave nothing but the logit scale to train")


def parse_mix_ratio(text: str) -> float:
    """``"1:4"`` (temporal : positive-only) -> 0.2, the temporal share of each batch."""
    try:
        t, p = (float(x) for x in text.split(":"))
    except ValueError:
        raise UserError(f"--mix-ratio {text!r} must look like T:P, e.g. 1:4 (temporal : positive-only)") from None
    if t < 0 or p < 0 or t + p == 0:
        raise UserError(f"--mix-ratio {text!r} needs non-negative parts that are not both zero")
    return t / (t + p)


def preset(name: str) -> TrainConfig:
    """The named preset.

    - ``paper``: the paper's fine-tuning recipe: batch 512, lr 1e-4, 30k steps, linear warm-up over the
      first 10k then constant, λ = 0.5, temporal share 1:4; ``init`` must name a LAION-CLAP / HF model.
    - ``tiny``: the built-in bank's tiny CLAP trained from random init on CPU: batch 64, lr 1e-3, cosine
      after a short warm-up; every sample of the built-in mix-ups is temporal.
    """
    if name == "paper":
        return TrainConfig(
            preset="paper", init=None, steps=30_000, checkpoint_every=1000,
            optim=OptimConfig(lr=1e-4, warmup_steps=10_000, schedule="constant"),
            data=DataConfig(batch_size=512, temporal_fraction=0.2), loss=LossConfig(lambda_t=0.5),
        )
    if name == "tiny":
        return TrainConfig(
            preset="tiny", init="tiny", steps=1500, checkpoint_every=250, log_every=10,
            optim=OptimConfig(lr=1e-3, warmup_steps=100, schedule="cosine", min_lr_ratio=0.05, weight_decay=0.01),
            data=DataConfig(batch_size=64, temporal_fraction=0.8), loss=LossConfig(lambda_t=0.5),
        )
    raise UserError(f"unknown preset {name!r}; choose 'tiny' or 'paper'")
