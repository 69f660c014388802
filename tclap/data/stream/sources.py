"""Training sources named on the command line: what a ``SOURCE`` string means, and how many items it holds.

A ``SOURCE`` is one of

- a manifest, ``*.jsonl`` (:mod:`tclap.data.manifest`): a list of items, each a *unit* of one item;
- WebDataset shards: a ``.tar`` path, a glob (``data/*.tar``), a brace pattern (``data/{000000..000099}.tar``,
  expanded by ``webdataset``), a folder holding ``*.tar``, a ``pipe:`` command (``pipe:aws s3 cp s3://b/x.tar -``;
  braces expand there too) or another URL ``webdataset.gopen`` opens; each shard is a *unit*;
- ``bank:builtin``, ``bank:FOLDER`` or ``bank:ESC50_CSV``: a clip bank (:func:`tclap.data.banks.open_bank`) from
  which temporal mix-ups are made on the fly (endless; its training split only); ``bank:builtin+FOLDER`` joins
  banks into one (:func:`tclap.data.banks.split_bank_spec`: their union of classes, each bank's hold-out kept).

Counting: an epoch plan needs every unit's item count before any reading starts. Shards written by this
project carry an index (:func:`tclap.data.shards.read_indexes`); other local shards are counted by walking their
headers and reading only their small ``.json`` members; other URLs are read once through (a note says so) and
the counts kept in the run folder, keyed by URL (and size and modification time for local files), so that a
resumed run does not read them again. Counting applies the same rule as the readers (:func:`usable`), so the
plan and the reading agree item for item.
"""

from __future__ import annotations

import glob
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from basekit.atomic import atomic_write_text
from basekit.errors import UserError
from tclap.data.shards import (NO_NEGATIVE, Counted, ShardInfo, count_shard, is_local, local_path, read_index_file,
                               read_indexes, require_webdataset)
from tclap.data.manifest import read_manifest

MANIFEST, SHARDS, BANK = "manifest", "shards", "bank"


@dataclass(frozen=True)
class Unit:
    """What one reader reads at a time: a shard (``url``), or one manifest item (``url`` = manifest, ``item``)."""

    url: str
    items: int  # usable items (those with a negative caption where the stream needs one)
    item: int | None = None  # index into the manifest's items


@dataclass
class Source:
    """One ``SOURCE`` string, resolved."""

    text: str
    kind: str  # MANIFEST | SHARDS | BANK
    urls: list[str] = field(default_factory=list)  # shards; [manifest path] for a manifest
    bank: str | None = None  # the bank spec after "bank:"


def parse_source(text: str) -> Source:
    """Classify ``text`` and expand shard patterns (one-line errors for patterns that match nothing)."""
    t = text.strip()
    if not t:
        raise UserError("empty --train/--positive source; give a manifest, shards or bank:SPEC")
    if t.startswith("bank:"):
        spec = t[len("bank:"):]
        if not spec:
            raise UserError(f"source {text!r}: name the bank after 'bank:' (builtin, a folder per class, or an ESC-50 CSV)")
        return Source(text, BANK, bank=spec)
    if is_local(t) and t.lower().endswith(".jsonl") and not _has_pattern(t):
        if not Path(t).is_file():
            raise UserError(f"manifest not found: {t} (build one with `tclap mixup`, or fix the path)")
        return Source(text, MANIFEST, urls=[t])
    return Source(text, SHARDS, urls=expand_shards(t))


def _has_pattern(t: str) -> bool:
    return any(c in t for c in "*?[{")


def expand_shards(text: str) -> list[str]:
    """The shard URLs of a pattern: braces (webdataset's rule, also ``::`` lists), then globs on local paths."""
    expand_urls = require_webdataset("webdataset.shardlists").expand_urls

    if is_local(text) and not _has_pattern(text) and Path(local_path(text)).is_dir():
        found = sorted(str(p) for p in Path(local_path(text)).glob("*.tar"))
        if not found:
            raise UserError(f"source {text}: the folder holds no *.tar shards (write them with `tclap mixup --format webdataset`)")
        return found
    urls: list[str] = []
    for u in expand_urls(text):
        if is_local(u) and any(c in u for c in "*?["):
            matched = sorted(glob.glob(local_path(u)))
            if not matched:
                raise UserError(f"source {text}: the pattern {u} matches no file; fix the pattern")
            urls += matched
        else:
            urls.append(u)
    if not urls:
        raise UserError(f"source {text}: the pattern expands to no shard; fix the pattern")
    missing = [u for u in urls if is_local(u) and not Path(local_path(u)).is_file()]
    if missing:
        raise UserError(f"source {text}: {len(missing)} of {len(urls)} shard(s) do not exist (first: {missing[0]}); "
                        "fix the pattern or the range")
    if len(set(urls)) != len(urls):
        raise UserError(f"source {text}: a shard is named twice; list each shard once")
    return urls


