"""The data plan of a streamed run: which reader reads what, at which step, in every epoch.

Readers. A run has ``R = processes x max(1, workers)`` readers; reader ``g = rank * max(1, workers) + worker``
is one DataLoader worker of one process (or the process itself with ``--workers 0``). Every micro-step each
reader contributes a fixed number of rows from each stream (``Stream.per_reader[g]``), so the global batch
of micro-step ``m`` is a pure function of ``(seed, R, m)`` and of the data: the same on one process with two
workers as on two processes with one worker each, and the same after a resume.

Streams. The ``--train`` sources form the temporal group and the ``--positive`` sources the positive-only group;
the group's rows per global batch are ``round(batch * temporal_fraction)`` and the rest (as in memory). In each
group, the finite sources (manifests and shards) are merged into one stream, and each ``bank:`` source is a
stream of its own; a group's rows are split evenly over its streams. A stream's rows are spread over the
readers as evenly as they go (each reader gets ``rows // R`` or one more; the extra rows of successive streams
go to successive readers, so every reader serves ``batch / R`` rows in all).

Epochs of a finite stream (not ``--resampled``). In epoch ``e`` the stream's units (shards, or manifest items)
are permuted by ``default_rng([seed, 7, stream, e])`` and dealt out to the readers that serve the stream:
reader ``i`` of them reads units ``perm[i::n]``, one after another, each shard's items in a shuffled order
(:func:`shuffle_order`, a buffer of ``shuffle_buffer`` items within the shard). The epoch lasts
``S_e = min_i floor(N_i / rows_i)`` micro-steps, ``N_i`` being reader ``i``'s items: no item is read twice in
an epoch, and the items beyond ``S_e * rows_i`` of each reader are the epoch's *remainder*, counted and
reported (it is zero when the shards divide evenly). ``--resampled`` instead draws each reader's shards with
replacement from ``default_rng([seed, 9, stream, reader])``, endlessly, with no epochs.

Bank streams are endless: the rows of micro-step ``m`` are mix-ups ``m * rows + j`` (``j < rows``), each built from
``(seed, index)`` alone (:func:`tclap.data.mixup.build_item`), whichever reader builds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from basekit.errors import UserError
from tclap.data.stream.sources import (BANK, MANIFEST, Unit, manifest_units, parse_source, read_shard_indexes, shard_units,
                                      short)
from tclap.data.banks import open_bank
from tclap.data.mixup import MixupConfig

TEMPORAL, POSITIVE = "temporal", "positive"
FINITE = "finite"


@dataclass
class Stream:
    """One stream of rows: a group's finite sources merged, or one bank."""

    role: str  # TEMPORAL (L_c + L_t) or POSITIVE (L_c only)
    kind: str  # FINITE or BANK
    sources: list[str]
    units: list[Unit] = field(default_factory=list)
    manifest_items: dict[str, list[dict]] = field(default_factory=dict)  # manifest path -> its kept items
    bank: object | None = None  # a tclap.data.banks.ClipBank
    mix: object | None = None  # the tclap.data.mixup.MixupConfig of a bank stream
    labels: list[str] = field(default_factory=list)  # the bank's training labels
    rows: int = 0
    per_reader: list[int] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    need_negative: bool = False  # the counts (and the readers) keep only items with a negative caption

    def total_items(self) -> int:
        return sum(u.items for u in self.units)


@dataclass
class Epoch:
    """One epoch of a finite stream: the units each reader reads, their items, the steps it lasts."""

    assignment: list[list[int]]  # reader -> unit indices, in reading order
    items: list[int]  # reader -> items in its units
    steps: int  # micro-steps the epoch lasts
    remainder: int  # items left unread this epoch


