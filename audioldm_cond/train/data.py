"""Training data for ``audioldm-cond train``: manifests, cached mels / latents / embeddings, batch order.

Everything the frozen parts of the model compute (log-mels, VAE posteriors, CLAP embeddings) is computed
once and cached on disk, so a CPU training step only runs the trainable network. Caches are written in
chunks (each chunk atomically), so an interrupted caching pass resumes where it stopped, and every cache
is keyed by a hash of what it was computed from (file sizes and times, front-end settings, weights),
so a changed input is never answered from a stale cache.

The batch order is a pure function of ``(seed, micro_step)`` (:func:`batch_indices`): a resumed run
draws exactly the batches an uninterrupted one would have drawn.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from basekit.audio import load_audio, pad_or_crop
from basekit.errors import UserError
from tclap.data.manifest import read_manifest

CHUNK = 128


@dataclass
class ClipSet:
    """The clips of one manifest, as the trainer uses them.

    Attributes:
        ids: item ids, ``[N]``.
        audio: absolute audio paths, ``[N]``.
        captions: the positive captions of each item (may be empty lists for audio-only items).
        manifest: the manifest path (for messages).
    """

    ids: list[str]
    audio: list[Path]
    captions: list[list[str]]
    manifest: Path

    def __len__(self) -> int:
        return len(self.ids)


def read_clip_set(path: str | os.PathLike, need_captions: bool = False) -> ClipSet:
    """Read a JSON Lines manifest (``tclap.data.manifest``) and check that every audio file exists.

    Raises:
        UserError: the manifest is missing, empty or malformed (``read_manifest``'s messages), audio
            files are missing (all are counted; the first is named), or captions are needed and absent.
    """
    p = Path(path)
    items = read_manifest(p)
    missing = [(it["id"], Path(it["audio"])) for it in items if not Path(it["audio"]).is_file()]
    if missing:
        first_id, first = missing[0]
        raise UserError(f"manifest {p}: {len(missing)} of {len(items)} audio files are missing, first "
                        f"{first} (item {first_id!r}); fix the paths or rebuild the manifest")
    captions = [[c for c in it.get("captions", []) if isinstance(c, str) and c.strip()] for it in items]
    if need_captions:
        bare = [it["id"] for it, caps in zip(items, captions) if not caps]
        if bare:
            raise UserError(f"manifest {p}: {len(bare)} item(s) have no caption, first {bare[0]!r} (text "
                            "conditioning needs captions; add them or use --cond-source audio)")
    return ClipSet(ids=[str(it["id"]) for it in items], audio=[Path(it["audio"]) for it in items],
                   captions=captions, manifest=p)


def batch_indices(n: int, batch_size: int, seed: int, micro_step: int) -> list[int]:
    """Indices of the batch drawn at ``micro_step``: epochs of seeded permutations, a function of its args.

    Sample position ``k = micro_step * batch_size + j`` falls in epoch ``k // n`` whose order is
    ``randperm(n)`` seeded by ``(seed, epoch)``; so batches run through the data without repeats inside
    an epoch, and a resumed run needs no saved sampler state.
    """
    out: list[int] = []
    start = micro_step * batch_size
    perm_cache: dict[int, torch.Tensor] = {}
    for k in range(start, start + batch_size):
        epoch, pos = divmod(k, n)
        if epoch not in perm_cache:
            g = torch.Generator().manual_seed(_mix(seed, epoch, 0x5EED))
            perm_cache[epoch] = torch.randperm(n, generator=g)
        out.append(int(perm_cache[epoch][pos]))
    return out


def step_generator(seed: int, micro_step: int, stream: int) -> torch.Generator:
    """A CPU generator for the randomness of one micro step (noise, timesteps, dropout, posterior)."""
    return torch.Generator().manual_seed(_mix(seed, micro_step, stream))


def _mix(*xs: int) -> int:
    h = hashlib.blake2b(repr(xs).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & ((1 << 63) - 1)


# ----------------------------------------------------------------------------------------------- caching
def files_key(clips: ClipSet, *extra: object) -> str:
    """A content key for a cache computed from ``clips``: paths, sizes, mtimes and ``extra`` settings."""
    h = hashlib.sha1()
    for a in clips.audio:
        st = a.stat()
        h.update(f"{a}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    h.update(repr(extra).encode())
    return h.hexdigest()[:16]


def module_key(*modules: torch.nn.Module) -> str:
    """A key for the weights of frozen modules (so a retrained VAE or CLAP never reuses old caches)."""
    h = hashlib.sha1()
    for m in modules:
        for name, t in sorted(m.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def cached_chunks(
    cache: Path, n: int, compute: Callable[[Sequence[int]], dict[str, torch.Tensor]],
    desc: str, quiet: bool = False, chunk: int = CHUNK,
) -> dict[str, torch.Tensor]:
    """Compute ``compute(indices)`` chunk by chunk into ``cache/`` (each chunk atomic) and concatenate.

    A chunk already on disk is loaded, not recomputed: an interrupted pass resumes. Returns tensors
    concatenated along dim 0, ``[n, ...]``.
    """
    cache.mkdir(parents=True, exist_ok=True)
    parts: list[dict[str, torch.Tensor]] = []
    starts = range(0, n, chunk)
    for s in tqdm(starts, desc=desc, disable=quiet, leave=False):
        f = cache / f"chunk-{s:08d}.pt"
        if f.is_file():
            parts.append(torch.load(f, map_location="cpu", weights_only=True))
            continue
        part = compute(list(range(s, min(n, s + chunk))))
        tmp = f.with_name(f.name + f".tmp{os.getpid()}")
        torch.save(part, tmp)
        os.replace(tmp, f)
        parts.append(part)
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def load_waves(clips: ClipSet, indices: Sequence[int], sr: int, n_samples: int) -> torch.Tensor:
    """Load clips at ``sr``, zero-pad at the end (or centre-crop) each to ``n_samples``. Returns ``[B, T]``."""
    out = np.zeros((len(indices), n_samples), dtype=np.float32)
    for row, i in enumerate(indices):
        wav = load_audio(clips.audio[i], sr=sr)
        out[row] = pad_or_crop(wav, n_samples, mode="pad")
    return torch.from_numpy(out)


def clip_samples(clips: ClipSet, sr: int, seconds: float | None) -> int:
    """Samples per clip: ``seconds * sr``, or the length of the first clip when ``seconds`` is None."""
    if seconds is not None:
        return int(round(seconds * sr))
    return int(load_audio(clips.audio[0], sr=sr).shape[-1])
