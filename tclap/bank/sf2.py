"""A small SoundFont 2 reader: presets, their zones, and the recorded samples behind them.

A SoundFont (``.sf2``, RIFF form ``sfbk``) keeps its recordings as one block of 16-bit PCM (``sdta/smpl``) and
describes in ``pdta`` how presets (a General MIDI program, e.g. bank 0 program 0 "Acoustic Grand Piano", or
bank 128 program 0 "Standard" drum kit) map key ranges onto instruments and instruments onto samples:

    phdr (presets) -> pbag (preset zones) -> pgen (generators: 41 = instrument, 43 = key range)
    inst (instruments) -> ibag (instrument zones) -> igen (generators: 53 = sample id, 43 = key range)
    shdr (sample headers: start, end, loop, rate, original pitch, stereo link, type)

Each zone's generators end with its instrument (preset zone) or sample (instrument zone); a first zone without
one is the global zone and is skipped. The bank takes every distinct sample that a preset (and, for a drum kit,
one key) reaches: each sample is one recording (a multi-sampled piano holds one recording per few keys).

Stereo samples come as a left/right pair linked to each other (``sampleType`` 4 / 2, ``sampleLink``); the pair
is one recording and is mixed to mono. ROM samples (``sampleType`` & 0x8000) have no data in the file and are
skipped. Instrument samples are often short with a sustain loop; :func:`sample_audio` can play the loop to a
minimum length (that is how a synthesiser sounds the note) and fades the end so it stops without a click.
24-bit fonts (``sm24``) are read at their 16-bit part, which is what every SF2 player must support.
"""

from __future__ import annotations

import mmap
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from basekit.errors import UserError

GEN_KEY_RANGE = 43
GEN_INSTRUMENT = 41
GEN_SAMPLE_ID = 53
TYPE_MONO, TYPE_RIGHT, TYPE_LEFT, TYPE_LINKED, TYPE_ROM = 1, 2, 4, 8, 0x8000
#: loops shorter than this many frames are treated as absent (a 1-frame loop is a hold, not a sound).
MIN_LOOP_FRAMES = 32
FADE_SECONDS = 0.05


@dataclass(frozen=True)
class Sample:
    """One sample header (``shdr`` record); frame positions index the font's ``smpl`` block."""

    index: int
    name: str
    start: int
    end: int
    loop_start: int
    loop_end: int
    rate: int
    pitch: int
    link: int
    kind: int

    @property
    def frames(self) -> int:
        return max(0, self.end - self.start)


@dataclass(frozen=True)
class Zone:
    """A sample reached by a preset: its key range (the preset's and the instrument's ranges intersected)."""

    sample: int
    key_lo: int
    key_hi: int
    instrument: str


@dataclass
class Preset:
    name: str
    bank: int
    program: int
    zones: list[Zone] = field(default_factory=list)


@dataclass
class SoundFont:
    """A parsed SoundFont: presets (with their zones), sample headers and the 16-bit sample block ``[N]``."""

    path: str
    presets: list[Preset]
    samples: list[Sample]
    data: np.ndarray

    def preset(self, bank: int, program: int) -> Preset:
        for p in self.presets:
            if p.bank == bank and p.program == program:
                return p
        have = ", ".join(f"{p.bank}:{p.program}" for p in sorted(self.presets, key=lambda q: (q.bank, q.program))[:12])
        raise UserError(f"SoundFont {self.path} has no preset {bank}:{program} (bank:program; it has {have}, ...)")

    def sample_indices(self, bank: int, program: int, key: int | None = None) -> list[int]:
        """Distinct recordings of a preset (one key of it when ``key`` is given), in zone order.

        A stereo pair counts once (by its left sample, or by whichever side comes first when a side is
        missing); ROM samples and empty samples are left out.
        """
        out: list[int] = []
        seen: set[int] = set()
        for z in self.preset(bank, program).zones:
            if key is not None and not (z.key_lo <= key <= z.key_hi):
                continue
            s = self.samples[z.sample]
            if s.kind & TYPE_ROM or s.frames <= 0:
                continue
            ident = _pair_id(self, s)
            if ident in seen:
                continue
            seen.add(ident)
            out.append(_pair_lead(self, s))
        return out


def _side_free_name(name: str) -> str:
    return re.sub(r"[\s_-]*\(?[LR]\)?$", "", name)


