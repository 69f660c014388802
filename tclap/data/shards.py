"""WebDataset tar shards: writing them (deterministic, atomic, with an item index) and reading them back.

Layout (WebDataset's): each item is consecutive tar members sharing one key, the member name up to the first
dot of its file name (the item id with ``.`` and ``/`` replaced, see :func:`shard_key`)::

    <key>.wav      the audio (wav, flac, ogg or mp3 bytes)
    <key>.neg.wav  the order-swapped audio (ordered mix-ups only)
    <key>.json     the item without paths: id, captions, negative_captions, events, split, source, ...

Writing: :class:`ShardWriter` builds a tar under a hidden temp name with fixed member metadata (mtime 0, uid 0,
so the same items give byte-identical shards) and renames it into place when complete. Every writer also leaves
an index beside its tars (``index.json`` or ``<name>.index.json``) with each tar's item count, the count of items
that carry a negative caption, and its size in bytes: a trainer plans its epochs from it without reading the tars
(:func:`read_indexes`; an index entry whose size no longer matches its tar is ignored).

Reading: :class:`TarReader` yields an archive's items in tar order. Local files are read with random access,
so members the caller does not want (the audio, when only counting items) are skipped without reading them;
``pipe:`` commands and other URLs are opened with ``webdataset.gopen`` and read as a stream. A truncated archive
ends after its last complete item and says where (:attr:`TarReader.problem`); a shard that cannot be opened, or a
``pipe:`` command that exits with an error, raises :class:`ShardError` naming it.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from basekit.atomic import atomic_write_text, current_umask
from basekit.errors import UserError
from tclap.data.manifest import read_manifest

AUDIO_EXTS = ("wav", "flac", "ogg", "mp3")
NEGATIVE_AUDIO_EXTS = tuple(f"neg.{e}" for e in AUDIO_EXTS)
INDEX_NAME = "index.json"
INDEX_SUFFIX = ".index.json"
_KEY_EXT = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")  # webdataset's base_plus_ext: key up to the first dot


def require_webdataset(module: str = "webdataset"):
    """Import a ``webdataset`` module, or one line saying how to install it (the ``shards`` extra)."""
    import importlib  # noqa: PLC0415

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError("reading shards needs the webdataset package: pip install 'tclap-toolkit[shards]'") from None


class ShardError(UserError):
    """A shard that cannot be read at all (missing, not a tar, a ``pipe:`` command that failed)."""


def shard_key(item_id: str) -> str:
    """The WebDataset key of an item: its id with dots replaced (dots separate key and extension)."""
    return item_id.replace(".", "_").replace("/", "_")


def item_members(item: dict, audio: bytes, negative_audio: bytes | None = None, audio_ext: str = "wav") -> dict[str, bytes]:
    """The members of one item: ``{ext: bytes}`` with the item's metadata (no paths) as ``json``."""
    meta = {k: v for k, v in item.items() if k not in ("audio", "negative_audio")}
    out = {audio_ext: audio}
    if negative_audio is not None:
        out[f"neg.{audio_ext}"] = negative_audio
    out["json"] = json.dumps(meta, ensure_ascii=False).encode("utf-8")
    return out


@dataclass
class ShardInfo:
    """What a tar holds: items, items with a negative caption, size in bytes."""

    items: int
    with_negative: int
    bytes: int


def _has_negative(meta: dict) -> bool:
    return any(isinstance(c, str) and c.strip() for c in meta.get("negative_captions") or [])


