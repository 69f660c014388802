"""Captioned sets (AudioCaps, Clotho, Auto-ACD and the like) as WebDataset shards the trainers stream.

Input: a table of captions and an audio folder.

- CSV, one of: AudioCaps (``audiocap_id,youtube_id,start_time,caption``: one caption per row, several rows per
  clip), Clotho (``file_name,caption_1..caption_5``), or any CSV with an audio column and a ``caption`` column
  (Auto-ACD-style ``youtube_id,caption``).
- JSON Lines: ``{"audio" | "file_name" | ...: NAME, "caption": TEXT | "captions": [TEXT, ...], "id": optional}``.

The audio file of a row is ``AUDIO_DIR/<name>``, where the name comes from ``audio_column`` (default: the first of
:data:`AUDIO_COLUMNS` the table has) or from a pattern over the row's columns (``audio_name``, e.g.
``{youtube_id}_{start_time}.wav``); a name without an audio extension is tried with ``.wav``, ``.flac``, ``.ogg``
and ``.mp3``. Rows naming the same file are one item with all their captions (in table order, exact repeats
dropped). The item id is the name without its extension.

Negatives (``tclap negatives`` output, ``negatives.jsonl`` or ``.csv``: ``caption``, ``negative`` per row) are
joined in by caption text: an item's ``negative_captions`` are its captions' negatives, in caption order, pairwise
when every caption has one (the trainers then keep the pairs); captions without a negative are counted.

Output, machine ``i`` of ``n`` (``shard=(i, n)``) taking items ``k`` with ``k % n == i`` (in table order):

    OUT/<prefix>-<i>of<n>-<j>.tar       items mine[j*P:(j+1)*P]: <key>.<ext> (the audio file's bytes, as they are)
                                         and <key>.json {"id", "captions", "negative_captions", "source"}
    OUT/<prefix>-<i>of<n>.index.json    item counts of machine i's tars (the trainers plan epochs from it)

The layout is the one :mod:`tclap.data.stream` reads (:func:`tclap.data.shards.item_members`). Each tar is written
atomically; a re-run keeps every tar that already holds exactly its items (the keys, in order) and writes the
rest, so an interrupted conversion resumes and machines never write the same file.

Bad input is counted and listed, one line each, and left out: a row without audio name or without caption, a
JSON line that does not parse, an audio file that is missing, empty or not audio. A table that cannot be read at
all (missing, not UTF-8, no caption or audio column) is one :class:`UserError`.
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from basekit.errors import UserError
from tclap.data.shards import count_shard, INDEX_SUFFIX, ShardInfo, ShardWriter, TarReader, item_members, shard_key, write_index

AUDIO_COLUMNS = ("file_name", "audio", "filename", "file", "path", "youtube_id", "ytid", "audiocap_id", "id")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


@dataclass
class Row:
    """One caption row of the table: where it is (for messages), the audio name, its captions."""

    where: str
    audio: str
    captions: list[str]


@dataclass
class Item:
    id: str
    audio: str  # the name as the table gives it
    captions: list[str]
    where: str  # the first row that names it
    path: Path | None = None
    negative_captions: list[str] = field(default_factory=list)


@dataclass
class CaptionedReport:
    """What a conversion did: items written and kept, tars, problems (one line each), captions without negatives."""

    items: int = 0  # this machine's usable items
    written: int = 0
    kept: int = 0  # in tars finished by an earlier run
    shards: list[Path] = field(default_factory=list)
    index: Path | None = None
    problems: list[str] = field(default_factory=list)
    captions: int = 0
    without_negative: int = 0

    def summary(self) -> str:
        lines = [f"shards captions: {self.items} item(s) in {len(self.shards)} tar(s) ({self.written} written, "
                 f"{self.kept} kept from an earlier run); index {self.index}"]
        if self.captions:
            lines.append(f"  {self.captions - self.without_negative}/{self.captions} caption(s) with a negative")
        if self.problems:
            lines.append(f"  skipped {len(self.problems)} row(s) or item(s) (listed above)")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ reading
def read_rows(path: str | Path, audio_column: str | None = None, audio_name: str | None = None) -> tuple[list[Row], list[str]]:
    """The caption rows of a CSV or JSONL table: ``(rows, problem lines)`` (rows without audio or caption are
    problems, not rows)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"captions table not found: {p}")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"captions table {p} is not UTF-8 text; save it as UTF-8 CSV or JSONL") from None
    if p.suffix.lower() in (".jsonl", ".json"):
        records = []
        problems = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"{p}:{lineno}: not valid JSON ({exc.msg})")
                continue
            if not isinstance(rec, dict):
                problems.append(f"{p}:{lineno}: not a JSON object")
                continue
            records.append((f"{p}:{lineno}", rec))
        cols = sorted({k for _, r in records for k in r})
    elif p.suffix.lower() == ".csv":
        try:
            reader = csv.DictReader(text.splitlines())
            cols = list(reader.fieldnames or [])
            records = [(f"{p}:{k}", r) for k, r in enumerate(reader, 2)]
        except csv.Error as exc:
            raise UserError(f"captions table {p}: not a readable CSV ({exc})") from None
        problems = []
    else:
        raise UserError(f"captions table {p}: use a .csv (AudioCaps / Clotho / Auto-ACD layout) or a .jsonl file")
    caption_cols = [c for c in cols if c == "caption" or c == "captions" or c.startswith("caption_")]
    if not caption_cols:
        raise UserError(f"captions table {p}: no caption column (expected caption, captions or caption_1..caption_5); "
                        f"it has {', '.join(cols[:8]) or 'none'}")
    if audio_name is None:
        col = audio_column or next((c for c in AUDIO_COLUMNS if c in cols), None)
        if col is None or col not in cols:
            raise UserError(f"captions table {p}: no audio column {'(' + audio_column + ') ' if audio_column else ''}"
                            f"(expected one of {', '.join(AUDIO_COLUMNS)}); name it with --audio-column or "
                            "--audio-name '{youtube_id}_{start_time}.wav'")
    rows: list[Row] = []
    for where, rec in records:
        if audio_name is not None:
            try:
                name = audio_name.format(**{k: ("" if v is None else v) for k, v in rec.items()})
            except (KeyError, IndexError, ValueError) as exc:
                raise UserError(f"--audio-name {audio_name!r}: {where} has no field {exc}; use the table's columns "
                                f"({', '.join(cols[:8])})") from None
        else:
            name = rec.get(col)
        name = str(name).strip() if name is not None else ""
        caps = _captions(rec, caption_cols)
        if not name:
            problems.append(f"{where}: a caption row without an audio file name")
        elif not caps:
            problems.append(f"{where}: no caption for {name}")
        else:
            rows.append(Row(where, name, caps))
    return rows, problems