def _partner(sf: SoundFont, s: Sample) -> Sample | None:
    """The other side of a stereo pair, or None.

    By ``sampleLink`` when the two records point at each other; else (FluidR3 leaves every link at 0) the
    neighbouring record of the other side with the same length and the same name up to an ``L``/``R`` mark.
    """
    if not s.kind & (TYPE_LEFT | TYPE_RIGHT):
        return None
    if 0 <= s.link < len(sf.samples) and s.link != s.index:
        p = sf.samples[s.link]
        if p.kind & (TYPE_LEFT | TYPE_RIGHT) and p.kind != s.kind and p.link == s.index:
            return p
    other = TYPE_RIGHT if s.kind & TYPE_LEFT else TYPE_LEFT
    for j in (s.index + 1, s.index - 1):
        if 0 <= j < len(sf.samples):
            p = sf.samples[j]
            if p.kind & other and p.frames == s.frames and _side_free_name(p.name) == _side_free_name(s.name):
                return p
    return None


def _pair_id(sf: SoundFont, s: Sample) -> int:
    p = _partner(sf, s)
    return min(s.index, p.index) if p is not None else s.index


def _pair_lead(sf: SoundFont, s: Sample) -> int:
    p = _partner(sf, s)
    if p is None:
        return s.index
    return s.index if s.kind & TYPE_LEFT else p.index


def _chunks(buf: bytes | mmap.mmap, start: int, end: int, path: str) -> dict[str, tuple[int, int]]:
    """``{id: (offset, size)}`` of the RIFF sub-chunks in ``buf[start:end]``; LIST chunks by their list type."""
    out: dict[str, tuple[int, int]] = {}
    pos = start
    while pos + 8 <= end:
        cid = bytes(buf[pos : pos + 4]).decode("latin-1")
        (size,) = struct.unpack("<I", buf[pos + 4 : pos + 8])
        body = pos + 8
        if body + size > end:
            raise UserError(f"SoundFont {path} is truncated (chunk {cid!r} runs past the end); re-install or re-download it")
        if cid == "LIST":
            out[bytes(buf[body : body + 4]).decode("latin-1")] = (body + 4, size - 4)
        else:
            out[cid] = (body, size)
        pos = body + size + (size & 1)  # chunks are word aligned
    return out


def _records(buf, chunks: dict[str, tuple[int, int]], name: str, fmt: str, path: str) -> list[tuple]:
    if name not in chunks:
        raise UserError(f"SoundFont {path} lacks its {name!r} chunk (not a valid .sf2)")
    off, size = chunks[name]
    rec = struct.calcsize(fmt)
    if size % rec:
        raise UserError(f"SoundFont {path}: chunk {name!r} is {size} bytes, not a multiple of {rec} (corrupt file)")
    return list(struct.iter_unpack(fmt, bytes(buf[off : off + size])))