def read_shard_indexes(paths) -> dict[str, ShardInfo]:
    """Tar name -> counts from index files (``--shard-index``); one line for a file that is not an index."""
    out: dict[str, ShardInfo] = {}
    for p in paths:
        got = read_index_file(p)
        if not got:
            raise UserError(f"--shard-index {p}: not a shard index (an index.json / *.index.json that `tclap mixup "
                            "--format webdataset` writes beside its tars)")
        out.update(got)
    return out


class CountCache:
    """Counts of shards that have no index, kept in ``<run>/stream_counts.json`` (``path=None``: not kept)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.data: dict = {}
        if path is not None and path.is_file():
            try:
                self.data = json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                self.data = {}
        self.dirty = False

    @staticmethod
    def _stamp(url: str) -> list | None:
        if not is_local(url):
            return None
        st = os.stat(local_path(url))
        return [st.st_size, st.st_mtime_ns]

    def get(self, url: str) -> Counted | None:
        rec = self.data.get(url)
        if rec is None or rec.get("stamp") != self._stamp(url):
            return None
        return Counted(rec["items"], rec["with_negative"], list(rec.get("problems", [])), int(rec.get("unusable", 0)),
                       bool(rec.get("truncated", False)))

    def put(self, url: str, c: Counted) -> None:
        self.data[url] = {"stamp": self._stamp(url), "items": c.items, "with_negative": c.with_negative,
                          "problems": c.problems, "unusable": c.unusable, "truncated": c.truncated}
        self.dirty = True

    def save(self) -> None:
        if self.path is not None and self.dirty:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps(self.data, indent=1))
            self.dirty = False


def remote_name(url: str) -> str | None:
    """The tar file name a ``pipe:`` command or URL reads (the last ``*.tar`` word in it), for index look-ups."""
    found = re.findall(r"([^/\s'\"]+\.tar)\b", url)
    return found[-1] if found else None


def shard_units(urls: list[str], need_negative: bool, cache: CountCache, quiet: bool = False,
                remote_index: dict[str, ShardInfo] | None = None) -> tuple[list[Unit], dict[str, int], list[str]]:
    """Units of a shard list: ``(units, skipped counts by reason, problem lines)``.

    ``remote_index`` (tar name -> counts, from index files given with ``--shard-index``) counts ``pipe:`` and other
    remote shards by the tar name they read, without reading them.

    Items without a negative caption count as skipped (``NO_NEGATIVE``) where ``need_negative``; items that
    cannot be used at all (no audio, no caption, a truncated archive) were named while counting.
    """
    indexes: dict[str, dict[str, ShardInfo]] = {}
    units, skipped, problems = [], {}, []
    remote_index = remote_index or {}
    remote = [u for u in urls if not is_local(u) and cache.get(u) is None and remote_name(u) not in remote_index]
    if remote and not quiet:
        print(f"tclap train: counting the items of {len(remote)} shard(s) without an index by reading them once "
              "(kept in the run folder for a resume)", file=sys.stderr)
    for url in urls:
        info = None
        if is_local(url):
            p = Path(local_path(url))
            folder = str(p.parent)
            if folder not in indexes:
                indexes[folder] = read_indexes(folder)
            info = indexes[folder].get(p.name)
        else:
            info = remote_index.get(remote_name(url) or "")
        if info is not None:
            c = Counted(info.items, info.with_negative)
        else:
            c = cache.get(url)
            if c is None:
                c = count_shard(url)
                cache.put(url, c)
        problems += c.problems
        n = c.with_negative if need_negative else c.items
        if need_negative and c.items > c.with_negative:
            skipped[NO_NEGATIVE] = skipped.get(NO_NEGATIVE, 0) + c.items - c.with_negative
        for key, k in (("unusable item: no audio, caption or readable JSON (named above)", c.unusable),
                       ("truncated shard: items past the cut are lost (named above)", int(c.truncated))):
            if k:
                skipped[key] = skipped.get(key, 0) + k
        units.append(Unit(url, n))
    return units, skipped, problems


def manifest_units(path: str, need_negative: bool) -> tuple[list[Unit], list[dict], dict[str, int]]:
    """Units of a manifest streamed from disk (one item each): ``(units, items, skipped)``."""

    items = read_manifest(path, check_files=True)
    units, kept, skipped = [], [], {}
    for it in items:
        caps = [c for c in it.get("captions", []) if c and c.strip()]
        if not caps:
            raise UserError(f"manifest {path}: item {it.get('id')!r} has no caption (every item needs at least one)")
        if need_negative and not [c for c in it.get("negative_captions") or [] if c and c.strip()]:
            skipped[NO_NEGATIVE] = skipped.get(NO_NEGATIVE, 0) + 1
            continue
        units.append(Unit(path, 1, len(kept)))
        kept.append(it)
    return units, kept, skipped


def short(url: str, width: int = 70) -> str:
    """A URL cut to ``width`` characters for the plan's lines."""
    return url if len(url) <= width else "..." + url[-(width - 3):]



def is_streamed(text: str) -> bool:
    """Whether a SOURCE is read as a stream (shards, a bank) rather than as a manifest held in memory."""
    t = text.strip()
    return not (is_local(t) and t.lower().endswith(".jsonl") and not _has_pattern(t))
