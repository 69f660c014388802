"""WebDataset tar shards of a manifest (plain :mod:`tarfile`, in WebDataset's layout).

Each item becomes consecutive tar members sharing one key (the item id with ``.`` replaced by ``_``, since
WebDataset splits the key from the extension at the first dot)::

    <key>.wav      the audio file's bytes
    <key>.neg.wav  the negative audio's bytes (ordered mix-ups only)
    <key>.json     the item without paths: id, captions, negative_captions, events, split, source, ...

Shards ``shard-000000.tar``, ... hold ``items_per_shard`` items each and are written atomically, with
fixed member metadata (mtime 0, uid 0) so the same manifest gives byte-identical shards. ``webdataset``
reads them as they are (``wds.WebDataset(urls)``); :func:`iter_shards` reads them without it.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
from pathlib import Path
from typing import Iterator

from basekit.atomic import atomic_write_text
from tclap.data.manifest import read_manifest
from basekit.errors import UserError


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def shard_key(item_id: str) -> str:
    """The WebDataset key of an item: its id with dots replaced (dots separate key and extension)."""
    return item_id.replace(".", "_").replace("/", "_")


def write_webdataset_shards(manifest: str | os.PathLike, out_dir: str | os.PathLike, items_per_shard: int = 500) -> list[Path]:
    """Write the manifest's items as tar shards under ``out_dir``; returns the shard paths.

    Also writes ``out_dir/index.json`` (shard names and item counts) for loaders that need the length.
    """
    if items_per_shard < 1:
        raise UserError(f"items_per_shard must be >= 1, got {items_per_shard}")
    items = read_manifest(manifest, check_files=True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    counts: list[int] = []
    keys_seen: set[str] = set()
    for s in range(0, len(items), items_per_shard):
        chunk = items[s : s + items_per_shard]
        path = out / f"shard-{s // items_per_shard:06d}.tar"
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=str(out))
        os.close(fd)
        try:
            with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
                for it in chunk:
                    key = shard_key(it["id"])
                    if key in keys_seen:
                        raise UserError(f"items {it['id']!r} and another map to the same shard key {key!r}; make ids unique")
                    keys_seen.add(key)
                    _add_bytes(tar, f"{key}.wav", Path(it["audio"]).read_bytes())
                    if it.get("negative_audio"):
                        _add_bytes(tar, f"{key}.neg.wav", Path(it["negative_audio"]).read_bytes())
                    meta = {k: v for k, v in it.items() if k not in ("audio", "negative_audio")}
                    _add_bytes(tar, f"{key}.json", json.dumps(meta, ensure_ascii=False).encode("utf-8"))
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        paths.append(path)
        counts.append(len(chunk))
    index = {"shards": [p.name for p in paths], "items": counts, "total": sum(counts)}
    atomic_write_text(out / "index.json", json.dumps(index, indent=1) + "\n")
    return paths


def iter_shards(paths: list[str | os.PathLike]) -> Iterator[dict]:
    """Yield ``{"__key__", "wav": bytes, "neg.wav": bytes (if any), "json": dict}`` per item, in order."""
    for p in paths:
        with tarfile.open(p, "r") as tar:
            cur: dict | None = None
            for m in tar:
                if not m.isfile():
                    continue
                key, _, ext = m.name.partition(".")
                data = tar.extractfile(m).read()
                if cur is None or cur["__key__"] != key:
                    if cur is not None:
                        yield cur
                    cur = {"__key__": key}
                cur[ext] = json.loads(data) if ext == "json" else data
            if cur is not None:
                yield cur
