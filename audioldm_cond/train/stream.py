"""Streamed training data for ``audioldm-cond train``: shards, ``pipe:`` commands, manifests and ``bank:`` mix-ups.

The in-memory path (:mod:`audioldm_cond.train.data`) caches every clip's mel, VAE latent and CLAP embedding;
this one holds none of them. It reuses ``tclap``'s streaming layer (:mod:`tclap.data.stream`) whole: the same
SOURCE kinds, the same data plan (readers = processes x DataLoader workers, shards dealt out per epoch, a
resampled endless mode, counts and the remainder reported) and the same exact resume (micro-step ``m``'s rows are
a pure function of ``(seed, readers, m)`` and the data). Only the features differ:

- in the workers (:class:`LdmFeaturizer`): decoding and resampling to the AudioLDM front end's rate, zero-pad at
  the end or centre-crop to ``n_samples`` (as :func:`audioldm_cond.train.data.load_waves`), and the log-mel
  ``[b, 1, frames, n_mels]`` (frames cut to the multiple the VAE and UNet need);
- in the training process, per micro-step: the frozen VAE's posterior of those mels and the frozen CLAP's
  conditioning embeddings of the rows that need one (the trainer does that, :meth:`Trainer.stream_ldm_loss`).

All sources form one group (tclap's positive-only group: the LDM has no negatives), so every row of a batch comes
from the merged shards/manifests or, split evenly, from each ``bank:`` source. Every streamed item needs a
caption (the shard layout has one in its ``.json``), also for ``--cond-source audio``.

Statistics the in-memory path takes over all clips (the latent scale, the clamp range, a fresh VAE's output
bias) come here from a *sample*: the global batches of the first micro-steps (at least 256 clips where the run
has that many rows in its first 4 micro-steps), read in the training process by every process alike, so that
every process derives the same numbers.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from basekit.errors import UserError
from audioldm_cond.components.config import CONFIG_FILE
from audioldm_cond.components.io import resolve_model_dir
from audioldm_cond.mel import AudioLDMMelConfig, AudioLDMMelFrontEnd
from audioldm_cond.train.data import read_clip_set
from basekit.audio import pad_or_crop
from tclap.data.stream import ChunkBuilder, ChunkOptions, CountCache, ProcessStream, build_plan
from tclap.train.config import TrainConfig as ClapTrainConfig

SAMPLE_ROWS, SAMPLE_MICRO_STEPS = 256, 4
NAME = "audioldm-cond train"


class LdmFeaturizer:
    """Turns a reader's decoded rows into a chunk (runs inside a DataLoader worker; picklable).

    Args:
        mel: the AudioLDM front end's settings (``AudioLDMMelFrontEnd.to_dict()``).
        n_samples: samples per clip at ``mel["sample_rate"]``.
        frame_multiple: mel frames are cut to a multiple of this (the VAE's and UNet's down-sampling).
        keep_waves: also return the padded waves (CLAP audio conditioning needs them).
    """

    def __init__(self, mel: dict, n_samples: int, frame_multiple: int, keep_waves: bool) -> None:
        self.mel, self.n_samples, self.frame_multiple, self.keep_waves = dict(mel), int(n_samples), int(frame_multiple), keep_waves
        self.sample_rate = int(mel["sample_rate"])
        self._fe = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fe": None}

    def __call__(self, micro: int, reader: int, rows: list, events: list) -> dict:
        """Chunk ``{"micro", "reader", "mel": [b, 1, F, M], "waves": [b, T] | None, "captions", "ids", "events"}``."""

        if self._fe is None:
            self._fe = AudioLDMMelFrontEnd(**self.mel)
        waves = np.zeros((len(rows), self.n_samples), dtype=np.float32)
        for k, r in enumerate(rows):
            waves[k] = pad_or_crop(r.wave, self.n_samples, mode="pad")
        x = torch.from_numpy(waves)
        frames = self._fe.mel_frames(self.n_samples)
        frames -= frames % self.frame_multiple
        with torch.no_grad():
            mel = self._fe(x).float()[:, :, :frames] if rows else torch.zeros(0, 1, frames, self._fe.n_mels)
        caps = [[c for c in r.item.meta.get("captions") or [] if isinstance(c, str) and c.strip()] for r in rows]
        return {"micro": micro, "reader": reader, "mel": mel, "waves": x if self.keep_waves else None,
                "captions": caps, "ids": [r.item.id for r in rows], "events": events}


@dataclass
class StreamBatch:
    """One process's rows of a micro-step: ``mel [b, 1, F, M]``, ``waves [b, T]`` (or None), captions, ids."""

    micro: int
    mel: torch.Tensor
    waves: torch.Tensor | None
    captions: list[list[str]]
    ids: list[str]
    events: list

    def __len__(self) -> int:
        return len(self.ids)