def _name(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("latin-1").strip()


def _zones(bags: list[tuple], gens: list[tuple], first: int, last: int, terminal: int) -> list[tuple[int, int, int]]:
    """``(target, key_lo, key_hi)`` of the zones ``first .. last - 1`` whose generator list ends in ``terminal``."""
    out = []
    for b in range(first, last):
        g0, g1 = bags[b][0], bags[b + 1][0]
        key_lo, key_hi, target = 0, 127, None
        for oper, amount in gens[g0:g1]:
            if oper == GEN_KEY_RANGE:
                key_lo, key_hi = amount & 0xFF, (amount >> 8) & 0xFF
            elif oper == terminal:
                target = amount
        if target is not None:
            out.append((target, key_lo, key_hi))
    return out


def read_sf2(path: str | os.PathLike) -> SoundFont:
    """Parse ``path``; the sample block is memory-mapped, so a large font is not copied into memory."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"SoundFont not found: {p} (install the package that holds it, or fix the path)")
    with p.open("rb") as f:
        try:
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:
            raise UserError(f"SoundFont {p} is empty (0 bytes)") from None
    if len(buf) < 12 or buf[0:4] != b"RIFF" or buf[8:12] != b"sfbk":
        raise UserError(f"{p} is not a SoundFont 2 file (no RIFF 'sfbk' header); .sf3 and other formats are not read")
    top = _chunks(buf, 12, min(len(buf), 8 + struct.unpack("<I", buf[4:8])[0]), str(p))
    if "sdta" not in top or "pdta" not in top:
        raise UserError(f"SoundFont {p} lacks its sdta/pdta lists (corrupt file)")
    sdta = _chunks(buf, top["sdta"][0], top["sdta"][0] + top["sdta"][1], str(p))
    pdta = _chunks(buf, top["pdta"][0], top["pdta"][0] + top["pdta"][1], str(p))
    if "smpl" not in sdta:
        raise UserError(f"SoundFont {p} has no 'smpl' sample data (compressed .sf3 fonts are not read)")
    s_off, s_size = sdta["smpl"]
    data = np.frombuffer(buf, dtype="<i2", count=s_size // 2, offset=s_off)

    phdr = _records(buf, pdta, "phdr", "<20sHHHIII", str(p))
    pbag = _records(buf, pdta, "pbag", "<HH", str(p))
    pgen = _records(buf, pdta, "pgen", "<HH", str(p))
    inst = _records(buf, pdta, "inst", "<20sH", str(p))
    ibag = _records(buf, pdta, "ibag", "<HH", str(p))
    igen = _records(buf, pdta, "igen", "<HH", str(p))
    shdr = _records(buf, pdta, "shdr", "<20sIIIIIBbHH", str(p))

    samples = [
        Sample(i, _name(r[0]), r[1], r[2], r[3], r[4], r[5], r[6], r[8], r[9])
        for i, r in enumerate(shdr[:-1])  # the last record is the terminal "EOS"
    ]
    n_frames = len(data)
    for s in samples:
        if not s.kind & TYPE_ROM and (s.end > n_frames or s.start > s.end):
            raise UserError(f"SoundFont {p}: sample {s.name!r} points outside the sample data (corrupt file)")
    inst_zones = []
    for i in range(len(inst) - 1):  # last record terminal
        zs = _zones(ibag, igen, inst[i][1], inst[i + 1][1], GEN_SAMPLE_ID)
        inst_zones.append((_name(inst[i][0]), [z for z in zs if z[0] < len(samples)]))
    presets = []
    for i in range(len(phdr) - 1):
        r, nxt = phdr[i], phdr[i + 1]
        pr = Preset(_name(r[0]), bank=r[2], program=r[1])
        for ins, plo, phi in _zones(pbag, pgen, r[3], nxt[3], GEN_INSTRUMENT):
            if ins >= len(inst_zones):
                continue
            iname, izs = inst_zones[ins]
            for smp, ilo, ihi in izs:
                lo, hi = max(plo, ilo), min(phi, ihi)
                if lo <= hi:
                    pr.zones.append(Zone(smp, lo, hi, iname))
        presets.append(pr)
    return SoundFont(str(p), presets, samples, data)


def _raw(sf: SoundFont, s: Sample) -> np.ndarray:
    return sf.data[s.start : s.end].astype(np.float32) / 32768.0


def _extend(x: np.ndarray, ls: int, le: int, n_min: int) -> np.ndarray:
    """Play ``x`` then repeat its loop ``x[ls:le]`` until ``n_min`` frames."""
    head, loop = x[:le], x[ls:le]
    reps = -(-(n_min - len(head)) // len(loop))
    return np.concatenate([head] + [loop] * max(0, reps))[:n_min]


def sample_audio(sf: SoundFont, index: int, min_seconds: float = 0.0) -> tuple[np.ndarray, int, bool]:
    """The recording behind sample ``index`` as float32 mono ``[T]``, its rate, and whether its loop was played.

    A stereo pair is mixed to mono ``(L + R) / 2`` over the shorter side. When ``min_seconds`` is given and the
    sample is shorter, its sustain loop (if it has one of at least ``MIN_LOOP_FRAMES``) is repeated up to that
    length and the last ``FADE_SECONDS`` fade out linearly.
    """
    s = sf.samples[index]
    x = _raw(sf, s)
    partner = _partner(sf, s)
    if partner is not None:
        y = _raw(sf, partner)
        n = min(len(x), len(y))
        x = 0.5 * (x[:n] + y[:n])
    rate = int(s.rate)
    n_min = int(round(min_seconds * rate))
    ls, le = s.loop_start - s.start, s.loop_end - s.start
    looped = False
    if n_min > len(x) and 0 <= ls and le <= len(x) and le - ls >= MIN_LOOP_FRAMES:
        x = _extend(x, ls, le, n_min)
        fade = min(len(x), int(FADE_SECONDS * rate))
        x = x.copy()
        x[len(x) - fade :] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
        looped = True
    return np.ascontiguousarray(x, dtype=np.float32), rate, looped
