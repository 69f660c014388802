"""Readers: the items one reader contributes to each micro-step, decoded and turned into log-mel features.

A reader is one DataLoader worker of one process (see :mod:`tclap.data.stream.plan`). For every stream it
serves it holds a :class:`FiniteReader` (shards or manifest items, read in the plan's order) or a
:class:`BankReader` (mix-ups built on the fly), and :func:`reader_chunks` turns their items into one *chunk* per
micro-step: decoded audio at the model's rate, cropped or padded and through the model's mel front end, with the
chosen caption and negative caption of every row. Everything a chunk holds is a pure function of
``(seed, reader, micro-step)`` and the data, so a resumed reader produces the same chunks as an uninterrupted one.

Bad items are dropped from their chunk, counted, and named in one line (``shard URL member KEY: reason``), so the
batch of that step is one row shorter (the loss is computed over the rows gathered from every process, which
need not be equally many); a source that cannot be read at all ends the run with one line naming it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from itertools import islice
from typing import Callable, Iterator

import numpy as np
import torch

from basekit.errors import UserError
from tclap.data.shards import AUDIO_EXTS, NEGATIVE_AUDIO_EXTS, TarReader
from tclap.data.stream.plan import BANK, POSITIVE, TEMPORAL, DataPlan, shuffle_order
from tclap.data.shards import usable
from tclap.train.sampler import seed_for
from basekit.audio import load_audio, resample
from tclap.data.mixup import build_item
from tclap.features import ClapMelFrontEnd


@dataclass
class RawItem:
    """One item before decoding. ``audio`` / ``negative_audio``: encoded bytes, a file path, or a wave at ``sr``."""

    id: str
    where: str  # names the item in messages: "shard URL member KEY", "manifest PATH item ID", "bank SPEC mix-up N"
    meta: dict
    audio: bytes | str | np.ndarray
    negative_audio: bytes | str | np.ndarray | None = None
    sr: int | None = None


@dataclass
class ChunkOptions:
    """What a reader needs besides the plan: the front end, the loss's needs, the run's seed."""

    frontend: dict  # ClapMelFrontEnd settings (its to_dict())
    seed: int
    lambda_t: float
    use_negative_audio: bool
    # Another trainer's features instead of the CLAP mel path: a picklable object with ``sample_rate`` (the rate
    # items are decoded at) called as ``featurize(micro, reader, rows, events) -> chunk dict``; ``rows`` are the
    # decoded rows (``.item``: RawItem, ``.role``, ``.wave``: float32 [T], ``.negative_wave``), ``events`` the
    # reader's ``(kind, count, line)`` problems. ``frontend`` is then unused. (audioldm_cond's trainer uses it.)
    featurize: Callable | None = None


#: what a reader met, as ``(kind, count, line)`` events: the training process prints each line and sums the counts
UNREADABLE = "unreadable item (named on stderr)"
NO_NEGATIVE_AUDIO = "item used without its unreadable negative audio (named on stderr)"
MISSING = "item missing from a shard that holds fewer than counted (named on stderr)"


def _where_shard(url: str, key: str) -> str:
    return f"shard {url} member {key}"


class FiniteReader:
    """The items of one finite stream that reader ``g`` reads, micro-step by micro-step.

    ``take(m)`` returns reader ``g``'s rows of micro-step ``m`` (in order; fewer only when a shard holds fewer
    usable items than it was counted with); consecutive calls continue where the last one stopped, any other
    ``m`` (a resume) repositions the reader by skipping whole shards by their counts and, inside the current
    shard, the items already emitted (read, not decoded).
    """

    def __init__(self, plan: DataPlan, s: int, g: int, status: Callable[[str], None]) -> None:
        self.plan, self.s, self.g, self.status = plan, s, g, status
        self.st = plan.streams[s]
        self.rows = self.st.per_reader[g]
        self.problems: list[tuple[str, int, str]] = []
        self._gen: Iterator[RawItem] | None = None
        self._next: tuple | None = None  # (epoch, step within it) the open generator serves next

    def take(self, micro: int) -> list[RawItem]:
        if self.plan.resampled:
            e, p = 0, micro
        else:
            e, p = self.plan.locate(self.s, micro)
        if self._gen is None or self._next != (e, p):
            if self._gen is not None:
                self._gen.close()
            self._gen = self._resampled(p * self.rows) if self.plan.resampled else self._epoch(e, p * self.rows)
        out = list(islice(self._gen, self.rows))
        self._next = (e, p + 1)
        if len(out) < self.rows:
            n = self.rows - len(out)
            self.problems.append((MISSING, n, f"{self.st.role} reader {self.g}: {n} item(s) missing at micro-step {micro} "
                                              "(a shard holds fewer usable items than counted; was it changed?)"))
        return out

    def _epoch(self, e: int, skip: int) -> Iterator[RawItem]:
        for u in self.plan.epoch(self.s, e).assignment[self.g]:
            n = self.st.units[u].items
            if skip >= n:
                skip -= n
                continue
            yield from self._unit(u, skip, (self.plan.seed, 8, self.s, e, u))
            skip = 0

    def _resampled(self, skip: int) -> Iterator[RawItem]:
        rng = np.random.default_rng([self.plan.seed, 9, self.s, self.g])
        k = 0
        while True:
            u = int(rng.integers(len(self.st.units)))
            n = self.st.units[u].items
            if skip >= n:
                skip -= n
            else:
                yield from self._unit(u, skip, (self.plan.seed, 10, self.s, self.g, k))
                skip = 0
            k += 1

    def _unit(self, u: int, skip: int, seed_parts: tuple) -> Iterator[RawItem]:
        unit = self.st.units[u]
        if unit.item is not None:  # one manifest item
            it = self.st.manifest_items[unit.url][unit.item]
            self.status(f"manifest {unit.url} item {it['id']} ({it['audio']})")
            yield RawItem(str(it["id"]), f"manifest {unit.url} item {it['id']}", it, it["audio"], it.get("negative_audio"))
            return
        self.status(f"shard {unit.url} (opening it)")
        order = shuffle_order(unit.items, self.plan.shuffle_buffer, np.random.default_rng(list(seed_parts)))
        wanted = order[skip:]
        want = set(wanted)
        held: dict[int, RawItem] = {}
        t = pos = 0
        for sample in TarReader(unit.url):
            self.status(_where_shard(unit.url, sample.key))
            meta, _why = usable(sample, self.st.need_negative)
            if meta is None:
                continue  # named when the shard was counted
            if pos in want:
                held[pos] = _shard_item(unit.url, sample, meta)
            pos += 1
            while t < len(wanted) and wanted[t] in held:
                yield held.pop(wanted[t])
                t += 1
            if pos >= unit.items:
                break  # items beyond the count (a shard that grew) are not part of the plan
        for p in wanted[t:]:  # a shard that holds fewer usable items than counted: emit what there is
            if p in held:
                yield held.pop(p)


def _shard_item(url: str, sample, meta: dict) -> RawItem:
    audio_ext = next(e for e in AUDIO_EXTS if e in sample.members)
    neg_ext = next((e for e in NEGATIVE_AUDIO_EXTS if e in sample.members), None)
    return RawItem(str(meta.get("id") or sample.key), _where_shard(url, sample.key), meta, sample.members[audio_ext],
                   sample.members[neg_ext] if neg_ext else None)


class BankReader:
    """Mix-ups of one bank stream: row ``j`` of micro-step ``m`` for reader ``g`` is mix-up ``m * rows + offset_g + j``."""

    def __init__(self, plan: DataPlan, s: int, g: int, status: Callable[[str], None]) -> None:
        self.st = plan.streams[s]
        self.rows = self.st.per_reader[g]
        self.offset = sum(self.st.per_reader[:g])
        self.status = status
        self.problems: list[tuple[str, int, str]] = []

    def take(self, micro: int) -> list[RawItem]:

        out = []
        for j in range(self.rows):
            index = micro * self.st.rows + self.offset + j
            where = f"bank {self.st.mix.bank} mix-up {index}"
            self.status(where)
            try:
                item, pos, neg = build_item(self.st.bank, self.st.mix, index, self.st.labels)
            except (UserError, OSError) as exc:  # a bank clip that cannot be read: this mix-up is dropped
                self.problems.append((UNREADABLE, 1, f"skipped {where}: {_line(exc)}"))
                continue
            out.append(RawItem(item["id"], where, item, pos, neg, self.st.mix.sr))
        return out


def decode(data: bytes | str | np.ndarray, sr: int, where: str, src_sr: int | None = None) -> np.ndarray:
    """Audio as float32 mono ``[T]`` at ``sr``: from encoded bytes, a file path, or a wave at ``src_sr``."""

    if isinstance(data, np.ndarray):
        return data if src_sr in (None, sr) else resample(data, int(src_sr), sr)
    if isinstance(data, str):
        return load_audio(data, sr=sr)
    import soundfile as sf  # noqa: PLC0415

    try:
        wav, file_sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types for corrupt input
        raise UserError(f"{where}: cannot decode its audio ({_line(exc)})") from None
    if wav.shape[0] == 0:
        raise UserError(f"{where}: its audio has no samples")
    if not np.all(np.isfinite(wav)):
        raise UserError(f"{where}: its audio holds NaN or infinite samples")
    wav = wav.mean(axis=1)
    return resample(wav, int(file_sr), sr) if file_sr != sr else np.ascontiguousarray(wav)


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


@dataclass
class _Row:
    item: RawItem
    role: str
    wave: np.ndarray
    negative_wave: np.ndarray | None = None


@dataclass
class ChunkBuilder:
    """Reader ``g``'s chunks: its readers' items of a micro-step, decoded and through the mel front end."""

    plan: DataPlan
    g: int
    opts: ChunkOptions
    status: Callable[[str], None] = field(default=lambda text: None)

    def __post_init__(self) -> None:

        self.frontend = ClapMelFrontEnd(**self.opts.frontend) if self.opts.featurize is None else None
        self.readers = [(st.role, (BankReader if st.kind == BANK else FiniteReader)(self.plan, s, self.g, self.status))
                        for s, st in enumerate(self.plan.streams) if st.per_reader[self.g]]

    def chunk(self, micro: int) -> dict:
        """Reader ``g``'s share of micro-step ``micro`` (see :func:`merge` for the fields)."""
        sr = int((self.opts.featurize if self.opts.featurize is not None else self.frontend).sample_rate)
        rows: list[_Row] = []
        events: list[tuple[str, int, str]] = []
        for role, reader in self.readers:
            for raw in reader.take(micro):
                try:
                    wave = decode(raw.audio, sr, raw.where, raw.sr)
                except UserError as exc:
                    events.append((UNREADABLE, 1, f"skipped {raw.where}: {_line(exc).removeprefix(raw.where + ': ')}"))
                    continue
                neg = None
                if self.opts.use_negative_audio and role == TEMPORAL and raw.negative_audio is not None:
                    try:
                        neg = decode(raw.negative_audio, sr, raw.where, raw.sr)
                    except UserError as exc:
                        events.append((NO_NEGATIVE_AUDIO, 1, f"used without its negative audio: {raw.where} ({_line(exc)})"))
                rows.append(_Row(raw, role, wave, neg))
            events += reader.problems
            reader.problems = []
        if self.opts.featurize is not None:
            return self.opts.featurize(micro, self.g, rows, events)
        return self._features(micro, rows, events)

    def _features(self, micro: int, rows: list[_Row], events: list[tuple[str, int, str]]) -> dict:
        rng = np.random.default_rng([self.opts.seed, 3, micro, self.g])  # caption choice
        choices = rng.random((len(rows), 2))
        pos_texts, neg_texts, has_neg, neg_of = [], [], [], []
        for k, r in enumerate(rows):
            caps = [c for c in r.item.meta.get("captions") or [] if isinstance(c, str) and c.strip()]
            negs = [c for c in r.item.meta.get("negative_captions") or [] if isinstance(c, str) and c.strip()]
            j = int(choices[k, 0] * len(caps))
            pos_texts.append(caps[j])
            if r.role == TEMPORAL and negs and self.opts.lambda_t > 0:
                # Captions and negatives written pairwise (same length) keep the pair; else draw one (as in memory).
                neg_texts.append(negs[j] if len(negs) == len(caps) else negs[int(choices[k, 1] * len(negs))])
                has_neg.append(True)
            else:
                has_neg.append(False)
            if r.negative_wave is not None:
                neg_of.append(k)
        fe = self.frontend
        empty = torch.zeros(0, 1, fe.num_frames, fe.n_mels)
        with torch.no_grad():
            gen = torch.Generator().manual_seed(seed_for(self.opts.seed, 4, micro, self.g))  # crops of long clips
            feats = fe([r.wave for r in rows], generator=gen).float() if rows else empty
            negs = fe([rows[k].negative_wave for k in neg_of]).float() if neg_of else empty
        return {"micro": micro, "reader": self.g, "features": feats, "negative_features": negs, "negative_of": neg_of,
                "texts": pos_texts, "negative_texts": neg_texts, "has_negative": has_neg,
                "ids": [r.item.id for r in rows], "roles": [r.role for r in rows], "events": events}