def merge_chunks(chunks: list[dict]) -> StreamBatch:
    """The readers' chunks of one micro-step, in reader order, as one :class:`StreamBatch`."""
    waves = [c["waves"] for c in chunks]
    return StreamBatch(int(chunks[0]["micro"]), torch.cat([c["mel"] for c in chunks]),
                       torch.cat(waves) if all(w is not None for w in waves) else None,
                       [cap for c in chunks for cap in c["captions"]], [i for c in chunks for i in c["ids"]],
                       [e for c in chunks for e in c["events"]])


def plan_settings(cfg):
    """The ``tclap`` training config whose data settings :func:`tclap.data.stream.build_plan` reads, from ours."""

    d = cfg.data
    t = ClapTrainConfig(preset="audioldm", steps=cfg.optim.steps, seed=cfg.seed)
    t.optim.grad_accum = cfg.optim.grad_accum
    t.loss.lambda_t = 0.0  # no negatives: every row is an (audio, caption) pair
    for name in ("workers", "resampled", "shuffle_buffer", "data_timeout", "log_sample_ids", "bank_overlap_prob",
                 "bank_phrases"):
        setattr(t.data, name, getattr(d, name))
    t.data.batch_size = cfg.optim.batch_size
    t.data.temporal_fraction = 0.0
    t.data.unpaired = "positive"
    t.data.shard_index = tuple(d.shard_index)
    t.data.bank_events = tuple(d.bank_events)
    t.data.bank_test_folds = tuple(d.bank_test_folds)
    t.data.bank_seconds = d.seconds
    return t


def build_data_plan(cfg, world: int, sample_rate: int, cache, quiet: bool = False):
    """The run's :class:`tclap.data.stream.DataPlan` over ``world`` processes (sources resolved and counted)."""

    if cfg.data.seconds is None:
        raise UserError("streamed --train sources need --seconds (every clip is cut or zero-padded to it in the "
                        "data workers), e.g. --seconds 10.24")
    return build_plan(plan_settings(cfg), [], list(cfg.data.sources()), world, int(sample_rate),
                      float(cfg.data.seconds), cache, quiet=quiet)