class ShardWriter:
    """Write one tar atomically: ``add(key, members)`` per item, then ``close()`` (or ``abort()``)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=str(self.path.parent))
        os.close(fd)
        self._tar = tarfile.open(self._tmp, "w", format=tarfile.USTAR_FORMAT)
        self._keys: set[str] = set()
        self.items = self.with_negative = 0

    def add(self, key: str, members: dict[str, bytes]) -> None:
        if key in self._keys:
            raise UserError(f"two items map to the shard key {key!r} in {self.path}; make the item ids unique")
        self._keys.add(key)
        for ext, data in members.items():
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            self._tar.addfile(info, io.BytesIO(data))
        self.items += 1
        if "json" in members and _has_negative(json.loads(members["json"])):
            self.with_negative += 1

    def close(self) -> ShardInfo:
        self._tar.close()
        os.chmod(self._tmp, 0o666 & ~current_umask())
        os.replace(self._tmp, self.path)
        return ShardInfo(self.items, self.with_negative, self.path.stat().st_size)

    def abort(self) -> None:
        try:
            self._tar.close()
        finally:
            if os.path.exists(self._tmp):
                os.unlink(self._tmp)


def write_index(path: str | os.PathLike, infos: dict[str, ShardInfo]) -> Path:
    """Write an index of tars (names relative to its folder, in the given order) atomically."""
    names = list(infos)
    doc = {"shards": names, "items": [infos[n].items for n in names],
           "with_negative": [infos[n].with_negative for n in names], "bytes": [infos[n].bytes for n in names],
           "total": sum(infos[n].items for n in names)}
    return atomic_write_text(path, json.dumps(doc, indent=1) + "\n")


def read_indexes(folder: str | os.PathLike) -> dict[str, ShardInfo]:
    """Every index in ``folder`` (``index.json`` and ``*.index.json``): tar name -> :class:`ShardInfo`.

    Entries without a byte size, or whose tar is missing or of another size, are left out (the tar is then
    counted by reading it). Unreadable index files are ignored for the same reason.
    """
    d = Path(folder)
    out: dict[str, ShardInfo] = {}
    if not d.is_dir():
        return out
    for p in sorted(d.glob(f"*{INDEX_SUFFIX}")) + ([d / INDEX_NAME] if (d / INDEX_NAME).is_file() else []):
        for name, info in read_index_file(p).items():
            tar = d / name
            if tar.is_file() and tar.stat().st_size == info.bytes:
                out[name] = info
    return out


def read_index_file(path: str | os.PathLike) -> dict[str, ShardInfo]:
    """One index file: tar name -> :class:`ShardInfo` (empty when the file is unreadable or not an index)."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        return {str(name): ShardInfo(int(n), int(k), int(size))
                for name, n, k, size in zip(doc["shards"], doc["items"], doc["with_negative"], doc["bytes"])}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def write_webdataset_shards(manifest: str | os.PathLike, out_dir: str | os.PathLike, items_per_shard: int = 500) -> list[Path]:
    """Write the manifest's items as tar shards ``shard-000000.tar``, ... under ``out_dir``; returns their paths.

    Also writes ``out_dir/index.json`` (:func:`write_index`; its ``shards`` / ``items`` / ``total`` keys are
    the ones earlier versions wrote).
    """
    if items_per_shard < 1:
        raise UserError(f"items_per_shard must be >= 1, got {items_per_shard}")
    items = read_manifest(manifest, check_files=True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    infos: dict[str, ShardInfo] = {}
    keys_seen: set[str] = set()
    for s in range(0, len(items), items_per_shard):
        path = out / f"shard-{s // items_per_shard:06d}.tar"
        writer = ShardWriter(path)
        try:
            for it in items[s : s + items_per_shard]:
                key = shard_key(it["id"])
                if key in keys_seen:
                    raise UserError(f"items {it['id']!r} and another map to the same shard key {key!r}; make ids unique")
                keys_seen.add(key)
                neg = Path(it["negative_audio"]).read_bytes() if it.get("negative_audio") else None
                writer.add(key, item_members(it, Path(it["audio"]).read_bytes(), neg))
            infos[path.name] = writer.close()
        except BaseException:
            writer.abort()
            raise
    write_index(out / INDEX_NAME, infos)
    return [out / n for n in infos]


# ----------------------------------------------------------------------------------------------------------
# Reading.


@dataclass
class TarSample:
    """One item of a shard: its key, its members ``{ext: bytes}`` (only those read), all member extensions."""

    key: str
    members: dict[str, bytes] = field(default_factory=dict)
    exts: list[str] = field(default_factory=list)


def is_local(url: str) -> bool:
    """A path on this machine (no ``scheme:`` other than ``file:``)."""
    return url.startswith("file:") or not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]+:", url)


def local_path(url: str) -> str:
    return re.sub(r"^file://?", "/", url) if url.startswith("file:") else url


