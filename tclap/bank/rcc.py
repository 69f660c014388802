"""A reader for Qt binary resource files (``.rcc``), where some programs (GCompris) keep their sounds.

Layout (Qt's ``rcc`` format, versions 1 to 3, all integers big-endian)::

    "qres"  u32 version  u32 tree_offset  u32 data_offset  u32 names_offset  [u32 flags, version >= 3]

- tree: fixed-size nodes (14 bytes; 22 from version 2 on, with a u64 modification time), node 0 the root.
  Each node: u32 name offset, u16 flags (1 = zlib-compressed, 2 = directory, 4 = zstd-compressed), then for a
  directory u32 child count and u32 index of its first child, for a file u16 territory, u16 language and u32
  data offset.
- names: at ``names_offset + name offset``: u16 length, u32 hash, ``length`` UTF-16BE code units.
- data: at ``data_offset + data offset``: u32 size, then the bytes; a zlib-compressed entry starts with a u32
  uncompressed size followed by the zlib stream (Qt's ``qCompress`` layout).

Zstd entries (Qt 6 builds may use them) are reported as unreadable rather than guessed at.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

from basekit.errors import UserError

FLAG_COMPRESSED, FLAG_DIRECTORY, FLAG_ZSTD = 1, 2, 4


class ResourceFile:
    """The members of one ``.rcc`` file: ``names()`` lists their paths, ``read(name)`` returns their bytes."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"Qt resource file not found: {self.path} (install the package that holds it)")
        self._buf = self.path.read_bytes()
        b = self._buf
        if len(b) < 20 or b[:4] != b"qres":
            raise UserError(f"{self.path} is not a Qt resource file (no 'qres' header)")
        self.version, self._tree, self._data, self._names = struct.unpack(">IIII", b[4:20])
        if self.version not in (1, 2, 3):
            raise UserError(f"{self.path}: Qt resource version {self.version} is not read (versions 1-3 are)")
        self._node_size = 14 if self.version == 1 else 22
        self._members: dict[str, tuple[int, int]] = {}
        self._walk(0, "", depth=0)

    def _u(self, fmt: str, off: int) -> tuple:
        try:
            return struct.unpack_from(fmt, self._buf, off)
        except struct.error:
            raise UserError(f"Qt resource file {self.path} is truncated or corrupt (offset {off})") from None

    def _name(self, off: int) -> str:
        (n,) = self._u(">H", self._names + off)
        start = self._names + off + 6
        raw = self._buf[start : start + 2 * n]
        if len(raw) != 2 * n:
            raise UserError(f"Qt resource file {self.path} is truncated (a name runs past the end)")
        return raw.decode("utf-16-be")

    def _walk(self, index: int, prefix: str, depth: int) -> None:
        if depth > 64:
            raise UserError(f"Qt resource file {self.path} nests deeper than 64 folders (corrupt tree)")
        node = self._tree + index * self._node_size
        name_off, flags = self._u(">IH", node)
        name = "" if index == 0 else self._name(name_off)
        path = f"{prefix}/{name}" if prefix else name
        if flags & FLAG_DIRECTORY:
            count, first = self._u(">II", node + 6)
            for child in range(first, first + count):
                self._walk(child, path, depth + 1)
        else:
            _, _, data_off = self._u(">HHI", node + 6)
            self._members[path] = (data_off, flags)

    def names(self) -> list[str]:
        """Member paths (``"gcompris/src/activities/x/resource/cat.ogg"``), sorted."""
        return sorted(self._members)

    def read(self, name: str) -> bytes:
        """The bytes of member ``name``, decompressed."""
        if name not in self._members:
            raise UserError(f"{self.path} holds no member {name!r}")
        data_off, flags = self._members[name]
        (size,) = self._u(">I", self._data + data_off)
        start = self._data + data_off + 4
        raw = self._buf[start : start + size]
        if len(raw) != size:
            raise UserError(f"Qt resource file {self.path}: member {name!r} is truncated")
        if flags & FLAG_ZSTD:
            raise UserError(f"{self.path}: member {name!r} is zstd-compressed, which this reader does not decode")
        if flags & FLAG_COMPRESSED:
            try:
                return zlib.decompress(raw[4:])
            except zlib.error as exc:
                raise UserError(f"{self.path}: member {name!r} does not decompress ({exc})") from None
        return raw
