"""A frame-level sound-event detector: the judge of temporal order that does not depend on any CLAP model.

Detect the events in a clip, sort them by onset and compare with the order the prompt asks for
(:func:`order_matches`). The built-in procedural bank (:mod:`tclap.synth`) has a detector shipped in the
package; any folder-per-class bank (``BANK/<label>/*.wav``) gets one with ``eval-gen detector train --bank BANK
--out DIR`` (or :func:`train_detector`), a few seconds to a minute on a CPU. Several banks train one detector over
the union of their classes (``--bank builtin --bank DIR`` or ``--bank builtin+DIR``, read by
:class:`tclap.data.banks.UnionBank`): each class is drawn from its own bank's train split, so every bank's hold-out
list stays out of training and is left for the ceiling; a class name or caption phrase in two banks is refused.

Features (16 kHz, 10 ms hop, ``n_mels`` Slaney log-mel bands of a 512-point STFT), per frame ``[4 · n_mels]``:
the frame's log-mel; the mean and the standard deviation over ±``context`` frames (±100 ms), so impulse trains
such as knocks and ticks are seen as a whole; and the mean over the ``context`` frames *before* minus the mean
over the ``context`` frames *after*. That last block is what tells a rising chirp from a falling whistle: the
centred mean and spread are symmetric in time and cannot. The first version of this detector (no such block,
14 training clips per class, no vocoder augmentation) lost its held-out mix-ups mostly there, and to a low
hum taken for a knock (too few training clips to cover the hum's pitch range): docs/notes/detector.md.

Model: a two-layer MLP over the frame features with a ``background`` class for everything outside an event.
It is trained on the bank's *train* clips only (held-out instances / files are never seen), each placed alone
at a random gain with silence before and after over low-level noise, and the frames labelled by where the
event really is; with ``vocoder_augment`` (default) each clip is also placed once more and passed through a
mel-spectrogram + Griffin-Lim round trip (:func:`vocoder_roundtrip`), because generated audio reaches the judge
through such a path. Training is deterministic (seeded numpy and torch generators, minibatch Adam, one thread).

Decoding: frame posteriors -> moving-average smoothing (``smooth`` frames) -> the confident (p >= ``min_conf``)
non-background argmax -> runs of one class at least ``min_event_s`` long, same-class runs closer than
``merge_gap_s`` merged into one event (with whatever other-class runs lay between them: a rising chirp that
passes through a beep's band for 100 ms is one chirp). :func:`detect_order` returns the labels by onset.

Where a detector comes from (:func:`get_detector`): the one in memory; for the built-in bank with the default
settings, the shipped ``eval_gen/assets/detector-builtin`` (its ``detector.json`` records the settings, the
bank's fingerprint and the command that made it; it is used only when both match the code); else the disk
cache keyed by the settings and the bank's fingerprint; else trained now and cached. A saved detector is a
folder: ``detector.json`` + ``model.safetensors``; ``eval-gen score --detector DIR`` judges order with one, and
uses it as the ``builtin-events`` classifier / backend (:class:`DetectorBackend` ``detector=``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from basekit.atomic import atomic_path, atomic_write_text
from basekit.audio import resample
from basekit.errors import UserError
from eval_gen.backends.base import EmbeddingBackend
from eval_gen.backends.mel import log_mel_frames

BACKGROUND = "background"
SR = 16000
HOP = 160  # 10 ms
FORMAT = "tclap-event-detector"
BUILTIN = "builtin"
SHIPPED_DIR = Path(__file__).parent / "assets" / "detector-builtin"


@dataclass(frozen=True)
class DetectorConfig:
    """Training and decoding settings (all part of the cache key and of a saved detector's record)."""

    n_mels: int = 40
    context: int = 10  # frames each side for the context statistics (±100 ms)
    hidden: int = 64
    instances_per_class: int = 24  # training clips per class (the first ones of the bank's train split)
    vocoder_augment: bool = True  # each training clip also once through a mel + Griffin-Lim round trip
    frame_stride: int = 2  # neighbouring 10 ms frames are near-duplicates: keep every 2nd for training
    steps: int = 1000
    batch: int = 2048
    lr: float = 3e-3
    seed: int = 0
    smooth: int = 9  # frames of moving-average smoothing of the posteriors
    min_conf: float = 0.5
    min_event_s: float = 0.08
    merge_gap_s: float = 0.25
    version: int = 2

    @classmethod
    def from_dict(cls, d: Mapping) -> "DetectorConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise UserError(f"detector settings hold unknown key(s) {sorted(unknown)}; retrain it with this version")
        return cls(**dict(d))


@dataclass(frozen=True)
class DetectedEvent:
    label: str
    onset: float
    offset: float
    confidence: float


def _window_mean(x: np.ndarray, a: int, b: int) -> np.ndarray:
    """``out[t] = mean(x[t + a .. t + b])`` (inclusive, ``a <= b``) for ``x [F, M]``, edge-padded -> ``[F, M]``."""
    k = max(abs(a), abs(b))
    pad = np.pad(x, ((k, k), (0, 0)), mode="edge")
    c = np.cumsum(np.pad(pad, ((1, 0), (0, 0))), axis=0)
    idx = np.arange(len(x)) + k
    return (c[idx + b + 1] - c[idx + a]) / (b - a + 1)


def frame_features(wave: np.ndarray, cfg: DetectorConfig) -> np.ndarray:
    """``[T]`` at 16 kHz -> ``[frames, 4 · n_mels]``: log-mel, ±context mean and std, before-minus-after mean."""
    lm = log_mel_frames(wave, SR, n_fft=512, hop=HOP, n_mels=cfg.n_mels)  # [F, M]
    k = cfg.context
    mean = _window_mean(lm, -k, k)
    std = np.sqrt(np.clip(_window_mean(lm**2, -k, k) - mean**2, 0.0, None))
    direction = _window_mean(lm, -k, -1) - _window_mean(lm, 1, k)
    return np.concatenate([lm, mean, std, direction], axis=1).astype(np.float32)


# ------------------------------------------------------------------------------------------------ banks
def _is_spec(bank) -> bool:
    """Whether ``bank`` names banks (a spec or a list of specs, as repeated ``--bank`` gives) rather than being one."""
    return isinstance(bank, (str, os.PathLike, list, tuple))


def bank_specs(bank) -> list[str]:
    """The banks a detector ``bank`` names, in order, ``bank:`` prefixes removed: ``"builtin"``, ``"DIR"``,
    ``"builtin+DIR"`` or a list of them -> ``["builtin", "DIR"]`` (:func:`tclap.data.banks.bank_parts`).

    Each must be ``builtin`` or a folder per class; anything else is one line naming it.
    """
    from tclap.data.banks import bank_parts

    parts = bank_parts(bank if isinstance(bank, (str, os.PathLike)) else [str(b) for b in bank])
    for part in parts:
        if part != BUILTIN and not Path(part).is_dir():
            where = "" if len(parts) == 1 else f" (one of the banks {'+'.join(parts)!r})"
            raise UserError(f"detector bank {part!r}{where} is not 'builtin' or a folder per class "
                            "(BANK/<label>/*.wav); fix the path or leave that --bank out")
    return parts


def _bank_path(part: str) -> str:
    """How a record names one bank: ``builtin``, or the folder's absolute path."""
    return BUILTIN if part == BUILTIN else str(Path(part).resolve())


def _open_bank(bank):
    """A :class:`tclap.data.banks.ClipBank` from ``"builtin"``, a folder per class, several of them (a list or
    ``builtin+DIR``: their :class:`tclap.data.banks.UnionBank`), or a bank object."""
    if not _is_spec(bank):
        return bank
    from tclap.data.banks import open_bank

    parts = bank_specs(bank)
    return open_bank(parts[0] if len(parts) == 1 else parts)


def _owner(bank, label: str):
    """The bank that holds ``label``: the member of a union, else ``bank`` itself."""
    from tclap.data.banks import UnionBank

    return bank.owner(label) if isinstance(bank, UnionBank) else bank


def _training_keys(bank, cfg: DetectorConfig) -> dict[str, list[str]]:
    """label -> the clip keys a detector trains on: the first ``instances_per_class`` of the train split."""
    labels = bank.labels("train")
    if len(labels) < 2:
        raise UserError(f"detector bank {bank.name!r} has {len(labels)} class(es) with training clips; a detector "
                        "needs at least 2 (lay the bank out as BANK/<label>/*.wav)")
    return {lab: bank.keys(lab, "train", limit=cfg.instances_per_class) for lab in labels}


def bank_fingerprint(bank, cfg: DetectorConfig | None = None) -> str:
    """What a trained detector depends on in the bank: its labels and the content of its training clips.

    Built-in bank: the labels and one rendered instance per class (the renderers are code: a change shows in
    every instance). Folder banks: the labels and the bytes of every training file. A union: each class as its
    own bank would have it, in label order (for a single bank this is the same digest as before unions existed,
    so shipped and cached detectors stay valid). Held-out files are not part of it: changing one keeps the digest.
    """
    from tclap.data.banks import BuiltinBank

    bank = _open_bank(bank)
    cfg = cfg or DetectorConfig()
    keys = _training_keys(bank, cfg)
    h = hashlib.sha256("|".join(keys).encode())
    for lab, ks in keys.items():
        if isinstance(_owner(bank, lab), BuiltinBank):
            from tclap.synth import render_event

            h.update(np.round(render_event(lab, 0, SR).astype(np.float64), 5).tobytes())
        else:
            from eval_gen.backends.base import file_sha256

            for k in ks:
                h.update(f"{lab}/{Path(k).name}:{file_sha256(k)}".encode())
    return h.hexdigest()[:16]


# The mel front end of AudioLDM (16 kHz, n_fft 1024, hop 160, 64 Slaney bands up to 8 kHz) and a Griffin-Lim
# vocoder like audioldm_cond's (32 fast iterations, momentum 0.99, zero initial phase): generated audio comes
# through such a path, which turns a voiced bark half into noise and smears onsets; a detector that never
# saw it takes those for other classes.
_RT_NFFT, _RT_MELS, _RT_ITERS, _RT_MOMENTUM = 1024, 64, 16, 0.99


@functools.lru_cache(maxsize=1)
def _roundtrip_bases() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from basekit.mel import periodic_hann, slaney_mel_filterbank

    fb = torch.from_numpy(slaney_mel_filterbank(_RT_NFFT // 2 + 1, _RT_MELS, 0.0, SR / 2, SR).T.astype(np.float32))
    return fb, torch.linalg.pinv(fb), torch.from_numpy(periodic_hann(_RT_NFFT)).float()


def vocoder_roundtrip(wave: np.ndarray) -> np.ndarray:
    """``[T]`` at 16 kHz -> ``[T]``: STFT magnitude -> 64-band mel -> least-squares inverse -> Griffin-Lim."""
    fb, inv, win = _roundtrip_bases()
    x = torch.from_numpy(np.asarray(wave, dtype=np.float32))
    n = len(x)

    def stft(v):
        return torch.stft(v, _RT_NFFT, HOP, window=win, center=True, return_complex=True)

    def istft(spec):
        return torch.istft(spec, _RT_NFFT, HOP, window=win, center=True, length=n)

    mag = torch.clamp(inv @ (fb @ stft(x).abs()), min=0.0)  # [freq, frames]
    angles = torch.ones_like(mag, dtype=torch.complex64)
    prev = torch.zeros_like(angles)
    for _ in range(_RT_ITERS):
        rebuilt = stft(istft(mag * angles))
        accel = rebuilt - (_RT_MOMENTUM / (1 + _RT_MOMENTUM)) * prev
        angles = accel / accel.abs().clamp_min(1e-8)
        prev = rebuilt
    return istft(mag * angles).numpy().astype(np.float64)


def _training_set(cfg: DetectorConfig, bank, keys: Mapping[str, list[str]]) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``[N, 4M]`` and targets ``[N]`` (0 = background, 1 + class index) from training clips only.

    Each clip is placed alone at a random gain (-12..+3 dB) with 0.2-0.6 s of low-level noise (-75..-45 dB)
    before and after it; with ``vocoder_augment`` it is placed a second time (new gain and margins) and passed
    through :func:`vocoder_roundtrip`, keeping the same frame labels.
    """
    rng = np.random.default_rng(cfg.seed)
    xs, ys = [], []
    for ci, lab in enumerate(keys):
        for key in keys[lab]:
            clip = bank.load(key, SR).astype(np.float64)
            for through_vocoder in (False, True)[: 1 + int(cfg.vocoder_augment)]:
                ev = clip * 10 ** (rng.uniform(-12, 3) / 20)
                lead, tail = int(rng.uniform(0.2, 0.6) * SR), int(rng.uniform(0.2, 0.6) * SR)
                x = np.zeros(lead + len(ev) + tail)
                x[lead : lead + len(ev)] = ev
                x += rng.standard_normal(len(x)) * 10 ** (rng.uniform(-75, -45) / 20)
                if through_vocoder:
                    x = vocoder_roundtrip(x)
                f = frame_features(x, cfg)
                t = np.arange(len(f)) * HOP
                y = np.where((t >= lead) & (t < lead + len(ev)), ci + 1, 0)
                xs.append(f[:: cfg.frame_stride])
                ys.append(y[:: cfg.frame_stride])
    return np.concatenate(xs), np.concatenate(ys)


# ------------------------------------------------------------------------------------------------ model
class _MLP(nn.Module):
    """``[N, d_in]`` features -> ``[N, n_out]`` logits (inputs standardised by the stored ``mu`` / ``sd``)."""

    def __init__(self, d_in: int, hidden: int, n_out: int):
        super().__init__()
        self.register_buffer("mu", torch.zeros(d_in))
        self.register_buffer("sd", torch.ones(d_in))
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mu) / self.sd)


class EventDetector:
    """Frame classifier over ``("background", *labels)``; build with :func:`get_detector` or :func:`train_detector`.

    ``phrases`` (label -> caption phrase) is the vocabulary prompts are read with; ``record`` says how the
    detector was made (saved with it).
    """

    def __init__(self, cfg: DetectorConfig, labels: Sequence[str], model: _MLP,
                 phrases: Mapping[str, str] | None = None, record: Mapping | None = None):
        self.cfg = cfg
        self.labels = (BACKGROUND, *labels)
        self.model = model.eval()
        self.phrases = dict(phrases) if phrases else {lab: lab.replace("_", " ") for lab in labels}
        self.record = dict(record or {})
        # Where it came from, for reports: a saved folder's path, "builtin" for the packaged one, None when made
        # in this process (its record says how).
        self.source: str | None = None

    def vocabulary(self) -> dict[str, str]:
        """label -> caption phrase, for :func:`eval_gen.temporal.prompt_order`."""
        return dict(self.phrases)

    @torch.no_grad()
    def frame_posteriors(self, wave: np.ndarray, sr: int) -> np.ndarray:
        """``[T]`` at ``sr`` -> smoothed posteriors ``[frames, 1 + n_classes]`` (10 ms frames)."""
        x = np.asarray(wave, dtype=np.float32)
        if x.ndim != 1 or x.size == 0:
            raise UserError(f"detector input must be a non-empty mono waveform [T], got shape {np.shape(wave)}")
        x = resample(x, int(sr), SR) if int(sr) != SR else x
        f = torch.from_numpy(frame_features(x, self.cfg))
        p = torch.softmax(self.model(f), dim=-1).double().numpy()
        k = self.cfg.smooth
        if k > 1 and len(p) > 1:
            c = np.cumsum(np.pad(p, ((k // 2 + 1, k // 2), (0, 0)), mode="edge"), axis=0)
            p = (c[k:] - c[:-k]) / k
        return p

    def detect(self, wave: np.ndarray, sr: int) -> list[DetectedEvent]:
        """Events ``(label, onset_s, offset_s, mean confidence)`` sorted by onset."""
        p = self.frame_posteriors(wave, sr)
        best = p.argmax(axis=1)
        conf = p.max(axis=1)
        best = np.where(conf >= self.cfg.min_conf, best, 0)
        runs: list[list] = []  # [class, start, end, conf_sum]
        for i, c in enumerate(best):
            if runs and runs[-1][0] == c and runs[-1][2] == i:
                runs[-1][2] = i + 1
                runs[-1][3] += conf[i]
            else:
                runs.append([int(c), i, i + 1, float(conf[i])])
        fps = SR / HOP
        min_len, gap = self.cfg.min_event_s * fps, self.cfg.merge_gap_s * fps
        events: list[list] = []  # [class, start, end, conf_sum, frames]
        for c, s, e, cs in runs:
            if c == 0 or e - s < min_len:
                continue
            same = [j for j, ev in enumerate(events) if ev[0] == c]
            if same and s - events[same[-1]][2] < gap:
                # One event of class c, interrupted for less than merge_gap_s: what came in between (a sweep
                # passing through a beep's band, say) is part of it, not an event of its own.
                j = same[-1]
                del events[j + 1 :]
                events[j][2] = e
                events[j][3] += cs
                events[j][4] += e - s
            else:
                events.append([c, s, e, cs, e - s])
        return [DetectedEvent(self.labels[c], s / fps, e / fps, cs / n) for c, s, e, cs, n in events]

    def detect_order(self, wave: np.ndarray, sr: int) -> list[str]:
        """Labels by onset, consecutive repeats of one label collapsed."""
        out: list[str] = []
        for ev in self.detect(wave, sr):
            if not out or out[-1] != ev.label:
                out.append(ev.label)
        return out

    def weights_digest(self) -> str:
        """sha256 (16 hex digits) of the weights: two detectors with the same settings may still differ."""
        h = hashlib.sha256()
        for name, t in sorted(self.model.state_dict().items()):
            h.update(name.encode() + t.detach().cpu().numpy().tobytes())
        return h.hexdigest()[:16]

    def describe(self) -> dict:
        """What identifies this detector in a report: its source, labels, weights digest and bank fingerprint."""
        return {"source": self.source, "labels": list(self.labels[1:]),
                "weights": self.weights_digest(), "bank": self.record.get("bank", {}).get("fingerprint")}

    def clip_probabilities(self, wave: np.ndarray, sr: int) -> np.ndarray:
        """Per-clip class distribution ``[n_classes]`` (background excluded, renormalised) for KL."""
        p = self.frame_posteriors(wave, sr)[:, 1:].mean(axis=0)
        return p / max(p.sum(), 1e-12)

    # -------------------------------------------------------------------------------------------- save/load
    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write ``out_dir/detector.json`` + ``out_dir/model.safetensors`` (each atomically)."""
        from safetensors.torch import save_file

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "model.safetensors") as tmp:
            save_file({k: v.detach().contiguous() for k, v in self.model.state_dict().items()}, str(tmp))
        meta = {"format": FORMAT, "config": asdict(self.cfg), "labels": list(self.labels[1:]),
                "phrases": self.phrases, **self.record}
        atomic_write_text(out / "detector.json", json.dumps(meta, indent=2) + "\n")
        return out

    @classmethod
    def load(cls, path: str | os.PathLike) -> "EventDetector":
        """A detector saved by :meth:`save` (a folder holding ``detector.json`` and ``model.safetensors``)."""
        d = Path(path)
        meta_file, weights = d / "detector.json", d / "model.safetensors"
        if not d.is_dir():
            raise UserError(f"event detector folder {d} not found (give a folder written by: eval-gen detector train "
                            "--bank BANK --out DIR)")
        if not meta_file.is_file() or not weights.is_file():
            raise UserError(f"{d} is not a saved event detector (needs detector.json and model.safetensors; make "
                            "one with: eval-gen detector train --bank BANK --out DIR)")
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise UserError(f"{meta_file} is not readable JSON ({e}); retrain the detector") from None
        if meta.get("format") != FORMAT:
            raise UserError(f"{meta_file} is not an event detector record (format {meta.get('format')!r})")
        cfg = DetectorConfig.from_dict(meta["config"])
        labels = list(meta["labels"])
        from safetensors.torch import load_file

        model = _MLP(4 * cfg.n_mels, cfg.hidden, len(labels) + 1)
        try:
            model.load_state_dict(load_file(str(weights)))
        except Exception as e:  # noqa: BLE001 - any mismatch is the same user-facing problem
            raise UserError(f"{weights} does not fit its detector.json ({str(e).splitlines()[0]}); retrain it") from None
        record = {k: v for k, v in meta.items() if k not in ("format", "config", "labels", "phrases")}
        det = cls(cfg, labels, model, meta.get("phrases"), record)
        det.source = str(d.resolve())
        return det


# ------------------------------------------------------------------------------------------------ training
def _fit(cfg: DetectorConfig, x: np.ndarray, y: np.ndarray, n_classes: int) -> _MLP:
    torch_gen = torch.Generator().manual_seed(cfg.seed)
    model = _MLP(x.shape[1], cfg.hidden, n_classes + 1)
    with torch.no_grad():  # deterministic init from our own generator, not the global one
        for p in model.net.parameters():
            bound = 1.0 / np.sqrt(p.shape[-1])
            p.copy_(torch.rand(p.shape, generator=torch_gen) * 2 * bound - bound)
        model.mu.copy_(torch.from_numpy(x.mean(0)))
        model.sd.copy_(torch.from_numpy(x.std(0) + 1e-3))
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()
    # Balance classes: background frames outnumber each event class.
    counts = torch.bincount(yt, minlength=n_classes + 1).double().clamp(min=1)
    weight = (counts.sum() / counts / len(counts)).float()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    loss_fn = nn.CrossEntropyLoss(weight=weight)
    for _ in range(cfg.steps):
        idx = torch.randint(0, len(xt), (min(cfg.batch, len(xt)),), generator=torch_gen)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xt[idx]), yt[idx])
        loss.backward()
        opt.step()
    return model.eval()


