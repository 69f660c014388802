"""Evaluate a CLAP model on a manifest (or the built-in held-out mix-ups): embed, score, report.

Every distinct audio file and caption is embedded once, in batches, and cached on disk by content:
the key of a clip is the sha256 of its file's bytes, of a caption the sha256 of its text, under a folder
named by a fingerprint of the model (its weights, front-end settings and text length), so a changed
file, caption or model never reuses a stale embedding, and an interrupted evaluation resumes from the
batches it already wrote.

What is measured (fractions from :mod:`tclap.evaluation.metrics`, reported in percent):

* T-Classify T2A on every (caption, negative caption) pair of an item (pairwise when an item has as many
  negatives as captions, else its first caption with its first negative) and its audio-blind control;
  items without a negative caption are counted, not scored.
* T-Classify A2T on every caption of an item that has a ``negative_audio``; others are counted.
* Retrieval R@1/5/10 and mAP@10 both ways over all items and all their captions.
* Zero-shot top-1 over single-label items (``events`` holding one distinct label), one prompt per label;
  for ``builtin-heldout`` over single-event renders of held-out instances of every built-in class.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from basekit.errors import UserError
from tclap.evaluation import metrics as M
from tclap.evaluation.report import write_report
from basekit.audio import load_audio, save_audio
from tclap.data.manifest import read_manifest, write_manifest
from tclap.data.mixup import build_builtin_mixups
from tclap.synth import EVENT_CLASSES, event_phrase, instance_for_split, render_event

BUILTIN_HELDOUT = "builtin-heldout"


@dataclass
class EvalConfig:
    """Settings of one evaluation."""

    prompt_template: str = "A sound of {label}"
    batch_size: int = 64
    heldout_mixes: int = 400  # built-in held-out set: number of two-event mixes
    heldout_per_class: int = 10  # built-in held-out set: single-event clips per class (zero-shot)
    seed: int = 0


# ---------------------------------------------------------------- embedding cache
def model_fingerprint(bundle) -> str:
    """sha256 over the model's weights, the front-end settings and the text length (the cache namespace)."""
    h = hashlib.sha256()
    for name, t in sorted(bundle.model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    fe = bundle.frontend.to_dict() if hasattr(bundle.frontend, "to_dict") else repr(bundle.frontend)
    h.update(json.dumps(fe, sort_keys=True, default=str).encode())
    h.update(str(getattr(bundle, "max_text_length", "")).encode())
    return h.hexdigest()


def _sha_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class EmbeddingCache:
    """Embeddings keyed by content hash, stored as one ``.npz`` shard per embedded batch (atomic writes)."""

    def __init__(self, root: Path, kind: str):
        self.root, self.kind = root, kind
        self.table: dict[str, np.ndarray] = {}
        root.mkdir(parents=True, exist_ok=True)
        for f in sorted(root.glob(f"{kind}-*.npz")):
            with np.load(f) as z:
                for k, v in zip(z["keys"], z["emb"]):
                    self.table[str(k)] = v

    def missing(self, keys: list[str]) -> list[str]:
        seen, out = set(), []
        for k in keys:
            if k not in self.table and k not in seen:
                seen.add(k)
                out.append(k)
        return out

    def add(self, keys: list[str], emb: np.ndarray) -> None:
        digest = hashlib.sha256("".join(keys).encode()).hexdigest()[:20]
        path = self.root / f"{self.kind}-{digest}.npz"
        tmp = self.root / f".{self.kind}-{digest}.{os.getpid()}.tmp.npz"
        np.savez(tmp, keys=np.array(keys), emb=emb.astype(np.float32))
        os.replace(tmp, path)
        self.table.update(zip(keys, emb.astype(np.float32)))

    def get(self, keys: list[str]) -> np.ndarray:
        return np.stack([self.table[k] for k in keys]).astype(np.float64)


def embed_audio_paths(bundle, paths: list[str], cache: EmbeddingCache, batch_size: int, quiet: bool) -> np.ndarray:
    """``[N, D]`` embeddings of audio files, each distinct file embedded once (cached by file hash)."""

    for p in paths:
        if not Path(p).exists():
            raise UserError(f"audio file not found: {p} (fix the manifest's path or remove the item)")
    hashes = {p: _sha_file(p) for p in dict.fromkeys(paths)}
    keys = [hashes[p] for p in paths]
    todo = cache.missing(keys)
    by_key = {hashes[p]: p for p in hashes}
    for s in tqdm(range(0, len(todo), batch_size), desc="embed audio", disable=quiet or not todo, unit="batch"):
        chunk = todo[s:s + batch_size]
        waves = [load_audio(by_key[k], sr=bundle.sample_rate) for k in chunk]
        cache.add(chunk, bundle.embed_audio(waves, batch_size=batch_size).numpy())
    return cache.get(keys)


def embed_texts(bundle, texts: list[str], cache: EmbeddingCache, batch_size: int, quiet: bool) -> np.ndarray:
    """``[N, D]`` embeddings of captions, each distinct text embedded once (cached by text hash)."""
    key_of = {t: hashlib.sha256(t.encode("utf-8")).hexdigest() for t in dict.fromkeys(texts)}
    keys = [key_of[t] for t in texts]
    todo = cache.missing(keys)
    text_of = {v: k for k, v in key_of.items()}
    for s in tqdm(range(0, len(todo), batch_size), desc="embed text", disable=quiet or not todo, unit="batch"):
        chunk = todo[s:s + batch_size]
        cache.add(chunk, bundle.embed_text([text_of[k] for k in chunk], batch_size=batch_size).numpy())
    return cache.get(keys)


# ---------------------------------------------------------------- data
def builtin_heldout(cache_dir: Path, seconds: float, sr: int, cfg: EvalConfig) -> tuple[list[dict], list[dict]]:
    """The built-in held-out set: (two-event mix-ups of held-out instances, single-event clips with labels).

    Built once into ``cache_dir`` (deterministic from ``cfg.seed``); a finished build is reused.
    """

    root = cache_dir / f"{BUILTIN_HELDOUT}-n{cfg.heldout_mixes}-{seconds:g}s-{sr}hz-seed{cfg.seed}"
    mix_manifest = root / "mixups" / "manifest.jsonl"
    if not mix_manifest.exists():
        mix_manifest = Path(build_builtin_mixups(root / "mixups", n=cfg.heldout_mixes, seconds=seconds, sr=sr,
                                                 split="heldout", seed=cfg.seed))
    single_manifest = root / "single" / "manifest.jsonl"
    if not single_manifest.exists():
        items = []
        n = int(round(seconds * sr))
        for label in EVENT_CLASSES:
            for j in range(cfg.heldout_per_class):
                inst = instance_for_split(j, "heldout")
                wav = render_event(label, inst, sr=sr)[:n]
                path = root / "single" / "audio" / f"{label}-{inst}.wav"
                save_audio(path, wav, sr)
                items.append({"id": f"{label}-{inst}", "audio": str(path.resolve()), "captions": [event_phrase(label)],
                              "events": [{"label": label, "onset": 0.0, "offset": len(wav) / sr}],
                              "split": "heldout", "source": "builtin", "class_text": event_phrase(label)})
        write_manifest(single_manifest, items)
    return read_manifest(mix_manifest), read_manifest(single_manifest)


def _single_label(item: dict) -> str | None:
    labels = {e.get("label") for e in item.get("events") or [] if e.get("label")}
    return labels.pop() if len(labels) == 1 else None


# ---------------------------------------------------------------- the evaluation
def evaluate(
    model,
    data: str,
    out_dir: str | os.PathLike,
    cfg: EvalConfig | None = None,
    cache_dir: str | os.PathLike | None = None,
    quiet: bool = False,
    device: str = "cpu",
) -> dict:
    """Evaluate ``model`` (a name/dir for :func:`tclap.models.load_clap`, or a loaded bundle) on ``data``.

    Args:
        model: model name or directory, or a :class:`tclap.models.ClapBundle`.
        data: ``"builtin-heldout"`` or a manifest path.
        out_dir: where ``metrics.json`` and ``metrics.md`` go.
        cfg: :class:`EvalConfig`.
        cache_dir: embedding (and built-in data) cache; default ``out_dir/cache``.
        device: where a model given by name is loaded (``tclap evaluate --device auto`` resolves it).

    Returns:
        the metrics dict (percent) with ``counts`` and ``info``, as written to ``metrics.json``.
    """

    cfg = cfg or EvalConfig()
    M.format_prompt(cfg.prompt_template, "x")  # fail early on a bad template
    if cfg.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {cfg.batch_size}")
    if data != BUILTIN_HELDOUT and not Path(data).exists():  # before the model loads
        raise UserError(f"--data {data!r}: no such manifest (pass a manifest path or 'builtin-heldout')")
    if isinstance(model, (str, os.PathLike)):
        from tclap.models import load_clap  # noqa: PLC0415

        model_name, bundle = str(model), load_clap(model, device=device)
    else:
        model_name, bundle = getattr(model, "source", "") or "bundle", model
    out = Path(out_dir)
    cache_root = Path(cache_dir) if cache_dir is not None else out / "cache"
    if data == BUILTIN_HELDOUT:
        seconds = float(bundle.frontend.max_length_s)
        items, single = builtin_heldout(cache_root / "data", seconds, bundle.sample_rate, cfg)
    else:
        p = Path(data)
        if not p.exists():
            raise UserError(f"--data {data!r}: no such manifest (pass a manifest path or 'builtin-heldout')")
        items = read_manifest(p)
        single = [it for it in items if _single_label(it)]
    if not items:
        raise UserError(f"--data {data}: the manifest holds no items")

    fp = model_fingerprint(bundle)
    audio_cache = EmbeddingCache(cache_root / "embeddings" / fp[:24], "audio")
    text_cache = EmbeddingCache(audio_cache.root, "text")
    emb_a = lambda paths: embed_audio_paths(bundle, paths, audio_cache, cfg.batch_size, quiet)  # noqa: E731
    emb_t = lambda texts: embed_texts(bundle, texts, text_cache, cfg.batch_size, quiet)  # noqa: E731

    counts: dict[str, int] = {"items": len(items)}
    result: dict[str, float] = {}
    audio = emb_a([it["audio"] for it in items])  # [N, D]

    # T-Classify text-to-audio (+ audio-blind control)
    rows, pos, neg = [], [], []
    no_neg = 0
    for i, it in enumerate(items):
        caps, negs = it["captions"], it.get("negative_captions") or []
        if not negs:
            no_neg += 1
            continue
        pairs = list(zip(caps, negs)) if len(negs) == len(caps) else [(caps[0], negs[0])]
        for c, n in pairs:
            rows.append(i)
            pos.append(c)
            neg.append(n)
    counts["t_classify_t2a_pairs"] = len(rows)
    counts["skipped_no_negative_caption"] = no_neg
    if rows:
        a, tp, tn = audio[rows], emb_t(pos), emb_t(neg)
        result["t_classify_t2a"] = 100 * M.t_classify_t2a(a, tp, tn)
        result["t_classify_t2a_audio_blind"] = 100 * M.t_classify_t2a_audio_blind(a, tp, tn)

    # T-Classify audio-to-text
    with_neg_audio = [i for i, it in enumerate(items) if it.get("negative_audio")]
    counts["skipped_no_negative_audio"] = len(items) - len(with_neg_audio)
    if with_neg_audio:
        neg_audio = emb_a([items[i]["negative_audio"] for i in with_neg_audio])
        caps, prow, nrow = [], [], []
        for k, i in enumerate(with_neg_audio):
            for c in items[i]["captions"]:
                caps.append(c)
                prow.append(i)
                nrow.append(k)
        counts["t_classify_a2t_captions"] = len(caps)
        result["t_classify_a2t"] = 100 * M.t_classify_a2t(emb_t(caps), audio[prow], neg_audio[nrow])

    # Retrieval over every item and caption
    caps = [c for it in items for c in it["captions"]]
    owner = [i for i, it in enumerate(items) for _ in it["captions"]]
    counts["retrieval_captions"] = len(caps)
    for k, v in M.retrieval_metrics(emb_t(caps), audio, owner).items():
        result[k] = 100 * v

    # Zero-shot over single-label clips
    labels = sorted({_single_label(it) for it in single})
    if len(labels) >= 2:
        names = {}
        for it in single:
            names.setdefault(_single_label(it), it.get("class_text") or _single_label(it).replace("_", " "))
        prompts = [M.format_prompt(cfg.prompt_template, names[lab]) for lab in labels]
        y = [labels.index(_single_label(it)) for it in single]
        result["zero_shot_top1"] = 100 * M.zero_shot_top1(emb_a([it["audio"] for it in single]), emb_t(prompts), y)
        counts["zero_shot_clips"] = len(single)
        counts["zero_shot_classes"] = len(labels)

    info = {"model": model_name, "data": str(data), "prompt_template": cfg.prompt_template,
            "model_fingerprint": fp[:24]}
    write_report(out, result, counts, info)
    return {**result, "counts": counts, "info": info}
