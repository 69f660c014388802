"""KL divergence between per-clip class distributions of generated and reference clips.

Convention (AudioGen / AudioLDM evaluation, ``audioldm_eval.metrics.kl.calculate_kl``): the generated clip and
the reference clip with the same file stem form a pair; the classifier's logits of both are turned into
distributions and ``torch.nn.functional.kl_div((gen + 1e-6).log(), ref, reduction="sum") / n_pairs`` is
reported, i.e. **KL(ref ‖ gen)** summed over classes and averaged over pairs, with ``eps = 1e-6`` added to the
generated probabilities inside the log. :func:`kl_softmax` reproduces exactly that.

For sigmoid (multi-label) classifiers such as PANNs, audioldm_eval's "kl_sigmoid" applies the same formula to
sigmoid outputs, which is not a divergence (it ignores the "absent" side of each label and can be negative).
:func:`kl_bernoulli` is the proper one: the sum over classes of the KL between two Bernoulli variables,
``p log(p/q) + (1-p) log((1-p)/(1-q))``, with both probabilities clipped to ``[eps, 1-eps]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from basekit.errors import UserError

EPS = 1e-6


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _check(gen: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    g, r = np.asarray(gen, np.float64), np.asarray(ref, np.float64)
    if g.ndim != 2 or g.shape != r.shape:
        raise UserError(f"KL needs paired logits of equal shape [N, classes], got {g.shape} and {r.shape}")
    if g.shape[0] == 0:
        raise UserError("KL needs at least one generated/reference pair, got none")
    return g, r


def kl_softmax_per_clip(gen_logits: np.ndarray, ref_logits: np.ndarray) -> np.ndarray:
    """``[N]``: Σ_c p_ref log(p_ref / (p_gen + eps)) with softmax probabilities (AudioLDM convention)."""
    g, r = _check(gen_logits, ref_logits)
    p, q = _softmax(r), _softmax(g)
    # kl_div's target term: 0 · log 0 := 0 (torch uses xlogy); eps only inside the generated log.
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return (plogp - p * np.log(q + EPS)).sum(axis=1)


def kl_softmax(gen_logits: np.ndarray, ref_logits: np.ndarray) -> float:
    """Mean over pairs of :func:`kl_softmax_per_clip`."""
    return float(kl_softmax_per_clip(gen_logits, ref_logits).mean())


def kl_bernoulli_per_clip(gen_logits: np.ndarray, ref_logits: np.ndarray) -> np.ndarray:
    """``[N]``: Σ_c KL(Bernoulli(sigmoid(ref)) ‖ Bernoulli(sigmoid(gen)))."""
    g, r = _check(gen_logits, ref_logits)
    p = np.clip(1.0 / (1.0 + np.exp(-r)), EPS, 1 - EPS)
    q = np.clip(1.0 / (1.0 + np.exp(-g)), EPS, 1 - EPS)
    return (p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))).sum(axis=1)


def kl_bernoulli(gen_logits: np.ndarray, ref_logits: np.ndarray) -> float:
    return float(kl_bernoulli_per_clip(gen_logits, ref_logits).mean())


def pair_by_stem(gen_files: Sequence[Path], ref_files: Sequence[Path]) -> list[tuple[int, int]]:
    """Index pairs ``(i_gen, i_ref)`` matched by file stem; every file must have a partner.

    Raises one :class:`UserError` listing the unmatched stems of both sides (first few of each).
    """
    gs = {Path(p).stem: i for i, p in enumerate(gen_files)}
    rs = {Path(p).stem: i for i, p in enumerate(ref_files)}
    for name, files, d in (("generated", gen_files, gs), ("reference", ref_files, rs)):
        if len(d) != len(files):
            raise UserError(f"KL pairs clips by file stem, but the {name} folder has two files with the same stem")
    no_ref = sorted(set(gs) - set(rs))
    no_gen = sorted(set(rs) - set(gs))
    if no_ref or no_gen:
        def show(xs: list[str]) -> str:
            return ", ".join(xs[:5]) + (f" (+{len(xs) - 5} more)" if len(xs) > 5 else "")

        parts = []
        if no_ref:
            parts.append(f"{len(no_ref)} generated clips have no reference with the same name: {show(no_ref)}")
        if no_gen:
            parts.append(f"{len(no_gen)} references have no generated clip: {show(no_gen)}")
        raise UserError("KL needs generated and reference clips paired by file name; " + "; ".join(parts)
                        + " (rename the files, or drop kl from --metrics)")
    return [(gs[s], rs[s]) for s in sorted(gs)]