def train_detector(bank="builtin", cfg: DetectorConfig | None = None) -> EventDetector:
    """Train a detector on ``bank``; deterministic.

    ``bank``: ``"builtin"``, a folder per class, a ``ClipBank``, or several banks (a list of specs as repeated
    ``--bank`` gives, or ``"builtin+DIR"``) trained as one detector over the union of their classes.

    Only each bank's *train* split is used (built-in: instances never held out; folders: the files that their
    ``heldout.txt`` does not list, or :func:`tclap.data.banks.folder_split` keeps for training), so held-out
    mix-ups measure the detector fairly. A union's record also names the banks as given (``bank.given``), each
    member (``bank.members``) and the bank each class came from (``bank.class_bank``: ``builtin`` or a path).
    """
    from tclap.data.banks import BuiltinBank, UnionBank

    cfg = cfg or DetectorConfig()
    parts = bank_specs(bank) if _is_spec(bank) else None
    b = _open_bank(bank)
    keys = _training_keys(b, cfg)
    short = [lab for lab, ks in keys.items() if not ks]
    if short:
        raise UserError(f"detector bank {b.name!r}: class(es) {short} have no training clip; add files")
    t0 = time.perf_counter()
    # Small STFTs and matrices: one thread is faster than several fighting over a shared CPU, and the same on
    # every run (restored afterwards).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x, y = _training_set(cfg, b, keys)
        model = _fit(cfg, x, y, len(keys))
    finally:
        torch.set_num_threads(threads)

    def where(m) -> str | None:  # a bank object given without its spec has no path, except the built-in one
        return BUILTIN if isinstance(m, BuiltinBank) else None

    bank_rec: dict = {"name": b.name}
    if isinstance(b, UnionBank):
        paths = [_bank_path(p) for p in parts] if parts is not None else [where(m) for m in b.members]
        given = None if parts is None else [str(x) for x in (bank if isinstance(bank, (list, tuple)) else [bank])]
        by_member = {id(m): p for m, p in zip(b.members, paths)}
        # "path" is what `eval-gen detector ceiling` reopens: the members' paths, a list only for a union.
        bank_rec.update(path=paths, given=given,
                        members=[{"name": m.name, "path": p} for m, p in zip(b.members, paths)],
                        class_bank={lab: by_member[id(b.owner(lab))] for lab in keys})
    else:
        bank_rec["path"] = _bank_path(parts[0]) if parts is not None else where(b)
    bank_rec.update(fingerprint=bank_fingerprint(b, cfg), clips_per_class={lab: len(ks) for lab, ks in keys.items()})
    record = {"bank": bank_rec,
              "made_by": {"command": f"train_detector({b.name!r}, {cfg!r})",
                          "training_frames": int(len(x)), "seconds": round(time.perf_counter() - t0, 1),
                          "torch": torch.__version__, "machine": platform.machine()}}
    return EventDetector(cfg, list(keys), model, {lab: b.phrases.get(lab, lab) for lab in keys}, record)


