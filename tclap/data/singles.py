"""Single-event clips of a clip bank as a positive-only set: one clip per item, captioned with its phrase.

The paper fine-tunes T-CLAP on batches that mix a positive-only set (AudioCaps, Clotho: captions without a
negative) with the temporal sets at 1:4. In the miniature the positive-only set is the bank's own events
one at a time ("A dog-like bark"): the L_c signal that keeps *which* events are heard while L_t teaches
their order. Without it the tiny T-CLAP traded event identity for order: on the held-out mix-ups its
wrong top-1 captions named the wrong events 94 times in 400 against the baseline's 11 (seed 0), and its
zero-shot accuracy fell from 82 to 53.

Each item is the clip as the bank loads it (built-in: rendered; files: silence trimmed, peak 1), cut to
``seconds``, starting at 0 — the layout of the held-out single-event set that zero-shot is scored on.

Output (paths in the manifest are relative to it)::

    OUT/audio/<label>-<n>.wav  OUT/manifest.jsonl  OUT/singles_config.json

A re-run with the same settings rewrites only missing audio; other settings are refused (one line).

WebDataset output (``webdataset=True``, ``tclap singles --format webdataset``): no audio files, no manifest; the
items go into ``OUT/singles-<j>.tar`` (``items_per_shard`` each, :mod:`tclap.data.shards` layout) with an index
``OUT/singles.index.json``, ready for ``tclap train --positive OUT``. A re-run keeps the tars that hold the items
they should and rebuilds the others.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import soundfile as sf
from tqdm.auto import tqdm

from basekit.audio import encode_wav, save_audio
from tclap.data.banks import open_bank
from tclap.data.captions import capitalize_first
from tclap.data.manifest import write_manifest
from tclap.data.mixup import check_settings
from basekit.errors import UserError
from tclap.data.shards import (INDEX_SUFFIX, ShardInfo, ShardWriter, finished_shard, item_members, shard_key,
                               write_index)

CONFIG_FILE = "singles_config.json"


@dataclass(frozen=True)
class SinglesConfig:
    """Settings of one single-event set.

    Attributes:
        bank: ``"builtin"``, a folder per class, or an ESC-50-style CSV; a tuple of them for their union
            (:func:`tclap.data.banks.bank_setting`).
        per_class: clips per class (built-in: instances 0.. of the split; file banks: the first ``per_class``
            clips of the class by path, all of them when the class has fewer).
        seconds: longest clip length in seconds (longer clips are cut).
        sr: sample rate of the written audio.
        split: ``train`` or ``heldout``.
        test_folds: ESC-50 folds held out of training.
        phrases_file: optional label -> phrase file for folder/CSV banks.
    """

    bank: str | tuple[str, ...] = "builtin"
    per_class: int = 100
    seconds: float = 4.0
    sr: int = 16000
    split: str = "train"
    test_folds: tuple[int, ...] = (5,)
    phrases_file: str | None = None

    def validate(self) -> None:
        if self.per_class < 1:
            raise UserError(f"--per-class {self.per_class}: give 1 or more clips per class")
        if not self.seconds > 0:
            raise UserError(f"--seconds {self.seconds:g}: give a length > 0")
        if self.sr < 4000:
            raise UserError(f"--sr {self.sr}: use a sample rate >= 4000 Hz")
        if self.split not in ("train", "heldout"):
            raise UserError(f"--split {self.split!r}: use train or heldout")

    def identity(self) -> dict:
        d = asdict(self)
        d["test_folds"] = list(self.test_folds)
        if isinstance(self.bank, tuple):  # as JSON reads it back, so that a re-run compares equal
            d["bank"] = list(self.bank)
        return d


@dataclass
class SinglesReport:
    manifest: Path
    items: int
    written: int
    classes: int
    failed: dict[str, str] = field(default_factory=dict)  # clip key -> reason
    bank_skipped: int = 0  # files the bank scan left out (unreadable, empty, too short)
    shards: list[Path] = field(default_factory=list)  # WebDataset output: the tars

    def summary(self) -> str:
        where = f"{len(self.shards)} tar(s) in {self.shards[0].parent}" if self.shards else str(self.manifest)
        s = f"{self.items} single-event clip(s) of {self.classes} class(es) in {where} ({self.written} written now)"
        if self.bank_skipped:
            s += f"; {self.bank_skipped} bank file(s) skipped while scanning"
        return s + (f"; {len(self.failed)} clip(s) could not be read and were left out" if self.failed else "")


def build_singles(cfg: SinglesConfig, out_dir: str | Path, quiet: bool = False, strict: bool = False,
                  webdataset: bool = False, items_per_shard: int = 500) -> SinglesReport:
    """Write ``cfg.per_class`` single-event clips per class of ``cfg.bank`` under ``out_dir``.

    Returns a :class:`SinglesReport`; ``failed`` lists clips that could not be loaded (with ``strict``, the
    first one raises instead). Items: ``{"id", "audio", "captions": [phrase], "events": [one], "split",
    "source": "single:<bank>", "relation": "single"}``.
    """
    cfg.validate()
    out = Path(out_dir)
    bank = open_bank(cfg.bank, test_folds=cfg.test_folds, phrases_file=cfg.phrases_file, strict=strict)
    labels = bank.check_split(cfg.split)
    out.mkdir(parents=True, exist_ok=True)
    check_settings(out / CONFIG_FILE, cfg.identity(), "a single-event set")
    todo = [(label, j, key) for label in labels for j, key in enumerate(bank.keys(label, cfg.split, cfg.per_class))]
    n = int(round(cfg.seconds * cfg.sr))
    if webdataset:
        return _build_tars(cfg, bank, labels, todo, out, n, items_per_shard, quiet, strict)
    items, failed, written = [], {}, 0
    for label, j, key in tqdm(todo, desc="single-event clips", disable=quiet):
        path = (out / "audio" / f"{label}-{j}.wav").resolve()
        try:
            if path.is_file():  # written atomically by an earlier run with the same settings
                length = sf.info(str(path)).frames
            else:
                wav = bank.load(key, cfg.sr)[:n]
                save_audio(path, wav, cfg.sr)
                length, written = len(wav), written + 1
        except (UserError, OSError) as exc:
            if strict:
                raise
            failed[key] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            continue
        items.append(_item(bank, cfg, label, j, key, length, str(path)))
    manifest = out / "manifest.jsonl"
    write_manifest(manifest, items)
    return SinglesReport(manifest, len(items), written, len(labels), failed, len(bank.skipped))


def _item(bank, cfg: SinglesConfig, label: str, j: int, key: str, length: int, audio: str | None) -> dict:
    item = {"id": f"single-{label}-{j}", "captions": [capitalize_first(bank.phrases[label])],
            "events": [{"label": label, "onset": 0.0, "offset": round(length / cfg.sr, 6)}],
            "split": cfg.split, "source": f"single:{bank.name}", "relation": "single", "clip": key}
    return {"audio": audio, **item} if audio is not None else item


def _build_tars(cfg: SinglesConfig, bank, labels: list[str], todo: list, out: Path, n: int, per: int, quiet: bool,
                strict: bool) -> SinglesReport:
    """The single-event clips as ``OUT/singles-<j>.tar`` and ``OUT/singles.index.json`` (module docstring)."""

    if per < 1:
        raise UserError(f"--shard-items {per}: use 1 or more items per tar")
    parts = [todo[i:i + per] for i in range(0, len(todo), per)]
    infos: dict[str, ShardInfo] = {}
    failed: dict[str, str] = {}
    written = 0
    for j, part in enumerate(tqdm(parts, desc="single-event tars", disable=quiet)):
        path = out / f"singles-{j:06d}.tar"
        done = finished_shard(path, len(part))
        if done is not None:
            infos[path.name] = done
            continue
        writer = ShardWriter(path)
        try:
            for label, k, key in part:
                try:
                    wav = bank.load(key, cfg.sr)[:n]
                except (UserError, OSError) as exc:
                    if strict:
                        raise
                    failed[key] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    continue
                item = _item(bank, cfg, label, k, key, len(wav), None)
                writer.add(shard_key(item["id"]), item_members(item, encode_wav(wav, cfg.sr)))
                written += 1
            infos[path.name] = writer.close()
        except BaseException:
            writer.abort()
            raise
    write_index(out / f"singles{INDEX_SUFFIX}", infos)
    shards = [out / name for name in infos]
    return SinglesReport(out, sum(i.items for i in infos.values()), written, len(labels), failed, len(bank.skipped), shards)


def build_builtin_singles(out_dir: str | Path, per_class: int, seconds: float, sr: int = 16000,
                          split: str = "train") -> Path:
    """Build (or reuse) the built-in bank's single-event set; returns its manifest path."""
    report = build_singles(SinglesConfig(bank="builtin", per_class=per_class, seconds=seconds, sr=sr, split=split),
                           out_dir, quiet=True)
    if report.failed:
        raise UserError(f"built-in single-event clips under {out_dir} are incomplete: {report.summary()}")
    return report.manifest
