"""JSON Lines manifests: one audio item per line, paths relative to the manifest.

Item fields (see docs/architecture.md)::

    {"id": str, "audio": path, "captions": [str, ...], "negative_captions": [str, ...],
     "negative_audio": path (optional), "events": [{"label", "onset", "offset"}, ...],
     "split": str, "source": str}

Extra fields are kept as they are. :func:`read_manifest` validates every line and returns items whose
``audio`` / ``negative_audio`` are absolute paths; :func:`write_manifest` writes them back relative to the
manifest's folder, atomically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from basekit.atomic import atomic_write_text
from basekit.errors import UserError

REQUIRED_FIELDS = ("id", "audio", "captions")
PATH_FIELDS = ("audio", "negative_audio")


def _check_item(item: object, where: str) -> dict:
    if not isinstance(item, dict):
        raise UserError(f"{where}: each line must be a JSON object, got {type(item).__name__}")
    for key in REQUIRED_FIELDS:
        if key not in item:
            raise UserError(f"{where}: missing field {key!r} (every item needs id, audio and captions)")
    if not isinstance(item["id"], str) or not item["id"]:
        raise UserError(f"{where}: 'id' must be a non-empty string")
    if not isinstance(item["audio"], str) or not item["audio"]:
        raise UserError(f"{where}: 'audio' must be a path string")
    for key in ("captions", "negative_captions"):
        val = item.get(key, [])
        if not isinstance(val, list) or not all(isinstance(c, str) for c in val):
            raise UserError(f"{where}: {key!r} must be a list of strings")
    if not item["captions"]:
        raise UserError(f"{where}: 'captions' is empty (give at least one caption)")
    neg_audio = item.get("negative_audio")
    if neg_audio is not None and not isinstance(neg_audio, str):
        raise UserError(f"{where}: 'negative_audio' must be a path string or absent")
    events = item.get("events", [])
    if not isinstance(events, list):
        raise UserError(f"{where}: 'events' must be a list")
    for e in events:
        if not isinstance(e, dict) or "label" not in e or "onset" not in e or "offset" not in e:
            raise UserError(f"{where}: each event needs label, onset and offset")
        try:
            on, off = float(e["onset"]), float(e["offset"])
        except (TypeError, ValueError):
            raise UserError(f"{where}: event onset/offset must be numbers (seconds)") from None
        if not (0.0 <= on < off):
            raise UserError(f"{where}: event {e['label']!r} has onset {on} / offset {off}; need 0 <= onset < offset")
    out = dict(item)
    out.setdefault("negative_captions", [])
    out.setdefault("events", [])
    out.setdefault("split", "train")
    out.setdefault("source", "")
    return out


def read_manifest(path: str | os.PathLike, check_files: bool = False) -> list[dict]:
    """Read and validate a manifest.

    Args:
        path: the ``.jsonl`` file.
        check_files: also require every ``audio`` / ``negative_audio`` file to exist.

    Returns:
        items with ``audio`` / ``negative_audio`` resolved to absolute path strings and defaults filled in
        (``negative_captions=[]``, ``events=[]``, ``split="train"``, ``source=""``).
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"manifest not found: {p} (build one with `tclap mixup` or check the path)")
    base = p.resolve().parent
    items: list[dict] = []
    seen: set[str] = set()
    with p.open("r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{p}:{lineno}"
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{where}: not valid JSON ({exc.msg}); fix or remove the line") from None
            item = _check_item(raw, where)
            if item["id"] in seen:
                raise UserError(f"{where}: duplicate id {item['id']!r} (ids must be unique in a manifest)")
            seen.add(item["id"])
            for key in PATH_FIELDS:
                if item.get(key):
                    ap = Path(item[key])
                    ap = ap if ap.is_absolute() else base / ap
                    if check_files and not ap.is_file():
                        raise UserError(f"{where}: {key} file not found: {ap}")
                    item[key] = str(ap)
            items.append(item)
    if not items:
        raise UserError(f"manifest {p} holds no items")
    return items


def _relative(path: str, base: Path) -> str:
    ap = Path(path)
    if not ap.is_absolute():
        return ap.as_posix()
    try:
        return Path(os.path.relpath(ap, base)).as_posix()
    except ValueError:  # another drive on Windows
        return ap.as_posix()


def item_to_json(item: dict, base: Path) -> str:
    """One manifest line for ``item`` with its paths made relative to ``base``."""
    out = dict(item)
    for key in PATH_FIELDS:
        if out.get(key):
            out[key] = _relative(str(out[key]), base)
        elif key in out and out[key] is None:
            del out[key]
    return json.dumps(out, ensure_ascii=False)


def write_manifest(path: str | os.PathLike, items: Iterable[dict]) -> Path:
    """Write ``items`` as JSON Lines atomically; absolute paths are made relative to the manifest's folder."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    base = p.resolve().parent
    seen: set[str] = set()
    lines = []
    for k, item in enumerate(items):
        item = _check_item(item, f"item {k} for {p}")
        if item["id"] in seen:
            raise UserError(f"item {k} for {p}: duplicate id {item['id']!r}")
        seen.add(item["id"])
        lines.append(item_to_json(item, base))
    return atomic_write_text(p, "".join(line + "\n" for line in lines))