# ------------------------------------------------------------------------------------------------ lookup
def _cache_dir_for(cfg: DetectorConfig, cache_dir: Path, fingerprint: str) -> Path:
    key = hashlib.sha256(repr(sorted(asdict(cfg).items())).encode() + fingerprint.encode()).hexdigest()[:16]
    return cache_dir / f"detector-{key}"


def _shipped(cfg: DetectorConfig, fingerprint: str) -> EventDetector | None:
    """The packaged built-in detector, if it was made with ``cfg`` from this bank (else None: stale)."""
    if not (SHIPPED_DIR / "detector.json").is_file():
        return None
    det = EventDetector.load(SHIPPED_DIR)
    if det.cfg != cfg or det.record.get("bank", {}).get("fingerprint") != fingerprint:
        return None
    det.source = BUILTIN
    return det


@functools.lru_cache(maxsize=8)
def _get_detector(cfg: DetectorConfig, cache_dir: str | None, bank: str | tuple[str, ...]) -> EventDetector:
    from eval_gen.cache import default_cache_dir

    fp = bank_fingerprint(bank, cfg)
    if bank == BUILTIN:
        det = _shipped(cfg, fp)
        if det is not None:
            return det
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    path = _cache_dir_for(cfg, root, fp)
    if (path / "detector.json").is_file():
        try:
            return EventDetector.load(path)
        except UserError:  # damaged cache entry: retrain and overwrite
            pass
    det = train_detector(bank, cfg)
    det.save(path)
    return det


