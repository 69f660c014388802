"""A frame-level event detector for the built-in sound-event bank (:mod:`tclap.synth`).

It gives the temporal-order metric a second opinion that does not depend on any CLAP model: detect the
events in a generated clip, sort them by onset and compare with the order the prompt asks for.

Model: a two-layer MLP on per-frame features (16 kHz, 10 ms hop; 40 log-mel bands of the frame plus the
mean and spread over ±100 ms, so impulse trains such as knocks and ticks are seen as a whole). It is trained
at first use on rendered *train* instances of every class (held-out instances are never seen) placed at
random gains over low-level noise, with a ``background`` class for everything outside an event.
Training is deterministic (seeded numpy + torch generators, minibatch Adam) and takes a few seconds; the
result is cached on disk keyed by the training configuration and a fingerprint of the bank's audio, so a
change of either retrains instead of reusing a stale model.

Detection: frame posteriors -> moving-average smoothing -> the confident (p >= ``min_conf``) non-background
argmax -> runs of one class at least ``min_event_s`` long, merging same-class runs separated by less than
``merge_gap_s``. :func:`detect_order` returns the labels by onset.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from eval_gen.backends.base import EmbeddingBackend
from eval_gen.backends.mel import log_mel_frames
from basekit.audio import resample
from basekit.errors import UserError

BACKGROUND = "background"
SR = 16000
HOP = 160  # 10 ms


@dataclass(frozen=True)
class DetectorConfig:
    """Training and decoding settings (all part of the cache key)."""

    n_mels: int = 40
    context: int = 10  # frames each side for the context mean/std (±100 ms)
    hidden: int = 64
    instances_per_class: int = 14
    frame_stride: int = 2  # neighbouring 10 ms frames are near-duplicates: keep every 2nd for training
    steps: int = 400
    batch: int = 2048
    lr: float = 5e-3
    seed: int = 0
    smooth: int = 9  # frames of moving-average smoothing of the posteriors
    min_conf: float = 0.5
    min_event_s: float = 0.08
    merge_gap_s: float = 0.25
    version: int = 1


@dataclass(frozen=True)
class DetectedEvent:
    label: str
    onset: float
    offset: float
    confidence: float


def frame_features(wave: np.ndarray, cfg: DetectorConfig) -> np.ndarray:
    """``[T]`` at 16 kHz -> ``[frames, 3 · n_mels]``: log-mel, and its mean and std over ±context frames."""
    lm = log_mel_frames(wave, SR, n_fft=512, hop=HOP, n_mels=cfg.n_mels)  # [F, M]
    k = cfg.context
    pad = np.pad(lm, ((k, k), (0, 0)), mode="edge")
    c1 = np.cumsum(np.pad(pad, ((1, 0), (0, 0))), axis=0)
    c2 = np.cumsum(np.pad(pad**2, ((1, 0), (0, 0))), axis=0)
    w = 2 * k + 1
    mean = (c1[w:] - c1[:-w]) / w
    var = np.clip((c2[w:] - c2[:-w]) / w - mean**2, 0.0, None)
    return np.concatenate([lm, mean, np.sqrt(var)], axis=1).astype(np.float32)


def _bank_fingerprint() -> str:
    """Hash of the bank's labels and one rendered instance per class: changes when the bank changes."""
    from tclap.synth import EVENT_CLASSES, render_event

    h = hashlib.sha256("|".join(EVENT_CLASSES).encode())
    for lab in EVENT_CLASSES:
        h.update(np.round(render_event(lab, 0, SR).astype(np.float64), 5).tobytes())
    return h.hexdigest()[:16]


