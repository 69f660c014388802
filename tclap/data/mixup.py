"""Temporal mix-ups: clips of 2-3 labelled events with order captions, negatives and negative audio.

Each item is a pure function of ``(config, index)``: its generator is ``SeedSequence([seed, index, split])``,
so ``--shard i/n`` on many machines builds disjoint parts of one set (item ``k`` belongs to shard
``k % n``) and a re-run rebuilds exactly what is missing.

Two relations:

- ``sequence`` (2 or 3 events, concatenated with gaps): positive caption from an order template, negative
  caption = the same template with the events reversed, and a negative audio holding the *same event
  instances* in the reversed order with the gaps reversed (same lead-in), so that the two clips differ
  only in order.
- ``overlap`` (2 events, the second starting inside the first; probability ``overlap_prob``): a "while"
  caption and no negative (no order to reverse); it still trains the contrastive loss.

Output (paths in the manifest are relative to it)::

    OUT/audio/<id>.wav  OUT/negative_audio/<id>.wav  OUT/items/<id>.json  OUT/manifest.jsonl
    OUT/mixup_config.json  (the settings; a re-run with other settings is refused)

Resume: an item is finished when its sidecar ``items/<id>.json`` exists (written atomically after its
audio files). A re-run skips finished items and rebuilds the rest; the manifest is written at the end,
atomically, from every finished sidecar of indices ``0..n-1`` (from all shards that share the folder).

WebDataset output (``webdataset=True``, ``tclap mixup --format webdataset``): no audio files, no manifest; the
items go straight into tar shards in ``OUT`` (:mod:`tclap.data.shards` layout)::

    OUT/mixup-<i>of<n>-<j>.tar    items mine[j*P:(j+1)*P] of machine i's items mine = [i, i+n, i+2n, ...]
    OUT/mixup-<i>of<n>.index.json  item counts of machine i's tars (a trainer plans epochs from it)
    OUT/mixup_config.json

so machines of one ``--shard i/n`` set never write the same file. Each tar is written atomically; a re-run keeps
every tar that holds the items it should (counted) and rebuilds the others.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from basekit.atomic import atomic_write_text
from basekit.audio import encode_wav, save_audio
from tclap.data.banks import ClipBank, open_bank
from tclap.data.captions import make_caption
from tclap.data.manifest import write_manifest
from basekit.errors import UserError
from tclap.data.shards import (INDEX_SUFFIX, ShardInfo, ShardWriter, finished_shard, item_members, shard_key,
                               write_index)

_SPLIT_CODE = {"train": 0, "heldout": 1}
MIN_EVENT_SECONDS = 0.25


@dataclass(frozen=True)
class MixupConfig:
    """Settings of one mix-up set. Everything except ``n`` must match when a set is resumed or extended.

    Attributes:
        bank: ``"builtin"``, a folder per class, or an ESC-50-style CSV; a tuple of them for their union
            (:func:`tclap.data.banks.bank_setting`).
        seconds: clip length in seconds.
        sr: sample rate of the written audio.
        split: ``train`` or ``heldout`` (which bank instances / folds / files may be used).
        seed: base seed; item ``k`` uses ``SeedSequence([seed, k, split])``.
        min_events, max_events: events per ordered clip (2-3).
        overlap_prob: share of overlap clips (2 simultaneous events, no negative).
        min_gap, max_gap: silence between ordered events, seconds (shrunk towards ``min_gap`` to fit).
        gain_db: each event's random gain is drawn from ``[-gain_db, 0]`` dB.
        peak: the mix is peak-normalised to this level (positive and negative share one scale).
        test_folds: ESC-50 folds held out of training mixes.
        phrases_file: optional label -> phrase file for folder/CSV banks.
    """

    bank: str | tuple[str, ...] = "builtin"
    seconds: float = 10.0
    sr: int = 16000
    split: str = "train"
    seed: int = 0
    min_events: int = 2
    max_events: int = 3
    overlap_prob: float = 0.2
    min_gap: float = 0.15
    max_gap: float = 1.0
    gain_db: float = 6.0
    peak: float = 0.9
    test_folds: tuple[int, ...] = (5,)
    phrases_file: str | None = None

    def validate(self) -> None:
        if self.split not in _SPLIT_CODE:
            raise UserError(f"--split {self.split!r}: use train or heldout")
        if not 2 <= self.min_events <= self.max_events <= 3:
            raise UserError(f"--events {self.min_events}-{self.max_events}: use 2, 3 or 2-3")
        if not 0.0 <= self.overlap_prob <= 1.0:
            raise UserError(f"--overlap-prob {self.overlap_prob}: use a probability in [0, 1]")
        if self.sr < 4000:
            raise UserError(f"--sr {self.sr}: use a sample rate >= 4000 Hz")
        need = self.max_events * MIN_EVENT_SECONDS + (self.max_events - 1) * self.min_gap
        if self.seconds < need:
            raise UserError(
                f"--seconds {self.seconds:g} is too short for {self.max_events} events "
                f"(>= {need:.2f} s needed: {MIN_EVENT_SECONDS} s per event plus {self.min_gap} s gaps)"
            )
        if not 0 < self.min_gap <= self.max_gap:
            raise UserError(f"gaps must satisfy 0 < min_gap <= max_gap, got {self.min_gap}, {self.max_gap}")

    def identity(self) -> dict:
        """The settings that define the set's content (written to ``mixup_config.json``)."""
        d = asdict(self)
        d["test_folds"] = list(self.test_folds)
        if isinstance(self.bank, tuple):  # as JSON reads it back, so that a resumed set compares equal
            d["bank"] = list(self.bank)
        return d