def get_detector(cfg: DetectorConfig | None = None, cache_dir: str | os.PathLike | None = None,
                 bank: str | os.PathLike | Sequence[str] = BUILTIN) -> EventDetector:
    """The detector for ``cfg`` and ``bank``: from memory, the package, the disk cache, or trained now.

    ``bank`` may also be several banks (a list, or ``"builtin+DIR"``: one detector over their union), or a saved
    detector folder (``eval-gen detector train --out DIR``), loaded as it is.
    """
    if isinstance(bank, (str, os.PathLike)) and str(bank) != BUILTIN and (Path(bank) / "detector.json").is_file():
        return _load_saved(str(Path(bank).resolve()))
    paths = tuple(_bank_path(p) for p in bank_specs(bank))
    return _get_detector(cfg or DetectorConfig(), None if cache_dir is None else str(cache_dir),
                         paths[0] if len(paths) == 1 else paths)


@functools.lru_cache(maxsize=8)
def _load_saved(path: str) -> EventDetector:
    return EventDetector.load(path)


def detect_order(wave: np.ndarray, sr: int, cache_dir: str | os.PathLike | None = None) -> list[str]:
    """Built-in event labels in ``wave [T]`` (at ``sr``) ordered by onset."""
    return get_detector(cache_dir=cache_dir).detect_order(wave, sr)