@dataclass
class DataPlan:
    streams: list[Stream]
    world: int
    workers: int
    batch_size: int
    seed: int
    resampled: bool
    shuffle_buffer: int
    micro_steps: int
    problems: list[str] = field(default_factory=list)
    _epochs: dict = field(default_factory=dict, repr=False)  # the few most recent epochs (a run moves forward)
    _starts: dict = field(default_factory=dict, repr=False)  # stream -> first micro-step of each epoch so far

    @property
    def readers(self) -> int:
        return self.world * max(1, self.workers)

    def reader_of(self, rank: int, worker: int) -> int:
        return rank * max(1, self.workers) + worker

    def epoch(self, s: int, e: int) -> Epoch:
        """Epoch ``e`` of finite stream ``s`` (cached; a pure function of the seed and the counts)."""
        key = (s, e)
        if key not in self._epochs:
            st = self.streams[s]
            active = [g for g in range(self.readers) if st.per_reader[g] > 0]
            counts = np.array([u.items for u in st.units], dtype=np.int64)
            perm = np.random.default_rng([self.seed, 7, s, e]).permutation(len(st.units))
            assignment: list[list[int]] = [[] for _ in range(self.readers)]
            for i, g in enumerate(active):
                assignment[g] = perm[i::len(active)].tolist()
            items = [int(counts[a].sum()) if a else 0 for a in assignment]
            steps = min(items[g] // st.per_reader[g] for g in active)
            if steps < 1:
                raise UserError(
                    f"{_name(st)}: in epoch {e} a reader holds {min(items[g] for g in active)} item(s), fewer than the "
                    f"{max(st.per_reader)} row(s) it serves per step; use fewer --workers or processes, shards of "
                    "more even sizes, or --resampled")
            if len(self._epochs) >= 4 * len(self.streams):
                self._epochs.pop(next(iter(self._epochs)))  # oldest first: keep memory flat over many epochs
            self._epochs[key] = Epoch(assignment, items, steps, int(sum(items) - steps * st.rows))
        return self._epochs[key]

    def locate(self, s: int, micro: int) -> tuple[int, int]:
        """``(epoch, micro-step within it)`` of micro-step ``micro`` in finite stream ``s``."""
        starts = self._starts.setdefault(s, [0])
        while starts[-1] <= micro:
            starts.append(starts[-1] + self.epoch(s, len(starts) - 1).steps)
        e = int(np.searchsorted(starts, micro, side="right")) - 1
        return e, micro - starts[e]

    # ------------------------------------------------------------------ reporting
    def describe(self) -> dict:
        """The plan as JSON (``train_config.json``'s ``data_plan``)."""
        out = {"readers": self.readers, "processes": self.world, "workers": self.workers,
               "batch_size": self.batch_size, "micro_steps": self.micro_steps, "resampled": self.resampled,
               "shuffle_buffer": self.shuffle_buffer, "streams": []}
        for s, st in enumerate(self.streams):
            d = {"role": st.role, "kind": st.kind, "sources": st.sources, "rows": st.rows, "rows_per_reader": st.per_reader,
                 "skipped": st.skipped}
            if st.kind == FINITE:
                d.update(units=len(st.units), items=st.total_items())
                if not self.resampled:
                    ep = self.epoch(s, 0)
                    d.update(steps_per_epoch=ep.steps, samples_per_epoch=ep.steps * st.rows, remainder=ep.remainder,
                             units_per_reader=[len(a) for a in ep.assignment], items_per_reader=ep.items)
            else:
                d.update(mixup=st.mix.identity())
            out["streams"].append(d)
        return out

    def lines(self) -> list[str]:
        """The plan for people: sources and shares, units per rank and worker, samples per epoch, steps."""
        w = max(1, self.workers)
        lines = [f"data plan: {self.world} process(es) x {w} reader(s) each ({'DataLoader workers' if self.workers else 'in-process'})"
                 f" = {self.readers} reader(s); global batch {self.batch_size} = "
                 + " + ".join(f"{st.rows} {st.role}" for st in self.streams)
                 + f"; {self.micro_steps} micro-step(s)"]
        for s, st in enumerate(self.streams):
            share = f"{st.rows}/{self.batch_size} rows ({100 * st.rows / self.batch_size:.0f}%)"
            what = ", ".join(short(x, 60) for x in st.sources)
            if st.kind == BANK:
                m = st.mix
                held = (f"held-out folds {','.join(map(str, m.test_folds)) or 'none'}" if m.bank.lower().endswith(".csv")
                        else "its held-out clips left out")
                lines.append(f"  {st.role}: {what}: {share}, endless on-the-fly mix-ups ({m.seconds:g} s, "
                             f"{m.min_events}-{m.max_events} events, overlap share {m.overlap_prob:g}; training split: "
                             f"{len(st.labels)} classes, {held})")
                continue
            kinds = ("shard(s)" if all(u.item is None for u in st.units) else
                     "manifest item(s)" if all(u.item is not None for u in st.units) else "unit(s) (shards and manifest items)")
            lines.append(f"  {st.role}: {what}: {share}; {len(st.units)} {kinds}, {st.total_items()} usable item(s)")
            for reason, n in st.skipped.items():
                lines.append(f"    skipped {n} item(s): {reason}")
            if self.resampled:
                lines.append("    resampled: each reader draws shards with replacement, endlessly (no epochs)")
                continue
            ep = self.epoch(s, 0)
            per = []
            for r in range(self.world):
                for k in range(w):
                    g = self.reader_of(r, k)
                    if st.per_reader[g]:
                        per.append(f"rank {r} worker {k}: {len(ep.assignment[g])} {kinds.split(' (')[0]}, {ep.items[g]} item(s), "
                                   f"{st.per_reader[g]} row(s)/step")
            lines.append("    epoch 0 per reader: " + "; ".join(per))
            epochs = self.micro_steps / ep.steps
            lines.append(f"    {ep.steps} micro-step(s) per epoch = {ep.steps * st.rows} samples; remainder {ep.remainder} "
                         f"item(s) unread per epoch{' (counted)' if ep.remainder else ''}; this run: {epochs:.2f} epoch(s)")
        lines += [f"  problem: {p}" for p in self.problems[:20]]
        if len(self.problems) > 20:
            lines.append(f"  ... and {len(self.problems) - 20} more problem(s)")
        return lines


def _name(st: Stream) -> str:
    return f"{st.role} source {', '.join(short(x, 50) for x in st.sources)}"


def split_rows(counts: list[int], readers: int) -> list[list[int]]:
    """Spread each stream's rows over the readers: ``rows // R`` each, the extras on successive readers.

    With ``sum(counts)`` divisible by ``R`` every reader gets ``sum(counts) / R`` rows in all.
    """
    out, offset = [], 0
    for k in counts:
        base, extra = divmod(k, readers)
        rows = [base] * readers
        for i in range(extra):
            rows[(offset + i) % readers] += 1
        offset = (offset + extra) % readers
        out.append(rows)
    return out


def shuffle_order(n: int, buffer: int, rng: np.random.Generator) -> list[int]:
    """The order in which a shuffle buffer of ``buffer`` items emits positions ``0..n-1`` read in sequence.

    Positions enter one at a time; once the buffer is full a random one leaves; the rest leave in a random order
    at the end. Position ``order[t]`` is never more than ``buffer - 1`` places ahead of ``t``, so a reader holds at
    most ``buffer`` items, and a resumed reader can skip the first ``t`` emissions without decoding them.
    """
    if buffer <= 1 or n <= 1:
        return list(range(n))
    buf: list[int] = []
    out: list[int] = []
    for i in range(n):
        buf.append(i)
        if len(buf) >= buffer:
            j = int(rng.integers(len(buf)))
            buf[j], buf[-1] = buf[-1], buf[j]
            out.append(buf.pop())
    out += [buf[j] for j in rng.permutation(len(buf))]
    return out


def build_plan(cfg, train_sources: list[str], positive_sources: list[str], world: int, sample_rate: int,
               clip_seconds: float, cache, quiet: bool = False) -> DataPlan:
    """Resolve the sources, count their items and lay out the streams for ``world`` processes.

    Args:
        cfg: the run's :class:`tclap.train.config.TrainConfig`.
        train_sources, positive_sources: the ``--train`` / ``--positive`` SOURCE strings.
        world: processes in the run.
        sample_rate: the model's audio rate (bank mix-ups are built at it).
        clip_seconds: the model's clip length (the default length of bank mix-ups).
        cache: a :class:`tclap.data.stream.sources.CountCache`.
    """
    d = cfg.data
    readers = world * max(1, d.workers)
    if d.batch_size % readers:
        raise UserError(f"--batch-size {d.batch_size} must be divisible by processes x readers per process "
                        f"({world} x {max(1, d.workers)} = {readers}) when streaming; change --workers or --batch-size")
    need_neg = cfg.loss.lambda_t > 0 and d.unpaired == "skip"
    problems: list[str] = []
    remote_index = read_shard_indexes(d.shard_index)
    groups = []
    for role, texts in ((TEMPORAL, train_sources), (POSITIVE, positive_sources)):
        streams = _group_streams(role, [parse_source(t) for t in texts], cfg, need_neg and role == TEMPORAL,
                                 sample_rate, clip_seconds, cache, problems, quiet, remote_index)
        groups.append(streams)
    temporal, positive = groups
    if not temporal and not positive:
        raise UserError("no training data: pass --train SOURCE (and optionally --positive SOURCE)")
    k_t = d.batch_size if not positive else (0 if not temporal else int(round(d.batch_size * d.temporal_fraction)))
    streams: list[Stream] = []
    for group, k in ((temporal, k_t), (positive, d.batch_size - k_t)):
        for i, st in enumerate(group):
            st.rows = k // len(group) + (1 if i < k % len(group) else 0)
            if st.rows:
                streams.append(st)
    for st, rows in zip(streams, split_rows([st.rows for st in streams], readers)):
        st.per_reader = rows
        if st.kind == FINITE and not d.resampled:
            active = sum(1 for r in rows if r)
            if len(st.units) < active:
                raise UserError(f"{_name(st)}: {len(st.units)} unit(s) for {active} readers; every reader needs one: "
                                "use fewer --workers or processes, more shards, or --resampled")
    plan = DataPlan(streams, world, d.workers, d.batch_size, cfg.seed, d.resampled, d.shuffle_buffer,
                    cfg.steps * cfg.optim.grad_accum, problems)
    for s, st in enumerate(streams):
        if st.kind == FINITE and not d.resampled:
            _check_epochs_possible(plan, s)
    return plan


def _check_epochs_possible(plan: DataPlan, s: int) -> None:
    """Refuse a plan whose epochs could run empty: the smallest share a reader can be dealt must fill a step."""
    st = plan.streams[s]
    active = sum(1 for r in st.per_reader if r)
    counts = sorted(u.items for u in st.units)
    least = sum(counts[: len(counts) // active])
    if least < max(st.per_reader):
        raise UserError(
            f"{_name(st)}: a reader may be dealt as few as {least} item(s) in an epoch, fewer than the "
            f"{max(st.per_reader)} row(s) it serves per step; use fewer --workers or processes, more or more even "
            "shards, or --resampled")
    plan.epoch(s, 0)


def _group_streams(role, sources, cfg, need_neg, sample_rate, clip_seconds, cache, problems, quiet,
                   remote_index) -> list[Stream]:
    finite = [s for s in sources if s.kind != BANK]
    out: list[Stream] = []
    if finite:
        st = Stream(role, FINITE, [s.text for s in finite], need_negative=need_neg)
        for src in finite:
            if src.kind == MANIFEST:
                units, items, skipped = manifest_units(src.urls[0], need_neg)
                st.manifest_items[src.urls[0]] = items
            else:
                units, skipped, probs = shard_units(src.urls, need_neg, cache, quiet, remote_index)
                problems += probs
            st.units += units
            for k, n in skipped.items():
                st.skipped[k] = st.skipped.get(k, 0) + n
        if not st.units or st.total_items() == 0:
            what = "with a negative caption " if need_neg else ""
            raise UserError(f"{_name(st)}: no usable item {what}(build negatives with `tclap negatives`, pass --unpaired "
                            "positive, or --lambda-t 0)" if need_neg else f"{_name(st)}: no usable item")
        st.units = [u for u in st.units if u.items > 0]
        out.append(st)
    for src in sources:
        if src.kind == BANK:
            out.append(_bank_stream(role, src, cfg, sample_rate, clip_seconds))
    return out


def _bank_stream(role: str, src, cfg, sample_rate: int, clip_seconds: float) -> Stream:

    d = cfg.data
    mix = MixupConfig(bank=src.bank, seconds=float(d.bank_seconds or clip_seconds), sr=int(sample_rate), split="train",
                      seed=cfg.seed, min_events=d.bank_events[0], max_events=d.bank_events[1],
                      overlap_prob=d.bank_overlap_prob, test_folds=tuple(d.bank_test_folds), phrases_file=d.bank_phrases)
    mix.validate()
    bank = open_bank(src.bank, test_folds=mix.test_folds, phrases_file=mix.phrases_file)
    labels = bank.check_split("train")  # mix-ups for training draw from the training split only
    return Stream(role, BANK, [src.text], bank=bank, mix=mix, labels=labels)