@dataclass
class MixupReport:
    """What a run did. ``failed`` maps item ids to the reason they could not be built."""

    out_dir: Path
    manifest: Path | None
    requested: int
    written: int = 0
    skipped_existing: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    manifest_items: int = 0
    bank_skipped: list[tuple[str, str]] = field(default_factory=list)
    shards: list[Path] = field(default_factory=list)  # WebDataset output: this machine's tars
    shard_items: int = 0

    def summary(self) -> str:
        lines = [
            f"mixup: {self.requested} item(s) in this run -> {self.out_dir}: written {self.written}, "
            f"skipped-existing {self.skipped_existing}, failed {len(self.failed)}",
        ]
        if self.failed:
            for reason, count in Counter(self.failed.values()).most_common(5):
                lines.append(f"  failed x{count}: {reason}")
        if self.bank_skipped:
            lines.append(f"  clip bank: {len(self.bank_skipped)} file(s) skipped (listed in skipped_clips.tsv)")
            for path, reason in self.bank_skipped[:5]:
                lines.append(f"    {path}: {reason}")
        if self.manifest is not None:
            lines.append(f"  manifest: {self.manifest} ({self.manifest_items} item(s))")
        if self.shards:
            lines.append(f"  shards: {len(self.shards)} tar(s) in {self.out_dir} ({self.shard_items} item(s))")
        return "\n".join(lines)


def item_id(cfg: MixupConfig, index: int) -> str:
    """``<split>-s<seed>-<index>``: unique across splits and seeds so that sets can be merged."""
    return f"{cfg.split}-s{cfg.seed}-{index:07d}"


def _fade(x: np.ndarray, sr: int, fade_in_s: float, fade_out_s: float) -> np.ndarray:
    x = x.astype(np.float32, copy=True)
    n_in, n_out = int(fade_in_s * sr), int(fade_out_s * sr)
    if n_in > 0:
        x[:n_in] *= np.linspace(0.1, 1.0, n_in, dtype=np.float32)  # starts above 0: the onset stays audible
    if n_out > 0:
        x[-n_out:] *= np.linspace(1.0, 0.0, n_out, dtype=np.float32)
    return x