def _training_set(cfg: DetectorConfig, labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``[N, 3M]`` and targets ``[N]`` (0 = background, 1 + class index) from train instances only."""
    from tclap.synth import instance_for_split, render_event

    rng = np.random.default_rng(cfg.seed)
    xs, ys = [], []
    for ci, lab in enumerate(labels):
        for j in range(cfg.instances_per_class):
            ev = render_event(lab, instance_for_split(j, "train"), SR).astype(np.float64)
            ev *= 10 ** (rng.uniform(-12, 3) / 20)
            lead, tail = int(rng.uniform(0.2, 0.6) * SR), int(rng.uniform(0.2, 0.6) * SR)
            x = np.zeros(lead + len(ev) + tail)
            x[lead : lead + len(ev)] = ev
            x += rng.standard_normal(len(x)) * 10 ** (rng.uniform(-75, -45) / 20)
            f = frame_features(x, cfg)
            t = np.arange(len(f)) * HOP
            y = np.where((t >= lead) & (t < lead + len(ev)), ci + 1, 0)
            xs.append(f[:: cfg.frame_stride])
            ys.append(y[:: cfg.frame_stride])
    return np.concatenate(xs), np.concatenate(ys)


class _MLP(nn.Module):
    def __init__(self, d_in: int, hidden: int, n_out: int):
        super().__init__()
        self.register_buffer("mu", torch.zeros(d_in))
        self.register_buffer("sd", torch.ones(d_in))
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mu) / self.sd)


class EventDetector:
    """Frame classifier over ``("background", *EVENT_CLASSES)``; build with :func:`get_detector`."""

    def __init__(self, cfg: DetectorConfig, labels: Sequence[str], model: _MLP):
        self.cfg = cfg
        self.labels = (BACKGROUND, *labels)
        self.model = model.eval()

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
        events: list[list] = []
        for c, s, e, cs in runs:
            if c == 0 or e - s < min_len:
                continue
            if events and events[-1][0] == c and s - events[-1][2] < gap:
                events[-1][2] = e
                events[-1][3] += cs
                events[-1][4] += e - s
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

    def clip_probabilities(self, wave: np.ndarray, sr: int) -> np.ndarray:
        """Per-clip class distribution ``[n_classes]`` (background excluded, renormalised) for KL."""
        p = self.frame_posteriors(wave, sr)[:, 1:].mean(axis=0)
        return p / max(p.sum(), 1e-12)


def _train(cfg: DetectorConfig, labels: Sequence[str]) -> _MLP:
    x, y = _training_set(cfg, labels)
    torch_gen = torch.Generator().manual_seed(cfg.seed)
    model = _MLP(x.shape[1], cfg.hidden, len(labels) + 1)
    with torch.no_grad():  # deterministic init from our own generator, not the global one
        for p in model.net.parameters():
            bound = 1.0 / np.sqrt(p.shape[-1])
            p.copy_(torch.rand(p.shape, generator=torch_gen) * 2 * bound - bound)
        model.mu.copy_(torch.from_numpy(x.mean(0)))
        model.sd.copy_(torch.from_numpy(x.std(0) + 1e-3))
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()
    # Balance classes: background frames outnumber each event class.
    counts = torch.bincount(yt, minlength=len(labels) + 1).double().clamp(min=1)
    weight = (counts.sum() / counts / len(counts)).float()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    loss_fn = nn.CrossEntropyLoss(weight=weight)
    # Tiny matrices: one thread is faster than several fighting over a shared CPU (restored afterwards).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(cfg.steps):
            idx = torch.randint(0, len(xt), (min(cfg.batch, len(xt)),), generator=torch_gen)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def _cache_file(cfg: DetectorConfig, cache_dir: Path, fingerprint: str) -> Path:
    key = hashlib.sha256(repr(sorted(asdict(cfg).items())).encode() + fingerprint.encode()).hexdigest()[:16]
    return cache_dir / f"detector-{key}.pt"


@functools.lru_cache(maxsize=4)
def _get_detector(cfg: DetectorConfig, cache_dir: str | None) -> EventDetector:
    from tclap.synth import EVENT_CLASSES

    from eval_gen.cache import default_cache_dir

    root = Path(cache_dir) if cache_dir else default_cache_dir()
    path = _cache_file(cfg, root, _bank_fingerprint())
    model = _MLP(3 * cfg.n_mels, cfg.hidden, len(EVENT_CLASSES) + 1)
    if path.is_file():
        try:
            model.load_state_dict(torch.load(str(path), map_location="cpu", weights_only=True))
            return EventDetector(cfg, EVENT_CLASSES, model)
        except Exception:  # damaged cache entry: retrain and overwrite
            pass
    model = _train(cfg, EVENT_CLASSES)
    root.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".detector-", suffix=".pt", dir=str(root))
    os.close(fd)
    try:
        torch.save(model.state_dict(), tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return EventDetector(cfg, EVENT_CLASSES, model)


def get_detector(cfg: DetectorConfig | None = None, cache_dir: str | os.PathLike | None = None) -> EventDetector:
    """The detector for ``cfg``: from memory, else from the disk cache, else trained now (seconds)."""
    return _get_detector(cfg or DetectorConfig(), None if cache_dir is None else str(cache_dir))


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

    def __init__(self, cache_dir: str | None = None, batch_size: int = 32):
        self.det = get_detector(cache_dir=cache_dir)
        self.n_classes = len(self.det.labels) - 1
        self.dim = self.n_classes
        self.batch_size = batch_size

    def _settings_key(self) -> str:
        return f"cfg={asdict(self.det.cfg)}|bank={_bank_fingerprint()}"

    def _embed_batch(self, waves):
        return [self.det.clip_probabilities(w, SR)[None] for w in waves]

    def _logits_batch(self, waves):
        # log of the clip distribution: softmax(log p) = p, so the KL sees exactly the detector's distribution.
        return np.stack([np.log(np.clip(self.det.clip_probabilities(w, SR), 1e-12, None)) for w in waves])