class TarReader:
    """Iterate over the items of one shard in tar order.

    Args:
        url: a local path (or ``file:`` URL), a ``pipe:`` command, or any URL ``webdataset.gopen`` opens.
        read: which member extensions to read (others are skipped; seeked over in local files).

    After the iteration, :attr:`problem` is None, or one line saying where a truncated archive ended.
    """

    def __init__(self, url: str, read: Callable[[str], bool] | None = None) -> None:
        self.url = url
        self.read = read or (lambda ext: True)
        self.problem: str | None = None
        self.member = ""  # the member being read (named when something goes wrong)
        self._cut_key: str | None = None  # the key of a member found cut off: items before it are complete

    def __iter__(self) -> Iterator[TarSample]:
        cur: TarSample | None = None
        for name, ext, data in (self._local() if is_local(self.url) else self._stream()):
            key = name[: len(name) - len(ext) - 1]
            if cur is not None and key != cur.key:
                yield cur
                cur = None
            if cur is None:
                cur = TarSample(key)
            cur.exts.append(ext)
            if data is not None:
                cur.members[ext] = data
        if cur is not None and (self.problem is None or (self._cut_key is not None and self._cut_key != cur.key)):
            yield cur  # complete; the item a truncation cuts (or may have cut) is dropped

    def _members(self, tar: tarfile.TarFile, size: int | None, ends_cleanly: Callable[[int], bool]):
        while True:
            try:
                m = tar.next()
            except (tarfile.ReadError, EOFError) as exc:
                self.problem = f"truncated or corrupt after member {self.member or '(none)'} ({_first_line(exc)})"
                return
            if m is None:
                # tarfile takes a cut-off header for the end of the archive; a complete one ends in zero blocks
                if not ends_cleanly(tar.offset):
                    self.problem = f"truncated after member {self.member or '(none)'} (no end-of-archive blocks)"
                return
            tar.members = []  # keep no per-member state: shards may hold many members
            if not m.isreg():
                continue
            match = _KEY_EXT.match(m.name)
            if not match or os.path.basename(m.name).startswith("__"):
                continue  # no extension, or WebDataset metadata
            if size is not None and m.offset_data + m.size > size:
                self.problem, self._cut_key = f"truncated inside member {m.name}", match.group(1)
                return
            self.member = m.name
            ext = match.group(2).lower()
            data = None
            if self.read(ext):
                try:
                    data = tar.extractfile(m).read()
                except (tarfile.ReadError, EOFError) as exc:
                    self.problem, self._cut_key = f"truncated inside member {m.name} ({_first_line(exc)})", match.group(1)
                    return
            yield m.name, ext, data

    def _local(self):
        path = local_path(self.url)
        try:
            f = open(path, "rb")
        except OSError as exc:
            raise ShardError(f"shard {self.url}: cannot open it ({exc.strerror or _first_line(exc)}); fix the path or pattern") from None
        with f:
            size = os.fstat(f.fileno()).st_size
            try:
                tar = tarfile.open(fileobj=f, mode="r:")
            except tarfile.ReadError as exc:
                raise ShardError(f"shard {self.url} is not a tar archive ({_first_line(exc)}); re-create it") from None
            def ends_cleanly(offset: int) -> bool:
                f.seek(offset)
                return f.read(_END_BYTES) == bytes(_END_BYTES)

            try:
                yield from self._members(tar, size, ends_cleanly)
            except OSError as exc:
                raise ShardError(f"shard {self.url}: cannot read it ({_first_line(exc)})") from None

    def _stream(self):
        gopen = require_webdataset("webdataset.gopen").gopen

        try:
            stream = gopen(self.url, "rb")
        except Exception as exc:  # gopen raises ValueError / OSError / others per scheme
            raise ShardError(f"shard {self.url}: cannot open it ({_first_line(exc)})") from None
        completed = False
        tail = _Tail(stream)
        try:
            try:
                tar = tarfile.open(fileobj=tail, mode="r|*")
                yield from self._members(tar, None, tail.ends_cleanly)
            except (OSError, tarfile.ReadError, EOFError) as exc:  # a failed command, or no tar at all
                status = _finish(stream)
                why = f"the command failed (exit status {status})" if status else f"not a tar stream ({_first_line(exc)})"
                raise ShardError(f"shard {self.url}: {why}; run the command or open the URL by hand to see why") from None
            completed = True
        finally:
            if not completed:
                _abandon(stream)  # stopped early (or failing): end the command without judging it
        status = _finish(stream)
        if status:
            raise ShardError(f"shard {self.url}: the command failed (exit status {status}); run it in a shell to see why")


_END_BYTES = 2 * tarfile.BLOCKSIZE  # a tar ends in two zero blocks