def order_matches(detected: Sequence[str], prompted: Sequence[str]) -> bool:
    """True when every prompted label is detected and their first onsets come in the prompted order.

    Labels the prompt does not name are ignored (a stray extra event does not hide a correct order).
    """
    first = {}
    for i, lab in enumerate(detected):
        first.setdefault(lab, i)
    if len(set(prompted)) != len(prompted) or any(lab not in first for lab in prompted):
        return False
    pos = [first[lab] for lab in prompted]
    return all(a < b for a, b in zip(pos, pos[1:]))


class DetectorBackend(EmbeddingBackend):
    """``builtin-events``: the detector as a softmax classifier (KL) and a posterior-mean embedding."""

    name = "builtin-events"
    sample_rate = SR
    activation = "softmax"
    default_pooling = "clip"

    def __init__(self, cache_dir: str | None = None, batch_size: int = 32,
                 detector: str | os.PathLike | EventDetector | None = None):
        """``detector``: a saved detector folder (``eval-gen detector train --out DIR``), or one already loaded,
        instead of the built-in bank's; its classes are then the ones this classifier gives probabilities for."""
        if isinstance(detector, EventDetector):
            self.det = detector
        else:
            self.det = EventDetector.load(detector) if detector is not None else get_detector(cache_dir=cache_dir)
        self.n_classes = len(self.det.labels) - 1
        self.dim = self.n_classes
        self.batch_size = batch_size

    def _settings_key(self) -> str:
        # keyed by the weights themselves: two detectors with the same settings may still differ
        return f"cfg={asdict(self.det.cfg)}|weights={self.det.weights_digest()}"

    def _embed_batch(self, waves):
        return [self.det.clip_probabilities(w, SR)[None] for w in waves]

    def _logits_batch(self, waves):
        # log of the clip distribution: softmax(log p) = p, so the KL sees exactly the detector's distribution.
        return np.stack([np.log(np.clip(self.det.clip_probabilities(w, SR), 1e-12, None)) for w in waves])
