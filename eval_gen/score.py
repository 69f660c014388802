"""Score generated audio against references: ``score_folders`` (behind ``eval-gen score``) and ``score_arrays``.

Flow: read every clip once (unreadable files fail here, before any long work; silent clips are counted and,
by ``on_silent``, warned about, skipped and listed, or refused), embed with the chosen backend (cached on disk
by file content, so an interrupted run resumes), then compute the requested metrics:

``fad`` (+ bootstrap CI), ``fad_inf`` (fadtk's extrapolation, with R²), ``kad`` (+ CI), ``kl`` (paired by stem,
softmax KL(ref‖gen) and, for sigmoid classifiers, the Bernoulli KL), ``clap`` (text-audio cosine) and
``order`` (temporal-order accuracy by a CLAP model and, for prompts over the detector's events, by the detector).

The event detector: the built-in bank's by default; ``detector`` (``eval-gen score --detector DIR``) names a
folder written by ``eval-gen detector train`` instead. That one detector judges order (prompts are read with its
labels' phrases) and is the ``builtin-events`` classifier (KL) and backend wherever those are chosen; it is
loaded before any folder is read, so a bad folder fails first, and ``scores.json`` records which one it was
(source, labels, weights digest).

Silence: a clip is silent or near-silent when its peak is below ``silence_dbfs`` (-60 dBFS by default,
:data:`basekit.audio.SILENCE_DBFS`), judged on its level **before any gain**: for a folder written by
``audioldm-cond generate``, the ``level.peak_dbfs_before`` its ``prompts.jsonl`` records for the file (a clip
that was normalised up is judged on what the model made), otherwise the file's own peak. Generated and
reference folders are treated the same way.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from eval_gen import metrics as M
from eval_gen.backends import EmbeddingBackend, available_backends, get_backend
from eval_gen.backends.base import file_sha256
from eval_gen.cache import EmbeddingCache, default_cache_dir
from eval_gen.kl import kl_bernoulli, kl_softmax, pair_by_stem
from eval_gen.stats import bootstrap_ci
from basekit.audio import SILENCE_DBFS, list_audio_files, load_audio_with_sr, peak_dbfs
from basekit.errors import UserError
from eval_gen.prompts import read_prompts
from eval_gen.temporal import clap_score, order_accuracy_clap, order_accuracy_detector, order_pairs

ALL_METRICS = ("fad", "fad_inf", "kad", "kl", "clap", "order")


@dataclass
class ScoreConfig:
    """Settings of one scoring run (saved into ``scores.json``)."""

    backend: str = "mel-stats"
    backend_kwargs: dict = field(default_factory=dict)
    metrics: tuple[str, ...] = ("fad", "kad")
    pooling: str = "auto"  # "frames": every frame row (FAD literature), "clip": one mean row per clip
    classifier: str | None = None  # for KL; default: the backend if it classifies
    classifier_kwargs: dict = field(default_factory=dict)
    clap_model: str = "tiny-tclap"  # for clap/order when the backend is not a CLAP model
    detector: str | None = None  # a saved event detector folder (eval-gen detector train); None: the built-in one
    device: str = "cpu"  # where that CLAP runs (``eval-gen score --device auto`` resolves it)
    n_boot: int = 100
    ci_level: float = 0.95
    seed: int = 0
    fad_inf_steps: int = 25
    kad_scale: float = 1.0
    on_silent: str = "warn"  # "warn" | "skip" | "error"
    silence_dbfs: float = SILENCE_DBFS  # peak (dBFS, before any gain) below which a clip is near-silent
    cache_dir: str | None = None  # None: ~/.cache/tclap/eval_gen; "": no cache
    progress: bool = True
    batch_files: int = 32

    def validate(self) -> None:
        bad = [m for m in self.metrics if m not in ALL_METRICS]
        if bad or not self.metrics:
            raise UserError(f"unknown metric(s) {', '.join(bad) or '(none)'}; choose from {','.join(ALL_METRICS)}")
        if self.pooling not in ("auto", "frames", "clip"):
            raise UserError(f"pooling must be auto, frames or clip, got {self.pooling!r}")
        if self.on_silent not in ("warn", "skip", "error"):
            raise UserError(f"on_silent must be warn, skip or error, got {self.on_silent!r}")
        if not (math.isfinite(self.silence_dbfs) and self.silence_dbfs < 0):
            raise UserError(f"silence threshold {self.silence_dbfs:g} dBFS must be below 0 (full scale), e.g. -60")


class _Clips:
    """A set of clips: names, and a loader returning ``(wave [T], sr)``; file sets also have content hashes."""

    def __init__(self, names: list[str], load: Callable[[int], tuple[np.ndarray, int]],
                 hashes: list[str | None], label: str, recorded_peaks: list[float | None] | None = None):
        self.names, self.load, self.hashes, self.label = names, load, hashes, label
        # peak dBFS before any gain, as the writer recorded it (None: not recorded; judge the file itself)
        self.recorded_peaks = recorded_peaks or [None] * len(names)
        self.silent: list[str] = []
        self.peaks: dict[str, float | None] = {}  # name -> judged peak dBFS of each silent clip (None: -inf)

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, keep: list[int]) -> "_Clips":
        c = _Clips([self.names[i] for i in keep], lambda j: self.load(keep[j]), [self.hashes[i] for i in keep],
                   self.label, [self.recorded_peaks[i] for i in keep])
        c.silent, c.peaks = self.silent, self.peaks
        return c


GENERATION_RECORDS = "prompts.jsonl"  # what ``audioldm-cond generate`` writes beside its clips


def recorded_levels(folder: Path) -> dict[str, float]:
    """``file name -> peak dBFS before any gain`` from a generation folder's ``prompts.jsonl`` (``-inf`` for digital
    silence); empty when the folder has no such records. Lines that are not generation records are ignored: the
    file is optional metadata, and a clip without a record is judged on its own samples."""
    f = folder / GENERATION_RECORDS
    out: dict[str, float] = {}
    if not f.is_file():
        return out
    for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
            level = rec["level"]
            if "peak_dbfs_before" not in level:
                continue
            v = level["peak_dbfs_before"]
            out[str(rec["audio"])] = float("-inf") if v is None else float(v)
        except (ValueError, KeyError, TypeError):
            continue
    return out


def _folder_clips(folder: str | os.PathLike, label: str, progress: bool) -> tuple[_Clips, list[Path]]:
    d = Path(folder)
    if not d.is_dir():
        raise UserError(f"{label} folder not found: {d} (give a folder of .wav/.flac/.ogg/.mp3 files)")
    files = list_audio_files(d)
    if not files:
        raise UserError(f"{label} folder {d} holds no audio files (.wav/.flac/.ogg/.mp3)")
    hashes = [file_sha256(f) for f in tqdm(files, desc=f"hashing {label}", disable=None if progress else True,
                                            leave=False)]
    levels = recorded_levels(d)
    clips = _Clips([f.stem for f in files], lambda i: load_audio_with_sr(files[i]), hashes, label,
                   [levels.get(f.name) for f in files])
    return clips, files


def _array_clips(waves: Sequence[np.ndarray], sr: int, label: str, names: Sequence[str] | None) -> _Clips:
    if len(waves) == 0:
        raise UserError(f"no {label} clips given (empty list)")
    names = list(names) if names is not None else [f"{i:05d}" for i in range(len(waves))]
    return _Clips(names, lambda i: (np.asarray(waves[i], dtype=np.float32), int(sr)), [None] * len(waves), label)


def _fmt_peak(v: float | None) -> str:
    return "-inf" if v is None else f"{v:.1f}"


def _scan_silent(clips: _Clips, cfg: ScoreConfig) -> _Clips:
    """Read every clip once: decoding errors surface now; silent or near-silent clips (peak below
    ``cfg.silence_dbfs`` before any gain; see the module docstring) are handled by ``cfg.on_silent``."""
    silent, peaks = [], {}
    for i in tqdm(range(len(clips)), desc=f"reading {clips.label}", disable=None if cfg.progress else True,
                  leave=False):
        w, _ = clips.load(i)
        if w.size == 0:
            raise UserError(f"{clips.label} clip {clips.names[i]} has no samples")
        if not np.all(np.isfinite(w)):
            raise UserError(f"{clips.label} clip {clips.names[i]} holds NaN or infinite samples")
        rec = clips.recorded_peaks[i]
        level = peak_dbfs(w) if rec is None else rec
        if not level >= cfg.silence_dbfs:
            silent.append(i)
            peaks[clips.names[i]] = round(level, 2) if math.isfinite(level) else None
    names = [clips.names[i] for i in silent]
    if silent:
        shown = ", ".join(f"{n} ({_fmt_peak(peaks[n])} dBFS)" for n in names[:5]) + (" ..." if len(names) > 5 else "")
        what = f"silent or near-silent (peak below {cfg.silence_dbfs:g} dBFS before any gain)"
        if cfg.on_silent == "error":
            raise UserError(f"{len(silent)} {clips.label} clips are {what}: {shown} "
                            "(fix them, or pass --on-silent warn/skip)")
        warnings.warn(f"{len(silent)} of {len(clips)} {clips.label} clips are {what}: {shown} "
                      f"({'skipped' if cfg.on_silent == 'skip' else 'kept in the scores'})", stacklevel=2)
    if cfg.on_silent == "skip" and silent:
        keep = [i for i in range(len(clips)) if i not in set(silent)]
        if not keep:
            raise UserError(f"every {clips.label} clip is silent; nothing left to score")
        out = clips.subset(keep)
    else:
        out = clips
    out.silent, out.peaks = names, peaks
    return out


def _run_backend(clips: _Clips, backend: EmbeddingBackend, cache: EmbeddingCache | None, cfg: ScoreConfig,
                 fn: Callable[[list[np.ndarray], int], list[np.ndarray]], desc: str) -> list[np.ndarray]:
    """Apply ``fn`` (embed or logits) to every clip in chunks, reading/writing the cache by content hash."""
    out: list[np.ndarray | None] = [None] * len(clips)
    todo = []
    for i, h in enumerate(clips.hashes):
        hit = cache.get(h) if (cache is not None and h is not None) else None
        if hit is not None:
            out[i] = hit
        else:
            todo.append(i)
    bar = tqdm(total=len(clips), initial=len(clips) - len(todo), desc=desc, disable=None if cfg.progress else True)
    for s in range(0, len(todo), cfg.batch_files):
        idx = todo[s : s + cfg.batch_files]
        loaded = [clips.load(i) for i in idx]
        by_sr: dict[int, list[int]] = {}
        for k, (_, sr) in enumerate(loaded):
            by_sr.setdefault(sr, []).append(k)
        for sr, ks in by_sr.items():
            res = fn([loaded[k][0] for k in ks], sr)
            for k, r in zip(ks, res):
                i = idx[k]
                out[i] = np.asarray(r, dtype=np.float32)
                if cache is not None and clips.hashes[i] is not None:
                    cache.put(clips.hashes[i], out[i])
        bar.update(len(idx))
    bar.close()
    return out  # type: ignore[return-value]


def _pool(embs: list[np.ndarray], pooling: str) -> np.ndarray:
    if pooling == "frames":
        return np.concatenate(embs).astype(np.float64)
    return np.stack([e.mean(axis=0) for e in embs]).astype(np.float64)


def _cache_for(backend: EmbeddingBackend, cfg: ScoreConfig, kind: str = "embed") -> EmbeddingCache | None:
    if cfg.cache_dir == "":
        return None
    return EmbeddingCache(Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir(), backend, kind=kind)


def _distance_block(name: str, fn, x: np.ndarray, y: np.ndarray, cfg: ScoreConfig, seed_offset: int) -> dict:
    value = fn(x, y)
    ci = bootstrap_ci(fn, x, y, n_boot=cfg.n_boot, level=cfg.ci_level, seed=cfg.seed + seed_offset,
                      progress=cfg.progress, desc=f"bootstrap {name}") if cfg.n_boot >= 2 else None
    return {"value": float(value), "ci": ci.as_dict() if ci else None}


DETECTOR_BACKEND = "builtin-events"  # the registry name of the event detector as a classifier / backend


def _backend_kwargs(name: str, kwargs: dict, detector) -> dict:
    """``kwargs`` for backend ``name``, with the chosen detector (already loaded) when ``name`` is the event
    detector."""
    if name == DETECTOR_BACKEND and detector is not None:
        return {**kwargs, "detector": detector}
    return dict(kwargs)


def load_chosen_detector(cfg: ScoreConfig):
    """The detector of ``cfg.detector`` (None: the built-in one is used where needed); a bad folder is one
    :class:`UserError` line naming it and how to make a good one."""
    if cfg.detector is None:
        return None
    from eval_gen.detector import EventDetector  # noqa: PLC0415 (loads torch; only scoring with a detector needs it)

    try:
        return EventDetector.load(cfg.detector)
    except UserError as exc:
        raise UserError(f"--detector: {exc}") from None  # the message names the folder and the fix


def _score(gen: _Clips, ref: _Clips, prompts: Mapping[str, tuple[str, str | None]] | None, cfg: ScoreConfig,
           backend: EmbeddingBackend | None, detector=None) -> dict:
    cfg.validate()
    if detector is None:
        detector = load_chosen_detector(cfg)
    gen, ref = _scan_silent(gen, cfg), _scan_silent(ref, cfg)
    result: dict = {"n_gen": len(gen), "n_ref": len(ref), "silent": {"gen": gen.silent, "ref": ref.silent},
                    "silence": {"threshold_dbfs": cfg.silence_dbfs, "judged_on": "peak before any gain",
                                "peaks_dbfs": {"gen": gen.peaks, "ref": ref.peaks}},
                    "on_silent": cfg.on_silent, "metrics": {}, "skipped": {}, "config": asdict(cfg)}
    mset = set(cfg.metrics)
    need_emb = mset & {"fad", "fad_inf", "kad"}
    clap_backend = None
    if need_emb:
        be = backend or get_backend(cfg.backend, **_backend_kwargs(cfg.backend, cfg.backend_kwargs, detector))
        pooling = be.default_pooling if cfg.pooling == "auto" else cfg.pooling
        cache = _cache_for(be, cfg)
        ge = _run_backend(gen, be, cache, cfg, be.embed, f"embedding generated ({be.name})")
        re_ = _run_backend(ref, be, cache, cfg, be.embed, f"embedding reference ({be.name})")
        x, y = _pool(ge, pooling), _pool(re_, pooling)
        if x.shape[1] != y.shape[1]:
            raise UserError(f"embedding dimensions differ: generated {x.shape[1]} vs reference {y.shape[1]}")
        result["backend"] = {"name": be.name, "dim": be.dim, "sample_rate": be.sample_rate, "key": be.cache_key(),
                             "pooling": pooling, "n_gen_rows": int(len(x)), "n_ref_rows": int(len(y))}
        if getattr(be, "embed_text", None) is not None:
            clap_backend = be
        with warnings.catch_warnings(record=True) as rank_warn:
            warnings.simplefilter("always")
            if "fad" in mset:
                result["metrics"]["fad"] = _distance_block("fad", M.frechet_distance, x, y, cfg, 1)
        for w in rank_warn[:2]:
            warnings.warn(str(w.message), stacklevel=2)
            result.setdefault("warnings", []).append(str(w.message))
        if "fad_inf" in mset:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the rank warning was already given for FAD
                r = M.fad_inf(x, y, steps=cfg.fad_inf_steps, seed=cfg.seed)
            result["metrics"]["fad_inf"] = {"value": r.value, "slope": r.slope, "r2": r.r2,
                                            "points": [list(p) for p in r.points]}
        if "kad" in mset:
            bw = M.median_pairwise_distance(y, seed=cfg.seed)

            def kad(a, b):
                return M.kernel_audio_distance(a, b, bandwidth=bw, scale=cfg.kad_scale)

            result["metrics"]["kad"] = {**_distance_block("kad", kad, x, y, cfg, 2), "bandwidth": bw,
                                        "scale": cfg.kad_scale}
    if "kl" in mset:
        result["metrics"].update(_kl(gen, ref, cfg, backend, be if need_emb else None, detector))
    if mset & {"clap", "order"}:
        result["metrics"].update(_text_metrics(gen, prompts, cfg, clap_backend, result["skipped"], detector))
    if detector is not None:
        result["detector"] = detector.describe()
        used = ("order" in mset or (bool(need_emb) and cfg.backend == DETECTOR_BACKEND)
                or ("kl" in mset and (cfg.classifier or cfg.backend) == DETECTOR_BACKEND))
        if not used:
            msg = (f"--detector {cfg.detector} was not used: it judges the order metric and is the "
                   f"{DETECTOR_BACKEND} classifier / backend, and none of those was asked for")
            warnings.warn(msg, stacklevel=2)
            result.setdefault("warnings", []).append(msg)
    return result


def _kl(gen: _Clips, ref: _Clips, cfg: ScoreConfig, backend: EmbeddingBackend | None,
        built: EmbeddingBackend | None = None, detector=None) -> dict:
    """KL block(s); ``built``: the embedding backend already made for FAD/KAD (reused when it classifies);
    ``detector``: the loaded ``--detector`` (the event-detector classifier then uses it)."""
    pairs = pair_by_stem([f"{n}" for n in gen.names], [f"{n}" for n in ref.names])
    if cfg.classifier:
        clf = get_backend(cfg.classifier, **_backend_kwargs(cfg.classifier, cfg.classifier_kwargs, detector))
    elif backend is not None and backend.n_classes:
        clf = backend
    elif built is not None and built.n_classes:
        clf = built
    else:
        clf = get_backend(cfg.backend, **_backend_kwargs(cfg.backend, cfg.backend_kwargs, detector))
    if not clf.n_classes:
        raise UserError(f"KL needs a classifier and backend {clf.name!r} is not one; pass --classifier "
                        "panns-cnn14 --classifier-weights Cnn14_mAP=0.431.pth (or --classifier builtin-events)")
    cache = _cache_for(clf, cfg, kind="logits")

    def logits(waves, sr):
        return list(clf.logits(waves, sr)[:, None, :])

    gl = np.concatenate(_run_backend(gen, clf, cache, cfg, logits, f"classifying generated ({clf.name})"))
    rl = np.concatenate(_run_backend(ref, clf, cache, cfg, logits, f"classifying reference ({clf.name})"))
    gi = [p[0] for p in pairs]
    ri = [p[1] for p in pairs]
    out = {"kl_softmax": {"value": kl_softmax(gl[gi], rl[ri]), "n_pairs": len(pairs), "classifier": clf.name,
                          "convention": "KL(ref||gen), softmax, summed over classes, mean over pairs (AudioLDM)"}}
    det = getattr(clf, "det", None)
    if det is not None:  # the event detector as the classifier: say which one
        out["kl_softmax"]["detector"] = det.describe()
    if clf.activation == "sigmoid":
        out["kl_bernoulli"] = {"value": kl_bernoulli(gl[gi], rl[ri]), "n_pairs": len(pairs), "classifier": clf.name,
                               "convention": "sum over classes of Bernoulli KL(ref||gen), mean over pairs"}
    return out


def _text_metrics(gen: _Clips, prompts, cfg: ScoreConfig, clap_backend, skipped: dict, detector=None) -> dict:

    if not prompts:
        raise UserError("the clap and order metrics need prompts: pass --prompts FILE (JSONL id/prompt or CSV)")
    missing = [n for n in gen.names if n not in prompts]
    if missing:
        raise UserError(f"{len(missing)} generated clips have no prompt: {', '.join(missing[:5])}"
                        f"{' ...' if len(missing) > 5 else ''} (add them to the prompts file)")
    unused = len(set(prompts) - set(gen.names))
    if unused:
        skipped["prompts without a generated clip"] = unused
    be = clap_backend or get_backend("clap", model=cfg.clap_model, device=cfg.device)
    texts = [prompts[n][0] for n in gen.names]
    negs = [prompts[n][1] for n in gen.names]
    cache = _cache_for(be, cfg)
    audio = np.concatenate([e.mean(axis=0, keepdims=True) for e in
                            _run_backend(gen, be, cache, cfg, be.embed, f"CLAP audio ({be.name})")])
    text_emb = be.embed_text(texts)
    out: dict = {}
    if "clap" in cfg.metrics:
        cs = clap_score(audio, text_emb)
        out["clap_score"] = {"value": cs["mean"], "std": cs["std"], "n": cs["n"], "model": be.cache_key()}
        out["clap_score_per_clip"] = dict(zip(gen.names, cs["per_clip"]))
    if "order" in cfg.metrics:
        idx, rev, skip = order_pairs(texts, negs)
        if idx:
            r = order_accuracy_clap(audio[idx], text_emb[idx], be.embed_text(rev))
        else:
            r = {"accuracy": None, "n": 0, "correct": 0, "margin_mean": None}
        out["order_clap"] = {"value": r["accuracy"], **{k: v for k, v in r.items() if k != "accuracy"},
                             "skipped": dict(skip)}
        # The detector knows only its own bank's events (the built-in bank's, or those of the --detector folder):
        # the prompts whose order parses over them are scored, the others counted as skipped.
        if detector is None:
            from eval_gen.detector import get_detector  # noqa: PLC0415 (loads torch; only the order metric needs it)

            detector = get_detector(cache_dir=cfg.cache_dir or None)
        waves = []
        for i in range(len(gen)):
            w, sr = gen.load(i)
            waves.append((w, sr))
        det_sr = {sr for _, sr in waves}
        res = {"accuracy": None, "n": 0, "correct": 0, "skipped": {}}
        per_clip: dict[str, bool] = {}  # clip name -> order right: pairs two systems' clips (eval_gen.stats)
        for sr in sorted(det_sr):
            sel = [i for i, (_, s) in enumerate(waves) if s == sr]
            r2 = order_accuracy_detector([waves[i][0] for i in sel], sr, [texts[i] for i in sel],
                                         cache_dir=cfg.cache_dir or None, progress=cfg.progress, detector=detector)
            per_clip.update({gen.names[i]: o for i, o in zip(sel, r2["outcomes"]) if o is not None})
            res["n"] += r2["n"]
            res["correct"] += r2["correct"]
            for k, v in r2["skipped"].items():
                res["skipped"][k] = res["skipped"].get(k, 0) + v
        res["accuracy"] = res["correct"] / res["n"] if res["n"] else None
        out["order_detector"] = {"value": res["accuracy"], "n": res["n"], "correct": res["correct"],
                                 "skipped": res["skipped"], "per_clip": dict(sorted(per_clip.items())),
                                 "detector": detector.describe()}
    return out


def score_folders(gen_dir: str | os.PathLike, ref_dir: str | os.PathLike,
                  prompts: str | os.PathLike | Mapping[str, str] | None = None,
                  config: ScoreConfig | None = None, backend: EmbeddingBackend | None = None, **overrides) -> dict:
    """Score the audio files of ``gen_dir`` against ``ref_dir`` (see :class:`ScoreConfig` for ``overrides``)."""
    cfg = config or ScoreConfig()
    for k, v in overrides.items():
        if not hasattr(cfg, k):
            raise UserError(f"unknown scoring option {k!r}")
        setattr(cfg, k, v)
    if isinstance(cfg.metrics, str):
        cfg.metrics = tuple(m.strip() for m in cfg.metrics.split(",") if m.strip())
    cfg.validate()  # before hashing folders or loading any model
    detector = load_chosen_detector(cfg)  # a bad --detector folder fails before any long work
    if prompts is not None and not isinstance(prompts, Mapping) and not Path(prompts).is_file():
        raise UserError(f"prompts file not found: {prompts} (JSONL id/prompt or CSV file,prompt)")
    if prompts is None and set(cfg.metrics) & {"clap", "order"}:
        raise UserError("the clap and order metrics need prompts: pass --prompts FILE (JSONL id/prompt or CSV)")

    for flag, name in (("--backend", cfg.backend), ("--classifier", cfg.classifier)):
        if name is not None and name not in available_backends() and (flag == "--classifier" or backend is None):
            raise UserError(f"{flag} {name!r} is unknown; choose one of {', '.join(available_backends())}")
    gen, _ = _folder_clips(gen_dir, "generated", cfg.progress)
    ref, _ = _folder_clips(ref_dir, "reference", cfg.progress)
    pr = _prompt_map(prompts)
    res = _score(gen, ref, pr, cfg, backend, detector)
    res["gen_dir"], res["ref_dir"] = str(gen_dir), str(ref_dir)
    return res


def score_arrays(gen: Sequence[np.ndarray], ref: Sequence[np.ndarray], sr: int,
                 prompts: Sequence[str] | None = None, backend: str | EmbeddingBackend = "mel-stats",
                 metrics: Sequence[str] = ("fad",), gen_names: Sequence[str] | None = None,
                 ref_names: Sequence[str] | None = None, **overrides) -> dict:
    """In-memory scoring (e.g. AudioLDM validation): ``gen``/``ref`` are lists of ``[T]`` arrays at ``sr``.

    ``prompts`` align with ``gen``. KL pairs by name: give ``gen_names``/``ref_names`` (default: indices).
    Nothing is cached (arrays have no file content to key by).
    """
    be = backend if isinstance(backend, EmbeddingBackend) else None
    cfg = ScoreConfig(backend=be.name if be else str(backend), metrics=tuple(metrics), cache_dir="",
                      progress=False)
    for k, v in overrides.items():
        if not hasattr(cfg, k):
            raise UserError(f"unknown scoring option {k!r}")
        setattr(cfg, k, v)
    g = _array_clips(gen, sr, "generated", gen_names)
    r = _array_clips(ref, sr, "reference", ref_names)
    pr = None
    if prompts is not None:
        if len(prompts) != len(gen):
            raise UserError(f"{len(prompts)} prompts for {len(gen)} generated clips; give one prompt per clip")
        pr = {n: (p, None) for n, p in zip(g.names, prompts)}
    return _score(g, r, pr, cfg, be)


def _prompt_map(prompts) -> dict[str, tuple[str, str | None]] | None:
    if prompts is None:
        return None
    if isinstance(prompts, Mapping):
        return {str(k): (v if isinstance(v, tuple) else (str(v), None)) for k, v in prompts.items()}

    return {k: (p.text, p.negative) for k, p in read_prompts(prompts).items()}