def reader_chunks(plan: DataPlan, g: int, start: int, opts: ChunkOptions,
                  status: Callable[[str], None] = lambda text: None) -> Iterator[dict]:
    """Reader ``g``'s chunks of micro-steps ``start, start + 1, ...``; a source that cannot be read at all ends the
    stream with ``{"error": line}`` (the main process raises it as one line)."""
    try:
        builder = ChunkBuilder(plan, g, opts, status)
        micro = start
        while True:
            yield builder.chunk(micro)
            micro += 1
    except UserError as exc:
        yield {"error": _line(exc), "reader": g}


def merge(chunks: list[dict]) -> dict:
    """One process's rows of a micro-step from its readers' chunks, in reader order.

    Returns ``{"features": [b + n, 1, frames, mels] (the b rows, then the n negative audios), "texts": b positives
    then the negatives of the rows that have one, "has_negative": [b] bool, "negative_audio_rows": [b] long
    (row of the item's negative audio in features, -1 if none), "ids", "roles", "events": [(kind, count, line)]}``.
    """
    feats = [c["features"] for c in chunks]
    b = sum(int(f.shape[0]) for f in feats)
    rows = torch.full((b,), -1, dtype=torch.long)
    offset = n_neg = 0
    for c in chunks:
        for k in c["negative_of"]:
            rows[offset + k] = b + n_neg
            n_neg += 1
        offset += int(c["features"].shape[0])
    x = torch.cat(feats + [c["negative_features"] for c in chunks])
    return {"features": x, "texts": [t for c in chunks for t in c["texts"]] + [t for c in chunks for t in c["negative_texts"]],
            "has_negative": torch.tensor([h for c in chunks for h in c["has_negative"]], dtype=torch.bool),
            "negative_audio_rows": rows, "ids": [i for c in chunks for i in c["ids"]],
            "roles": [r for c in chunks for r in c["roles"]], "events": [e for c in chunks for e in c["events"]]}


__all__ = ["BankReader", "ChunkBuilder", "ChunkOptions", "FiniteReader", "RawItem", "decode", "merge", "reader_chunks",
           "POSITIVE", "TEMPORAL"]
