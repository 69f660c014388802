"""Training data for the trainer: manifests held in memory, or streamed sources (shards, ``bank:`` mix-ups).

Manifests -> training pools: captions, negatives and (cached) log-mel features.

The CLAP front end is deterministic for clips no longer than the model's ``max_length_s`` (they are only
padded), so for those the features are computed once per clip and kept in memory (and on disk, keyed by
the sha256 of the audio file's bytes and the front-end settings, so a changed file or a different front end
never reuses a stale entry). Clips longer than that need a fresh random crop at every step; then the waves
are kept and the front end runs per batch with a generator seeded from ``(seed, step, rank)``.

Both paths serve the trainer through one interface: ``batches(start)`` yields this process's :class:`Batch` of
every micro-step from ``start`` on, ``describe()`` what ``train_config.json`` records, ``report()`` the lines printed
at the start, ``mel_statistics()`` the per-mel-bin statistics a randomly initialised model's input BatchNorm is
set from, ``close()``. :class:`MemoryData` is the in-memory path; :class:`StreamData` reads the plan of
:mod:`tclap.data.stream` (any source that is not a manifest makes a run stream; then manifests are streamed too).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from basekit.audio import load_audio
from basekit.errors import UserError
from tclap.train.sampler import POSITIVE, MixedBatchSampler, seed_for
from basekit.atomic import atomic_write_text
from tclap.data.manifest import read_manifest
from tclap.data.stream import ChunkBuilder, ChunkOptions, CountCache, ProcessStream, build_plan, merge
from tclap.data.stream.readers import MISSING, NO_NEGATIVE_AUDIO, UNREADABLE
from tclap.data.stream.sources import is_streamed
from tclap.features import ClapMelConfig
from tclap.models import CONFIG_NAMES, TCLAP_CONFIG_FILE, get_config


@dataclass
class Pool:
    """One pool of training items (all positive-only sets, or all temporal sets, concatenated)."""

    captions: list[list[str]] = field(default_factory=list)
    negatives: list[list[str]] = field(default_factory=list)  # [] for items without a negative caption
    audio_paths: list[str] = field(default_factory=list)
    negative_audio_paths: list[str | None] = field(default_factory=list)
    features: torch.Tensor | None = None  # [N, 1, frames, n_mels] when precomputed
    negative_features: torch.Tensor | None = None  # [N, 1, frames, n_mels] (rows of items without one: zeros)
    waves: list[np.ndarray] | None = None  # the raw clips when features are computed per step

    def __len__(self) -> int:
        return len(self.captions)


@dataclass
class TrainData:
    positive: Pool
    temporal: Pool
    skipped: dict[str, int]  # reason -> count (reported in the log and on stdout)
    moved_to_positive: int = 0  # --train items without a negative caption used for L_c only (unpaired="positive")


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read(path: str) -> list[dict]:

    p = Path(path)
    if not p.exists():
        raise UserError(f"manifest not found: {p} (build one with `tclap mixup`, or fix the path)")
    items = read_manifest(p)
    for it in items:
        if not Path(it["audio"]).exists():
            raise UserError(f"manifest {p}: item {it.get('id')!r} names missing audio {it['audio']} (fix the path or remove the item)")
    return items


def build_pools(
    temporal_manifests: Sequence[str],
    positive_manifests: Sequence[str] = (),
    require_negatives: bool = True,
    use_negative_audio: bool = False,
    unpaired: str = "skip",
) -> TrainData:
    """Read the manifests into a positive-only and a temporal pool.

    Items of a temporal set (``--train``) without a negative caption cannot serve L_t; when
    ``require_negatives`` (λ > 0) they are skipped and counted (``skipped["temporal item without a negative
    caption"]``), or, with ``unpaired="positive"``, moved to the positive-only pool (counted in
    ``moved_to_positive``) so that L_c still learns their captions: a mix-up of two overlapping events has no
    order to swap, and skipping every such item leaves T-CLAP blind to "A and B at the same time" captions that
    the baseline learns. With λ = 0 every item is used for L_c. Positive-only sets (``--positive``) keep all
    items and ignore any negatives they hold.
    """
    if unpaired not in ("skip", "positive"):
        raise UserError(f"unpaired={unpaired!r}: give 'skip' or 'positive'")
    positive, temporal = Pool(), Pool()
    skipped: dict[str, int] = {}
    moved = 0
    for path in positive_manifests:
        for it in _read(path):
            _add(positive, it, negatives=False, use_negative_audio=False)
    for path in temporal_manifests:
        for it in _read(path):
            if require_negatives and not it.get("negative_captions"):
                if unpaired == "positive":
                    _add(positive, it, negatives=False, use_negative_audio=False)
                    moved += 1
                    continue
                key = "temporal item without a negative caption"
                skipped[key] = skipped.get(key, 0) + 1
                continue
            _add(temporal, it, negatives=True, use_negative_audio=use_negative_audio)
    if len(positive) + len(temporal) == 0:
        raise UserError(
            "no usable training items: the manifests are empty or no --train item has a negative caption "
            "(build them with `tclap mixup`/`tclap negatives`, or pass --lambda-t 0 for L_c only)"
        )
    return TrainData(positive, temporal, skipped, moved)


def _add(pool: Pool, it: dict, negatives: bool, use_negative_audio: bool) -> None:
    caps = [c for c in it.get("captions", []) if c and c.strip()]
    if not caps:
        raise UserError(f"manifest item {it.get('id')!r} has no caption (every item needs at least one)")
    pool.captions.append(caps)
    pool.negatives.append(list(it.get("negative_captions") or []) if negatives else [])
    pool.audio_paths.append(str(it["audio"]))
    neg_audio = it.get("negative_audio") if use_negative_audio else None
    if neg_audio is not None and not Path(neg_audio).exists():
        raise UserError(f"item {it.get('id')!r} names missing negative_audio {neg_audio} (fix the path or drop the field)")
    pool.negative_audio_paths.append(str(neg_audio) if neg_audio else None)


def _frontend_key(frontend) -> str:
    cfg = frontend.to_dict() if hasattr(frontend, "to_dict") else repr(frontend)
    return json.dumps(cfg, sort_keys=True, default=str)


def load_features(
    paths: Sequence[str | None],
    frontend,
    cache_dir: str | os.PathLike | None,
    batch_size: int = 64,
    desc: str = "features",
    quiet: bool = False,
) -> tuple[torch.Tensor | None, list[np.ndarray] | None]:
    """Precompute ``[N, 1, frames, n_mels]`` features, or return the waves when clips need random crops.

    ``None`` paths (items without a negative audio) give zero rows. Returns ``(features, None)`` or
    ``(None, waves)``.
    """
    sr = int(frontend.sample_rate)
    max_len = int(frontend.max_length)
    fkey = _frontend_key(frontend)
    hashes = [file_sha256(p) if p else None for p in paths]
    cache_file = None
    if cache_dir is not None:
        digest = hashlib.sha256((fkey + "|" + ",".join(h or "-" for h in hashes)).encode()).hexdigest()[:32]
        cache_file = Path(cache_dir) / f"features-{digest}.pt"
        if cache_file.exists():
            return torch.load(cache_file, weights_only=True), None
    waves = [load_audio(p, sr=sr) if p else None for p in tqdm(paths, desc=f"loading {desc}", disable=quiet)]
    if any(w is not None and len(w) > max_len for w in waves):
        return None, [w if w is not None else np.zeros(1, np.float32) for w in waves]
    frames, n_mels = frontend.num_frames, frontend.n_mels
    out = torch.zeros(len(paths), 1, frames, n_mels)
    idx = [i for i, w in enumerate(waves) if w is not None]
    with torch.no_grad():
        for s in tqdm(range(0, len(idx), batch_size), desc=f"mel {desc}", disable=quiet):
            rows = idx[s:s + batch_size]
            out[rows] = frontend([waves[i] for i in rows]).float().cpu()
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".tmp{os.getpid()}")
        torch.save(out, tmp)
        os.replace(tmp, cache_file)
    return out, None


def prepare_features(data: TrainData, frontend, cache_dir, quiet: bool = False) -> None:
    """Fill each pool's ``features`` (or ``waves``) and ``negative_features`` in place."""
    for name, pool in (("positive", data.positive), ("temporal", data.temporal)):
        if len(pool) == 0:
            continue
        pool.features, pool.waves = load_features(pool.audio_paths, frontend, cache_dir, desc=name, quiet=quiet)
        if any(pool.negative_audio_paths):
            feats, waves = load_features(pool.negative_audio_paths, frontend, cache_dir, desc=f"{name} negative audio", quiet=quiet)
            if feats is None:
                raise UserError("negative audio longer than the model's clip length is not supported; crop it or drop --negative-audio")
            pool.negative_features = feats


def mel_statistics(data: TrainData) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Per-mel-bin mean and variance of the precomputed features ``([n_mels], [n_mels])``, or None."""
    feats = [p.features for p in (data.positive, data.temporal) if p.features is not None]
    if not feats:
        return None
    x = torch.cat(feats).double()  # [N, 1, frames, n_mels]
    return x.mean(dim=(0, 1, 2)).float(), x.var(dim=(0, 1, 2), unbiased=False).float()


@dataclass
class Batch:
    """One process's share of one micro-step, ready for the model.

    ``features`` holds the ``b`` items first, then the negative audio of those that use one.
    """

    features: torch.Tensor  # [b (+ b_neg_audio), 1, frames, n_mels]
    texts: list[str]  # b positives, then the negatives of the items that have one, in item order
    has_neg: torch.Tensor  # [b] bool
    neg_audio_rows: torch.Tensor  # [b] long: row of the item's negative audio in features, -1 if none
    ids: list[str] = field(default_factory=list)  # the b items' ids (streaming sources; in memory: pool:index)

    @property
    def size(self) -> int:
        return int(self.has_neg.shape[0])


class MemoryData:
    """The in-memory path: pools of cached features, global batches from :class:`MixedBatchSampler`.

    The global batch of micro-step ``m`` is ``sampler.batch(m)``; this process embeds its contiguous share.
    """

    def __init__(self, data: TrainData, cfg, frontend, rank: int, world: int) -> None:
        self.data, self.cfg, self.frontend, self.rank, self.world = data, cfg, frontend, rank, world
        self.sampler = MixedBatchSampler(len(data.positive), len(data.temporal), cfg.data.batch_size,
                                         cfg.data.temporal_fraction, cfg.seed)

    def batches(self, start: int) -> Iterator[Batch]:
        """This process's batch of micro-steps ``start, start + 1, ...`` (endless)."""
        micro = start
        while True:
            items = MixedBatchSampler.shard(self.sampler.batch(micro), self.rank, self.world)
            yield make_batch(self.data, items, self.cfg, micro, self.frontend, self.rank)
            micro += 1

    def mel_statistics(self):
        return mel_statistics(self.data)

    def describe(self) -> dict:
        """What ``train_config.json`` records about the data."""
        d = self.data
        return {"skipped": d.skipped, "moved_to_positive": d.moved_to_positive,
                "pools": {"positive": len(d.positive), "temporal": len(d.temporal)},
                "batch": {"temporal": self.sampler.k_temporal, "positive": self.sampler.k_positive}}

    def report(self) -> list[str]:
        """Lines for stdout at the start of a run."""
        lines = [f"tclap train: skipped {n} item(s): {reason}" for reason, n in self.data.skipped.items()]
        if self.data.moved_to_positive:
            lines.append(f"tclap train: {self.data.moved_to_positive} --train item(s) without a negative caption go "
                         "to the positive-only pool (L_c only; --unpaired positive)")
        return lines

    def explain(self, exc: BaseException) -> str | None:
        return None

    def final_skipped(self) -> dict[str, int]:
        """Items skipped, by reason, once the run is over (in memory: known from the start)."""
        return dict(self.data.skipped)

    def state(self) -> dict:
        """What a checkpoint must match to resume (the in-memory batches depend on the seed alone)."""
        return {}

    def close(self) -> None:
        pass


def make_batch(data: TrainData, items, cfg, micro: int, frontend, rank: int) -> Batch:
    """Captions, features and negatives of ``items`` (this process's share of micro-step ``micro``)."""
    rng = np.random.default_rng([cfg.seed, 3, micro])  # caption choice, shared by every process
    choices = rng.random((len(items), 2))
    pos_texts, neg_texts, feats, has_neg, wave_rows = [], [], [], [], []
    neg_feats, neg_rows = [], []
    for k, it in enumerate(items):
        pool = data.positive if it.pool == POSITIVE else data.temporal
        caps, negs = pool.captions[it.index], pool.negatives[it.index]
        j = int(choices[k, 0] * len(caps))
        pos_texts.append(caps[j])
        if negs and cfg.loss.lambda_t > 0:
            # Captions and negatives written pairwise (same length) keep the pair; else draw one.
            neg_texts.append(negs[j] if len(negs) == len(caps) else negs[int(choices[k, 1] * len(negs))])
            has_neg.append(True)
        else:
            has_neg.append(False)
        if pool.features is not None:
            feats.append(pool.features[it.index])
        else:
            wave_rows.append(pool.waves[it.index])
        if cfg.data.use_negative_audio and pool.negative_features is not None and pool.negative_audio_paths[it.index]:
            neg_rows.append(len(items) + len(neg_feats))
            neg_feats.append(pool.negative_features[it.index])
        else:
            neg_rows.append(-1)
    if wave_rows and feats:
        raise UserError("mixing clips that need random crops with clips that do not is not supported; use clips of one length")
    if wave_rows:
        gen = torch.Generator().manual_seed(seed_for(cfg.seed, 4, micro, rank))
        x = frontend(wave_rows, generator=gen).float().cpu()
    else:
        x = torch.stack(feats)
    if neg_feats:
        x = torch.cat([x, torch.stack(neg_feats)])
    ids = [f"{'positive' if it.pool == POSITIVE else 'temporal'}:{it.index}" for it in items]
    return Batch(x, pos_texts + neg_texts, torch.tensor(has_neg, dtype=torch.bool), torch.tensor(neg_rows), ids)


class StreamData:
    """The streaming path: this process's readers of a :class:`tclap.data.stream.DataPlan`.

    Args:
        plan: the run's data plan (the same on every process).
        cfg: the run's config.
        frontend: the model's mel front end (its settings go to the readers).
        rank: this process's index.
        reduce_sum: sums a tensor over processes (``accelerator.reduce(t, "sum")``; identity for one process).
    """

    def __init__(self, plan, cfg, frontend, rank: int, reduce_sum) -> None:

        self.plan, self.cfg, self.rank, self.reduce_sum = plan, cfg, rank, reduce_sum
        self.opts = ChunkOptions(frontend.to_dict(), cfg.seed, cfg.loss.lambda_t, cfg.data.use_negative_audio)
        self.skipped: dict[str, int] = {}
        self._stream = None

    def batches(self, start: int) -> Iterator[Batch]:

        self._stream = ProcessStream(self.plan, self.rank, start, self.opts, self.cfg.data.data_timeout)
        for micro, chunks in enumerate(self._stream, start):
            b = merge(chunks)
            self._note(b["events"])
            if not b["ids"]:
                raise UserError(f"rank {self.rank}: every row of micro-step {micro} was unreadable (named above); "
                                "fix or remove those shards")
            yield Batch(b["features"], b["texts"], b["has_negative"], b["negative_audio_rows"], b["ids"])
            del b
            if micro % TRIM_EVERY == TRIM_EVERY - 1:
                # Batches of varying shapes (captions, negative rows) fragment the C heap: without a trim the
                # process grows with every step of an endless stream (docs/streaming.md, "Memory").
                _release_free_memory()

    def _note(self, events: list[tuple[str, int, str]]) -> None:
        """Print each problem a reader met (one line) and count it by kind."""
        for kind, n, line in events:
            print(f"tclap train: {'rank %d: ' % self.rank if self.plan.world > 1 else ''}{line}", file=sys.stderr)
            self.skipped[kind] = self.skipped.get(kind, 0) + n

    def mel_statistics(self):
        """Per-mel-bin mean and variance ``([n_mels], [n_mels])`` of the global batch of micro-step 0 (all processes)."""

        feats = [ChunkBuilder(self.plan, self.plan.reader_of(self.rank, w), self.opts).chunk(0)["features"]
                 for w in range(max(1, self.plan.workers))]
        x = torch.cat(feats).double()  # [b, 1, frames, n_mels]
        sums = torch.cat([torch.tensor([x.shape[0] * x.shape[2]], dtype=torch.float64), x.sum(dim=(0, 1, 2)),
                          (x * x).sum(dim=(0, 1, 2))])
        sums = self.reduce_sum(sums)
        n, m = sums[0], x.shape[-1]
        mean = sums[1:1 + m] / n
        var = sums[1 + m:] / n - mean * mean
        del feats, x
        _release_free_memory()  # what reading and rendering that batch left in the heap; the workers fork later
        return mean.float(), var.clamp_min(0).float()

    def describe(self) -> dict:
        """What ``train_config.json`` records: the plan, the batch split, skipped items (plan and reading)."""
        from tclap.data.stream import POSITIVE, TEMPORAL  # noqa: PLC0415 (POSITIVE/TEMPORAL also come from tclap.train.sampler at the top)

        skipped: dict[str, int] = {}
        for st in self.plan.streams:
            for k, n in st.skipped.items():
                skipped[k] = skipped.get(k, 0) + n
        for k, n in self.skipped.items():
            skipped[k] = skipped.get(k, 0) + n

        def items(role):
            sts = [st for st in self.plan.streams if st.role == role]
            return "endless" if any(st.kind == "bank" for st in sts) else sum(st.total_items() for st in sts)

        return {"skipped": skipped, "moved_to_positive": 0, "pools": {"positive": items(POSITIVE), "temporal": items(TEMPORAL)},
                "batch": {"temporal": sum(st.rows for st in self.plan.streams if st.role == TEMPORAL),
                          "positive": sum(st.rows for st in self.plan.streams if st.role == POSITIVE)},
                "data_plan": self.plan.describe()}

    def report(self) -> list[str]:
        return [f"tclap train: {line}" for line in self.plan.lines()]

    def final_skipped(self) -> dict[str, int]:
        """What the plan skipped plus what every process's readers skipped while reading (a collective call)."""

        kinds = (UNREADABLE, NO_NEGATIVE_AUDIO, MISSING)
        counts = self.reduce_sum(torch.tensor([float(self.skipped.get(k, 0)) for k in kinds], dtype=torch.float64))
        out = dict(self.describe()["skipped"])
        for k in kinds:
            out.pop(k, None)
        out.update({k: int(v) for k, v in zip(kinds, counts.tolist()) if v})
        return out

    def state(self) -> dict:
        """What a checkpoint must match to resume: the number of readers (the plan depends on it)."""
        return {"readers": self.plan.readers}

    def explain(self, exc: BaseException) -> str | None:
        """One line for an error of the data workers (one that died or hung), None for other errors."""
        return self._stream.explain(exc) if self._stream is not None else None

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()


TRIM_EVERY = 8  # micro-steps between heap trims of a streaming run (a trim costs a few ms)


def _release_free_memory() -> None:
    """Give the C heap's free pages back to the OS (glibc ``malloc_trim``; a no-op elsewhere): the DataLoader
    workers fork from this process and would otherwise each start with its freed-but-held memory."""
    import ctypes  # noqa: PLC0415

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def log_ids(batches: Iterator[Batch], path: Path, start: int) -> Iterator[Batch]:
    """Pass ``batches`` through, appending ``{"micro", "ids"}`` per micro-step to ``path`` (lines of micro-steps
    at or after ``start``, left by a killed run, are dropped first)."""

    if path.exists():
        keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["micro"] < start]
        atomic_write_text(path, "".join(ln + "\n" for ln in keep))
    path.parent.mkdir(parents=True, exist_ok=True)
    for micro, b in enumerate(batches, start):
        with open(path, "a") as f:
            f.write(json.dumps({"micro": micro, "ids": b.ids}) + "\n")
        yield b


