"""How much order a CLAP's text embedding carries: the cosine of each prompt and its order-swapped twin.

For every held-out item that has an order-swapped negative caption (``"A knock followed by a beep"`` /
``"A beep followed by a knock"``), embed both captions with the model's text tower (projected, L2-normalised,
as everywhere in the toolkit) and take their cosine. A CLAP that ignores order gives ~1 (the two captions name
the same events); the lower the mean, the more the embedding says which event comes first. This is the signal
an AudioLDM conditioned on the model can follow (docs/results.md).

    python benchmarks/order_cosine.py --models tiny-baseline,tiny-tclap [--n 200] [--data MANIFEST]

``--data builtin-heldout`` (default) is the ``tclap evaluate`` held-out set of ``--n`` two- and three-event
mix-ups of held-out bank instances (built into ``--cache``, deterministic); any manifest with
``negative_captions`` works too (each item's first caption against its first negative caption). Prints a
Markdown table: pairs, mean cosine with a 95% bootstrap interval of the mean, and the lowest cosine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from basekit.errors import UserError, cli_entry


def caption_pairs(data: str, n: int, cache: Path) -> list[tuple[str, str]]:
    """``[(caption, order-swapped caption)]`` of the items of ``data`` that have a negative caption."""
    if data == "builtin-heldout":
        from tclap.evaluation.runner import EvalConfig, builtin_heldout  # noqa: PLC0415

        items, _ = builtin_heldout(cache, seconds=4.0, sr=16000, cfg=EvalConfig(heldout_mixes=n))
    else:
        from tclap.data.manifest import read_manifest  # noqa: PLC0415

        if not Path(data).is_file():
            raise UserError(f"--data {data}: no such manifest (give a JSON Lines manifest or builtin-heldout)")
        items = read_manifest(data)
    pairs = [(it["captions"][0], it["negative_captions"][0]) for it in items
             if it.get("captions") and it.get("negative_captions")]
    if not pairs:
        raise UserError(f"--data {data}: no item has a negative caption; give a manifest with negative_captions")
    return pairs


def pair_cosines(text_a: np.ndarray, text_b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two ``[N, D]`` embedding arrays -> ``[N]`` (re-normalised, so any scale works)."""
    a = text_a / np.linalg.norm(text_a, axis=1, keepdims=True)
    b = text_b / np.linalg.norm(text_b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def bootstrap_ci(values: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean of ``values`` ``[N]``."""
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def measure(model: str, pairs: list[tuple[str, str]]) -> dict:
    from tclap.models import load_clap  # noqa: PLC0415

    bundle = load_clap(model)
    a = bundle.embed_text([p for p, _ in pairs]).numpy().astype(np.float64)
    b = bundle.embed_text([q for _, q in pairs]).numpy().astype(np.float64)
    cos = pair_cosines(a, b)
    lo, hi = bootstrap_ci(cos)
    return {"model": model, "pairs": len(cos), "mean": float(cos.mean()), "ci": (lo, hi), "min": float(cos.min())}


def table(rows: Sequence[dict], data: str) -> str:
    lines = [f"| model | pairs ({data}) | mean cosine, prompt vs order-swapped prompt (95% CI) | lowest |",
             "|---|---:|---|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['pairs']} | {r['mean']:.3f} ({r['ci'][0]:.3f}-{r['ci'][1]:.3f}) "
                     f"| {r['min']:.3f} |")
    return "\n".join(lines)


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/order_cosine.py", description=__doc__.splitlines()[0])
    p.add_argument("--models", default="tiny-baseline,tiny-tclap",
                   help="comma-separated CLAPs (shipped names, ClapModel directories, LAION .pt files)")
    p.add_argument("--data", default="builtin-heldout", help="builtin-heldout (default) or a manifest path")
    p.add_argument("--n", type=int, default=200, help="held-out mix-ups of builtin-heldout (default 200)")
    p.add_argument("--cache", default="runs/order_cosine", help="where builtin-heldout is built (reused)")
    a = p.parse_args(argv)
    models = [m.strip() for m in a.models.split(",") if m.strip()]
    if not models:
        raise UserError("--models is empty; name at least one CLAP, e.g. tiny-tclap")
    if a.n < 2:
        raise UserError(f"--n {a.n}: give 2 or more held-out mix-ups")
    pairs = caption_pairs(a.data, a.n, Path(a.cache))
    print(table([measure(m, pairs) for m in models], a.data if a.data != "builtin-heldout" else f"builtin-heldout, n={a.n}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