class _Tail:
    """A read-only stream that remembers how many bytes went through it and the last ones, so that the end of a
    streamed tar can be checked for its end-of-archive blocks."""

    KEEP = 1 << 16

    def __init__(self, stream) -> None:
        self.stream, self.total, self.tail = stream, 0, b""

    def read(self, n: int = -1) -> bytes:
        data = self.stream.read(n)
        self.total += len(data)
        self.tail = (self.tail + data)[-self.KEEP:]
        return data

    def ends_cleanly(self, offset: int) -> bool:
        while self.read(1 << 16):  # the rest of the stream (tar pads its end to a 10 KiB record)
            pass
        start = offset - (self.total - len(self.tail))
        return 0 <= start and start + _END_BYTES <= len(self.tail) and self.tail[start:start + _END_BYTES] == bytes(_END_BYTES)


def _finish(stream) -> int | None:
    """Close a gopen stream after reading it; the exit status of a ``pipe:`` command that failed, else None."""
    proc = getattr(stream, "proc", None)
    try:
        stream.close()
    except Exception:  # webdataset's Pipe.close raises on a non-zero exit status; the status is read below
        pass
    if proc is None:
        return None
    status = proc.wait()
    return status or None


def _abandon(stream) -> None:
    """Close a stream that is not read to its end: a ``pipe:`` command still running is killed."""
    proc = getattr(stream, "proc", None)
    if proc is not None and proc.poll() is None:
        proc.kill()
    try:
        stream.close()
    except Exception:  # the killed command's status is of no interest
        pass
    if proc is not None:
        proc.wait()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else type(exc).__name__


def iter_shards(paths: list[str | os.PathLike]) -> Iterator[dict]:
    """Yield ``{"__key__", "wav": bytes, "neg.wav": bytes (if any), "json": dict}`` per item, in order."""
    for p in paths:
        reader = TarReader(str(p))
        for s in reader:
            out: dict = {"__key__": s.key}
            for ext, data in s.members.items():
                out[ext] = json.loads(data) if ext == "json" else data
            yield out
        if reader.problem:
            raise UserError(f"shard {p}: {reader.problem}; re-create it")


# ----------------------------------------------------------------------------------- what a usable item is
NO_NEGATIVE = "temporal item without a negative caption"  # the in-memory path's skip reason, same words


def usable(sample: TarSample, need_negative: bool) -> tuple[dict | None, str | None]:
    """``(metadata, None)`` for an item a trainer can use, else ``(None, reason)``: the rule the counts and the
    readers share. An item needs an audio member, a ``.json`` with a caption, and, where ``need_negative``, a
    negative caption."""
    if not any(e in AUDIO_EXTS for e in sample.exts):
        return None, "no audio member (.wav/.flac/.ogg/.mp3)"
    if "json" not in sample.exts:
        return None, "no .json member (captions)"
    try:
        meta = json.loads(sample.members["json"])
    except (ValueError, UnicodeDecodeError):
        return None, "its .json member is not valid JSON"
    if not isinstance(meta, dict) or not [c for c in meta.get("captions") or [] if isinstance(c, str) and c.strip()]:
        return None, "no caption in its .json member"
    if need_negative and not [c for c in meta.get("negative_captions") or [] if isinstance(c, str) and c.strip()]:
        return None, NO_NEGATIVE
    return meta, None


@dataclass
class Counted:
    """Item counts of one shard: all usable items, those with a negative caption, problems met while counting."""

    items: int
    with_negative: int
    problems: list[str] = field(default_factory=list)  # one line each, naming the shard and member
    unusable: int = 0  # items without audio, caption or readable JSON
    truncated: bool = False  # the archive ends early (items past the cut are lost, and not counted)


def count_shard(url: str) -> Counted:
    """Walk one shard (reading only its ``.json`` members where it can) and count its usable items."""
    reader = TarReader(url, read=lambda ext: ext == "json")
    c = Counted(0, 0)
    for s in reader:
        meta, why = usable(s, need_negative=False)
        if meta is None:
            c.problems.append(f"shard {url} member {s.key}: {why}")
            c.unusable += 1
            continue
        c.items += 1
        c.with_negative += usable(s, need_negative=True)[0] is not None
    if reader.problem:
        c.problems.append(f"shard {url}: {reader.problem}")
        c.truncated = True
    return c


def finished_shard(path: Path, n_items: int) -> ShardInfo | None:
    """The index entry of ``path`` when it is a complete tar of ``n_items`` readable items (a writer's re-run keeps
    it), else None (missing, truncated, short or with problems: write it again)."""
    if not path.is_file():
        return None
    try:
        c = count_shard(str(path))
    except UserError:
        return None
    if c.items != n_items or c.problems:
        return None
    return ShardInfo(c.items, c.with_negative, path.stat().st_size)