def plan_lines(cfg, train_sources: Sequence[str], positive_sources: Sequence[str], world: int) -> list[str]:
    """What ``tclap train --dry-run`` prints: the data plan, from the sources and the model's settings alone."""

    o = cfg.optim
    lines = [f"tclap train --dry-run: preset {cfg.preset}, init {cfg.init}, {cfg.steps} step(s) x grad-accum {o.grad_accum}, "
             f"global batch {cfg.data.batch_size}, λ {cfg.loss.lambda_t:g}, temporal fraction {cfg.data.temporal_fraction:g}"]
    if not any(is_streamed(t) for t in [*train_sources, *positive_sources]):
        data = build_pools(train_sources, positive_sources, require_negatives=cfg.loss.lambda_t > 0,
                           use_negative_audio=cfg.data.use_negative_audio, unpaired=cfg.data.unpaired)
        sampler = MixedBatchSampler(len(data.positive), len(data.temporal), cfg.data.batch_size,
                                    cfg.data.temporal_fraction, cfg.seed)
        lines.append(f"data plan: manifests held in memory ({world} process(es), each embedding "
                     f"{cfg.data.batch_size // max(1, world)} rows per micro-step)")
        for name, pool, k in (("temporal", data.temporal, sampler.k_temporal), ("positive", data.positive, sampler.k_positive)):
            if k:
                lines.append(f"  {name}: {len(pool)} item(s), {k}/{cfg.data.batch_size} rows per batch, "
                             f"an epoch every {len(pool) / k:.1f} micro-step(s)")
        lines += [f"  skipped {n} item(s): {reason}" for reason, n in data.skipped.items()]
        return lines
    sr, seconds = frontend_settings(cfg.init)
    plan = build_plan(cfg, list(train_sources), list(positive_sources), world, sr, seconds, CountCache(None))
    return lines + plan.lines()