class StreamData:
    """This process's readers of a plan, as :class:`StreamBatch` es per micro-step.

    Args:
        plan: the run's data plan (the same on every process).
        cfg: the run's :class:`audioldm_cond.train.config.TrainConfig`.
        featurizer: the workers' :class:`LdmFeaturizer`.
        rank: this process's index.
    """

    def __init__(self, plan, cfg, featurizer: LdmFeaturizer, rank: int) -> None:

        self.plan, self.cfg, self.rank = plan, cfg, rank
        self.opts = ChunkOptions({}, cfg.seed, 0.0, False, featurize=featurizer)
        self.skipped: dict[str, int] = {}
        self._stream = None

    def batches(self, start: int) -> Iterator[StreamBatch]:
        """Micro-steps ``start, start + 1, ...`` of this process (DataLoader workers, or in-process with 0)."""

        self._stream = ProcessStream(self.plan, self.rank, start, self.opts, self.cfg.data.data_timeout)
        for micro, chunks in enumerate(self._stream, start):
            b = merge_chunks(chunks)
            self._note(b.events)
            if not len(b):
                raise UserError(f"rank {self.rank}: every row of micro-step {micro} was unreadable (named above); "
                                "fix or remove those shards")
            yield b

    def sample(self) -> StreamBatch:
        """The global batches of the first micro-steps (every reader of every process), read here: the sample the
        run's statistics come from (see the module docstring). Identical on every process."""

        n = max(1, min(SAMPLE_MICRO_STEPS, math.ceil(SAMPLE_ROWS / self.cfg.optim.batch_size),
                       self.plan.micro_steps))
        builders = [ChunkBuilder(self.plan, g, self.opts) for g in range(self.plan.readers)]
        chunks = [b.chunk(m) for m in range(n) for b in builders]
        out = merge_chunks(chunks)
        if not len(out):
            raise UserError("the first micro-steps of the streamed sources hold no readable clip (named above)")
        return out

    def _note(self, events) -> None:
        """Print each problem a reader met (one line) and count it by kind."""
        for kind, n, line in events:
            print(f"{NAME}: {'rank %d: ' % self.rank if self.plan.world > 1 else ''}{line}", file=sys.stderr)
            self.skipped[kind] = self.skipped.get(kind, 0) + n

    def all_skipped(self) -> dict[str, int]:
        """Items skipped by the plan (counting) and by this process's readers (reading)."""
        out: dict[str, int] = {}
        for st in self.plan.streams:
            for k, n in st.skipped.items():
                out[k] = out.get(k, 0) + n
        for k, n in self.skipped.items():
            out[k] = out.get(k, 0) + n
        return out

    def explain(self, exc: BaseException) -> str | None:
        """One line for an error of the data workers (one that died or hung), None for other errors."""
        return self._stream.explain(exc) if self._stream is not None else None

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()


def model_sample_rate(model: str) -> int:
    """The AudioLDM front end's rate of ``--model``, read from its ``audioldm_cond.json`` without loading weights
    (16 kHz, AudioLDM's, for ``tiny`` and for plain diffusers directories)."""

    default = AudioLDMMelConfig().sample_rate
    if model == "tiny":
        return default

    path = resolve_model_dir(model) / CONFIG_FILE
    if not path.is_file():
        return default
    try:
        return int(json.loads(path.read_text(encoding="utf-8")).get("mel", {}).get("sample_rate", default))
    except (ValueError, AttributeError):
        return default


def plan_lines(cfg, world: int) -> list[str]:
    """What ``audioldm-cond train --dry-run`` prints: the data plan, from the sources and the settings alone."""

    o = cfg.optim
    head = (f"{NAME} --dry-run: stage {cfg.stage}, model {cfg.model}, {o.steps} step(s) x grad-accum {o.grad_accum}, "
            f"global batch {o.batch_size}, cond-source {cfg.ldm.cond_source}")
    if not cfg.data.streamed():

        clips = read_clip_set(cfg.data.train_manifest)
        return [head, f"data plan: manifest {cfg.data.train_manifest} held in memory (mels, latents and CLAP embeddings "
                      f"cached in {cfg.cache_dir}): {len(clips)} clip(s), {o.batch_size} per micro-step, an epoch every "
                      f"{len(clips) / o.batch_size:.1f} micro-step(s)"]
    plan = build_data_plan(cfg, world, model_sample_rate(cfg.model), CountCache(None))
    return [head, *plan.lines()]


def world_size() -> int:
    """Processes of this launch, as accelerate / torchrun set ``WORLD_SIZE`` (1 when unset)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


__all__ = ["LdmFeaturizer", "StreamBatch", "StreamData", "build_data_plan", "merge_chunks", "model_sample_rate",
           "plan_lines", "plan_settings", "world_size"]