def _crop(x: np.ndarray, max_len: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Crop ``[T]`` to at most ``max_len`` samples (random start), fading the cut edges to avoid clicks."""
    if len(x) <= max_len:
        return x
    start = int(rng.integers(0, len(x) - max_len + 1))
    return _fade(x[start : start + max_len], sr, 0.002 if start > 0 else 0.0, 0.01)


def _place(length: int, parts: list[tuple[int, np.ndarray]]) -> np.ndarray:
    out = np.zeros(length, dtype=np.float32)
    for start, wav in parts:
        out[start : start + len(wav)] += wav
    return out


def build_item(bank: ClipBank, cfg: MixupConfig, index: int, labels: list[str] | None = None) -> tuple[dict, np.ndarray, np.ndarray | None]:
    """Build mix-up item ``index`` in memory.

    Returns:
        ``(item, audio [T], negative_audio [T] | None)`` with ``T = round(seconds * sr)``; the item's
        ``audio`` / ``negative_audio`` are paths relative to the output folder.
    """
    labels = labels if labels is not None else bank.labels(cfg.split)
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, index, _SPLIT_CODE[cfg.split]]))
    sr = cfg.sr
    total = int(round(cfg.seconds * sr))
    overlap = rng.random() < cfg.overlap_prob
    k = 2 if overlap else int(rng.integers(cfg.min_events, min(cfg.max_events, len(labels)) + 1))
    chosen = [str(s) for s in rng.choice(labels, size=k, replace=False)]
    keys = [bank.draw(lab, cfg.split, rng) for lab in chosen]
    wavs = [bank.load(key, sr) for key in keys]
    gains = 10 ** (-rng.uniform(0.0, cfg.gain_db, size=k) / 20)
    min_gap = int(round(cfg.min_gap * sr))
    if overlap:
        cap = int(total * 0.6)
    else:
        cap = (total - (k - 1) * min_gap) // k
    wavs = [_crop(w, cap, sr, rng) * np.float32(g) for w, g in zip(wavs, gains)]
    lens = [len(w) for w in wavs]
    iid = item_id(cfg, index)

    if overlap:
        # The second event starts inside the first (10-60 % into it) so that they really overlap.
        start_b = int(lens[0] * rng.uniform(0.1, 0.6))
        if start_b + lens[1] > total:
            wavs[1] = _fade(wavs[1][: total - start_b], sr, 0.0, 0.01)
            lens[1] = len(wavs[1])
        span = max(lens[0], start_b + lens[1])
        lead = int(rng.integers(0, total - span + 1))
        starts = [lead, lead + start_b]
        pos = _place(total, list(zip(starts, wavs)))
        neg = None
        caption, negative = make_caption([bank.phrases[c] for c in chosen], "overlap", rng)
        relation = "overlap"
    else:
        free = total - sum(lens)
        gaps = rng.uniform(cfg.min_gap, cfg.max_gap, size=k - 1) * sr
        room = free - (k - 1) * min_gap
        extra = gaps - min_gap
        if extra.sum() > room:  # shrink towards the minimum gap so that everything fits
            extra *= room / max(extra.sum(), 1e-9)
        gaps_i = [min_gap + int(e) for e in extra]
        lead = int(rng.integers(0, total - sum(lens) - sum(gaps_i) + 1))
        starts, t = [], lead
        for i in range(k):
            starts.append(t)
            t += lens[i] + (gaps_i[i] if i < k - 1 else 0)
        pos = _place(total, list(zip(starts, wavs)))
        # Negative audio: the same instances reversed, gaps reversed, same lead-in.
        r_wavs, r_gaps = wavs[::-1], gaps_i[::-1]
        neg_starts, t = [], lead
        for i in range(k):
            neg_starts.append(t)
            t += len(r_wavs[i]) + (r_gaps[i] if i < k - 1 else 0)
        neg = _place(total, list(zip(neg_starts, r_wavs)))
        caption, negative = make_caption([bank.phrases[c] for c in chosen], "sequence", rng)
        relation = "sequence"

    # One scale for both clips so that they differ only in order (not level).
    peak = max(float(np.max(np.abs(pos))), float(np.max(np.abs(neg))) if neg is not None else 0.0)
    scale = np.float32(cfg.peak / peak) if peak > 0 else np.float32(1.0)
    pos = pos * scale
    neg = neg * scale if neg is not None else None

    def events(order: list[int], st: list[int]) -> list[dict]:
        evs = [
            {"label": chosen[i], "onset": round(s / sr, 6), "offset": round((s + lens[i]) / sr, 6)}
            for i, s in zip(order, st)
        ]
        return sorted(evs, key=lambda e: e["onset"])

    item = {
        "id": iid,
        "audio": f"audio/{iid}.wav",
        "captions": [caption],
        "negative_captions": [negative] if negative else [],
        "events": events(list(range(k)), starts),
        "split": cfg.split,
        "source": f"mixup:{bank.name}",
        "relation": relation,
        "clips": keys,
    }
    if neg is not None:
        item["negative_audio"] = f"negative_audio/{iid}.wav"
        item["negative_events"] = events(list(range(k))[::-1], neg_starts)
    return item, pos, neg


# ----------------------------------------------------------------------------------------------------------
# Running a set: sidecars, workers, resume.

_WORKER: dict = {}


def _init_worker(bank: ClipBank, cfg: MixupConfig, out_dir: str, labels: list[str]) -> None:
    _WORKER.update(bank=bank, cfg=cfg, out_dir=Path(out_dir), labels=labels)


def _is_done(out_dir: Path, cfg: MixupConfig, index: int) -> bool:
    iid = item_id(cfg, index)
    side = out_dir / "items" / f"{iid}.json"
    if not side.is_file() or not (out_dir / "audio" / f"{iid}.wav").is_file():
        return False
    try:
        item = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return not item.get("negative_audio") or (out_dir / item["negative_audio"]).is_file()


def _build_and_write(index: int) -> tuple[int, str, str]:
    """Build item ``index`` and write its files; returns ``(index, "written"|"failed", reason)``."""
    bank, cfg, out_dir, labels = _WORKER["bank"], _WORKER["cfg"], _WORKER["out_dir"], _WORKER["labels"]
    try:
        item, pos, neg = build_item(bank, cfg, index, labels)
        save_audio(out_dir / item["audio"], pos, cfg.sr)
        if neg is not None:
            save_audio(out_dir / item["negative_audio"], neg, cfg.sr)
        # The sidecar comes last: its presence means the item is complete.
        atomic_write_text(out_dir / "items" / f"{item['id']}.json", json.dumps(item, ensure_ascii=False))
    except (UserError, OSError) as exc:
        return index, "failed", str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return index, "written", ""


def _build_members(index: int) -> tuple[int, str, str, dict | None]:
    """Build item ``index`` as tar members (no files); returns ``(index, "written"|"failed", reason, members)``."""

    bank, cfg, labels = _WORKER["bank"], _WORKER["cfg"], _WORKER["labels"]
    try:
        item, pos, neg = build_item(bank, cfg, index, labels)
    except (UserError, OSError) as exc:
        return index, "failed", str(exc).splitlines()[0] if str(exc) else type(exc).__name__, None
    neg_bytes = encode_wav(neg, cfg.sr) if neg is not None else None
    return index, "written", "", item_members(item, encode_wav(pos, cfg.sr), neg_bytes)


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``; ``None`` -> ``(0, 1)``."""
    if not text:
        return 0, 1
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise UserError(f"--shard {text!r}: use i/n, e.g. 0/4 for the first of four shards") from None
    if n < 1 or not 0 <= i < n:
        raise UserError(f"--shard {text!r}: need 0 <= i < n")
    return i, n


def check_settings(path: Path, ident: dict, what: str) -> None:
    """Refuse a folder whose settings file ``path`` holds other settings than ``ident`` (one line naming the keys
    that differ); write ``ident`` there when the folder has none yet. ``what`` names the set in the message."""
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            old = None
        if old != ident:
            diff = sorted(k for k in set(ident) | set(old or {}) if (old or {}).get(k) != ident.get(k))
            raise UserError(
                f"{path.parent} holds {what} built with other settings ({', '.join(diff)} differ); "
                "use another --out folder or the same settings to resume"
            )
    else:
        atomic_write_text(path, json.dumps(ident, indent=1) + "\n")


def collect_items(out_dir: Path, cfg: MixupConfig, n: int) -> list[dict]:
    """Finished items of indices ``0..n-1`` from their sidecars, in index order."""
    items = []
    for k in range(n):
        if _is_done(out_dir, cfg, k):
            items.append(json.loads((out_dir / "items" / f"{item_id(cfg, k)}.json").read_text(encoding="utf-8")))
    return items


def build_mixups(
    cfg: MixupConfig,
    out_dir: str | Path,
    n: int,
    shard: tuple[int, int] = (0, 1),
    workers: int = 1,
    quiet: bool = False,
    strict: bool = False,
    webdataset: bool = False,
    bank: ClipBank | None = None,
    items_per_shard: int = 500,
) -> MixupReport:
    """Build (or resume) items ``k`` of ``0..n-1`` with ``k % shard[1] == shard[0]`` under ``out_dir``.

    Writes the audio, sidecars and, at the end, ``out_dir/manifest.jsonl`` from all finished items (also
    those of other shards sharing the folder); with ``webdataset``, WebDataset tars of ``items_per_shard`` items
    instead (see the module docstring). Returns a :class:`MixupReport`.
    """
    cfg.validate()
    if n < 1:
        raise UserError(f"--n {n}: build at least one clip")
    if workers < 1:
        raise UserError(f"--workers {workers}: use 1 or more")
    out = Path(out_dir)
    bank = bank if bank is not None else open_bank(cfg.bank, cfg.test_folds, cfg.phrases_file, strict=strict)
    labels = bank.check_split(cfg.split)
    out.mkdir(parents=True, exist_ok=True)
    check_settings(out / "mixup_config.json", cfg.identity(), "a mix-up set")
    report = MixupReport(out_dir=out, manifest=None, requested=0, bank_skipped=list(bank.skipped))
    if bank.skipped:
        atomic_write_text(out / "skipped_clips.tsv", "".join(f"{p}\t{r}\n" for p, r in bank.skipped))

    mine = list(range(shard[0], n, shard[1]))
    report.requested = len(mine)
    if webdataset:
        return _build_tars(report, bank, cfg, labels, out, mine, shard, items_per_shard, workers, quiet)
    todo = [k for k in mine if not _is_done(out, cfg, k)]
    report.skipped_existing = len(mine) - len(todo)
    disable = quiet or not sys.stderr.isatty()
    bar = tqdm(total=len(todo), desc="mixup", unit="clip", disable=disable)
    try:
        if workers == 1 or len(todo) < 2:
            _init_worker(bank, cfg, str(out), labels)
            results = map(_build_and_write, todo)
            for index, status, reason in results:
                _record(report, cfg, index, status, reason)
                bar.update(1)
        else:
            with _pool(workers, bank, cfg, out, labels) as pool:
                chunk = max(1, min(16, len(todo) // (workers * 8)))
                for index, status, reason in pool.imap_unordered(_build_and_write, todo, chunksize=chunk):
                    _record(report, cfg, index, status, reason)
                    bar.update(1)
    finally:
        bar.close()
        _WORKER.clear()

    items = collect_items(out, cfg, n)
    if items:
        report.manifest = write_manifest(out / "manifest.jsonl", [_to_manifest(out, it) for it in items])
        report.manifest_items = len(items)
    return report


def _pool(workers: int, bank: ClipBank, cfg: MixupConfig, out: Path, labels: list[str]):
    """A process pool whose workers hold the bank (fork where the platform has it: they start in milliseconds and
    inherit the scanned bank; spawn elsewhere; items depend only on (config, index), so the result is the same)."""
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    return ctx.Pool(workers, initializer=_init_worker, initargs=(bank, cfg, str(out), labels))


def _build_tars(report: MixupReport, bank: ClipBank, cfg: MixupConfig, labels: list[str], out: Path, mine: list[int],
                shard: tuple[int, int], per: int, workers: int, quiet: bool) -> MixupReport:
    """Write this machine's items as tars ``mixup-<i>of<n>-<j>.tar`` and its index (module docstring)."""

    if per < 1:
        raise UserError(f"--shard-items {per}: use 1 or more items per tar")
    i, n = shard
    other = sorted(p.name for p in out.glob("mixup-*of*.tar") if not p.name.split("-")[1].endswith(f"of{n:05d}"))
    if other:
        raise UserError(f"{out} holds tars of another --shard split ({other[0]}); use the same n or another --out folder")
    stem = f"mixup-{i:05d}of{n:05d}"
    parts = [mine[j:j + per] for j in range(0, len(mine), per)]
    infos: dict[str, ShardInfo] = {}
    todo: list[tuple[Path, list[int]]] = []
    for j, part in enumerate(parts):
        path = out / f"{stem}-{j:06d}.tar"
        done = finished_shard(path, len(part))
        if done is not None:
            infos[path.name] = done
            report.skipped_existing += len(part)
            continue
        todo.append((path, part))
    disable = quiet or not sys.stderr.isatty()
    bar = tqdm(total=sum(len(p) for _, p in todo), desc="mixup", unit="clip", disable=disable)
    pool = _pool(workers, bank, cfg, out, labels) if workers > 1 and todo else None
    try:
        _init_worker(bank, cfg, str(out), labels)
        for path, part in todo:
            results = pool.imap(_build_members, part, chunksize=4) if pool else map(_build_members, part)
            writer = ShardWriter(path)
            try:
                for index, status, reason, members in results:
                    _record(report, cfg, index, status, reason)
                    if members is not None:
                        writer.add(shard_key(item_id(cfg, index)), members)
                    bar.update(1)
                infos[path.name] = writer.close()
            except BaseException:
                writer.abort()
                raise
    finally:
        bar.close()
        _WORKER.clear()
        if pool is not None:
            pool.close()
            pool.join()
    names = [f"{stem}-{j:06d}.tar" for j in range(len(parts))]
    write_index(out / f"{stem}{INDEX_SUFFIX}", {name: infos[name] for name in names})
    report.shards = [out / name for name in names]
    report.shard_items = sum(infos[name].items for name in names)
    return report


def _record(report: MixupReport, cfg: MixupConfig, index: int, status: str, reason: str) -> None:
    if status == "written":
        report.written += 1
    else:
        report.failed[item_id(cfg, index)] = reason


def _to_manifest(out: Path, item: dict) -> dict:
    it = dict(item)
    it["audio"] = str((out / it["audio"]).resolve())
    if it.get("negative_audio"):
        it["negative_audio"] = str((out / it["negative_audio"]).resolve())
    return it


def build_builtin_mixups(
    out_dir: str | Path, n: int, seconds: float, sr: int = 16000, split: str = "train", seed: int = 0,
    workers: int = 1,
) -> Path:
    """Build (or resume) ``n`` built-in-bank mix-ups under ``out_dir``; returns ``out_dir/manifest.jsonl``.

    ``workers`` processes build them (the items depend only on the settings and their index, not on this).

    Raises :class:`UserError` when an item could not be built (the built-in bank never should fail).
    """
    cfg = MixupConfig(bank="builtin", seconds=seconds, sr=sr, split=split, seed=seed)
    report = build_mixups(cfg, out_dir, n, workers=workers, quiet=True)
    if report.failed or report.manifest is None or report.manifest_items != n:
        raise UserError(f"built-in mix-ups under {out_dir} are incomplete: {report.summary()}")
    return report.manifest