def frontend_settings(init) -> tuple[int, float]:
    """``(sample_rate, clip seconds)`` of a model, read from its config files without building it.

    A config name gives its own; a model directory (or shipped model) the front end its export recorded
    (``tclap_config.json``) or its feature extractor's (``preprocessor_config.json`` / ``processor_config.json``);
    anything else (a LAION ``.pt``, a hub id) LAION-CLAP's front end (48 kHz, 10 s).
    """
    from tclap.models.factory import ASSETS_DIR  # noqa: PLC0415 (tests patch tclap.models.factory.ASSETS_DIR)

    name = str(init)
    if name in CONFIG_NAMES:
        fe = get_config(name).frontend
        return int(fe.sample_rate), float(fe.max_length_s)
    folder = ASSETS_DIR / name if (ASSETS_DIR / name).is_dir() else Path(name).expanduser()
    for fname, read in ((TCLAP_CONFIG_FILE, lambda d: (d["frontend"]["sample_rate"], d["frontend"]["max_length_s"])),
                        ("preprocessor_config.json", _extractor_settings),
                        ("processor_config.json", lambda d: _extractor_settings(d["feature_extractor"]))):
        try:
            sr, seconds = read(json.loads((folder / fname).read_text()))
            return int(sr), float(seconds)
        except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
            continue

    fe = ClapMelConfig()
    return fe.sample_rate, fe.max_length_s


def _extractor_settings(d: dict) -> tuple[int, float]:
    return int(d["sampling_rate"]), float(d["nb_max_samples"]) / float(d["sampling_rate"])