def _captions(rec: dict, cols: list[str]) -> list[str]:
    out = []
    for c in sorted(cols, key=lambda c: (c != "caption" and c != "captions", c)):
        v = rec.get(c)
        for t in (v if isinstance(v, list) else [v]):
            if isinstance(t, str) and t.strip():
                out.append(t.strip())
    return out


def group_items(rows: list[Row]) -> list[Item]:
    """Rows naming the same audio file as one item (first-appearance order; repeated captions dropped)."""

    items: dict[str, Item] = {}
    for r in rows:
        it = items.get(r.audio)
        if it is None:
            stem = r.audio[: -len(Path(r.audio).suffix)] if Path(r.audio).suffix.lower() in AUDIO_SUFFIXES else r.audio
            it = items[r.audio] = Item(shard_key(stem), r.audio, [], r.where)
        it.captions += [c for c in r.captions if c not in it.captions]
    return list(items.values())


def read_negatives(path: str | Path) -> dict[str, str]:
    """Caption -> negative caption from ``tclap negatives`` output (JSONL or CSV rows with caption and negative;
    rows without a negative are left out; the first negative of a caption is kept)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"--negatives {p}: file not found (write it with `tclap negatives CAPTIONS --out DIR`)")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"--negatives {p}: not UTF-8 text") from None
    if p.suffix.lower() == ".csv":
        recs = list(csv.DictReader(text.splitlines()))
    else:
        recs = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    recs.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise UserError(f"--negatives {p}:{lineno}: not valid JSON ({exc.msg}); use tclap negatives' "
                                    "negatives.jsonl") from None
    out: dict[str, str] = {}
    for r in recs:
        if not isinstance(r, dict) or "caption" not in r or "negative" not in r:
            raise UserError(f"--negatives {p}: rows need 'caption' and 'negative' (tclap negatives' negatives.jsonl)")
        cap, neg = str(r["caption"] or "").strip(), str(r["negative"] or "").strip()
        if cap and neg and cap not in out:
            out[cap] = neg
    return out


def check_audio(it: Item, audio_dir: Path) -> str | None:
    """Resolve ``it.path``; None when the file is usable, else why not."""
    base = audio_dir / it.audio
    cands = [base] if base.suffix.lower() in AUDIO_SUFFIXES else [base, *(base.with_name(base.name + s) for s in AUDIO_SUFFIXES)]
    path = next((c for c in cands if c.is_file()), None)
    if path is None:
        return f"audio file {base}{'' if len(cands) == 1 else '(.wav|.flac|.ogg|.mp3)'} not found"
    if path.suffix.lower() not in AUDIO_SUFFIXES:
        return f"audio file {path} has no audio extension ({', '.join(AUDIO_SUFFIXES)})"
    if path.stat().st_size == 0:
        return f"audio file {path} is empty"
    if path.suffix.lower() != ".mp3":  # libsndfile reads these headers; mp3 support varies by build
        import soundfile as sf  # noqa: PLC0415

        try:
            info = sf.info(str(path))
        except Exception as exc:  # soundfile raises several types for unreadable files
            return f"audio file {path} is not readable audio ({str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__})"
        if info.frames == 0:
            return f"audio file {path} has no samples"
    it.path = path
    return None


# ------------------------------------------------------------------------------------------------ writing
def convert(table: str | Path, audio_dir: str | Path, out_dir: str | Path, negatives: str | Path | None = None,
            shard: tuple[int, int] = (0, 1), items_per_shard: int = 500, audio_column: str | None = None,
            audio_name: str | None = None, source: str | None = None, prefix: str = "captions",
            quiet: bool = False) -> CaptionedReport:
    """Write machine ``shard[0]`` of ``shard[1]``'s items of ``table`` as tars in ``out_dir`` (module docstring).

    Problems are printed to stderr, one line each, unless ``quiet``, and returned in the report.
    """

    i, n = shard
    if items_per_shard < 1:
        raise UserError(f"--shard-items {items_per_shard}: use 1 or more items per tar")
    audio_dir = Path(audio_dir)
    if not audio_dir.is_dir():
        raise UserError(f"--audio-dir {audio_dir}: not a folder; give the folder the table's audio names are in")
    rows, problems = read_rows(table, audio_column, audio_name)
    items = group_items(rows)
    keys: dict[str, str] = {}
    for it in items:  # two names that map to one key (a.wav and a.flac) would collide in a tar
        if it.id in keys:
            raise UserError(f"{it.where}: {it.audio} and {keys[it.id]} give the same item id {it.id!r}; rename one")
        keys[it.id] = it.audio
    neg = read_negatives(negatives) if negatives else {}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    other = sorted(p.name for p in out.glob(f"{prefix}-*of*.tar") if f"of{n:05d}-" not in p.name)
    if other:
        raise UserError(f"{out} holds tars of another --shard split ({other[0]}); use the same n or another --out folder")
    report = CaptionedReport()
    mine = []
    for it in items[i::n]:
        why = check_audio(it, audio_dir)
        if why is not None:
            problems.append(f"{it.where}: {why}")
            continue
        it.negative_captions = [neg[c] for c in it.captions if c in neg]
        report.captions += len(it.captions)
        report.without_negative += len(it.captions) - len(it.negative_captions)
        mine.append(it)
    report.problems = problems
    if not quiet:
        for line in problems:
            print(f"tclap shards captions: skipped {line}", file=sys.stderr)
    src = source or Path(table).stem
    stem = f"{prefix}-{i:05d}of{n:05d}"
    parts = [mine[j:j + items_per_shard] for j in range(0, len(mine), items_per_shard)]
    infos = {}
    for j, part in enumerate(parts):
        path = out / f"{stem}-{j:06d}.tar"
        info = _finished(path, [it.id for it in part])
        if info is not None:
            infos[path.name] = info
            report.kept += len(part)
            continue
        writer = ShardWriter(path)
        try:
            for it in part:
                meta = {"id": it.id, "captions": it.captions, "negative_captions": it.negative_captions, "source": src}
                writer.add(it.id, item_members(meta, it.path.read_bytes(), audio_ext=it.path.suffix.lower()[1:]))
            infos[path.name] = writer.close()
        except BaseException:
            writer.abort()
            raise
        report.written += len(part)
    report.items = len(mine)
    report.shards = [out / f"{stem}-{j:06d}.tar" for j in range(len(parts))]
    report.index = write_index(out / f"{stem}{INDEX_SUFFIX}", {p.name: infos[p.name] for p in report.shards})
    return report


def _finished(path: Path, keys: list[str]):
    """The :class:`ShardInfo` of a tar an earlier run finished with exactly ``keys`` (in order), else None."""

    if not path.is_file():
        return None
    try:
        reader = TarReader(str(path), read=lambda ext: False)
        if [s.key for s in reader] != keys or reader.problem:
            return None
        c = count_shard(str(path))
    except UserError:  # not a tar (a foreign file, a cut copy): written again
        return None
    if c.problems or c.items != len(keys):
        return None
    return ShardInfo(c.items, c.with_negative, path.stat().st_size)


__all__ = ["AUDIO_COLUMNS", "CaptionedReport", "Item", "Row", "check_audio", "convert", "group_items",
           "read_negatives", "read_rows"]
