"""Table-4 miniature: the embedded AudioLDM conditioned on the tiny T-CLAP vs on the tiny baseline CLAP.

The paper's Table 4 compares AudioLDM_L (LAION-CLAP conditioning) with AudioLDM_T (T-CLAP conditioning). Here
both shipped tiny models (``tiny-tclap``, ``tiny-baseline``, made by ``python -m conductor.recipes.audioldm``)
generate the same held-out ordered prompts ("<event A> followed by <event B>", event pairs x both orders) with
the same seeds, and are scored by:

* temporal-order accuracy by event-onset detection (``eval_gen.detector``: detected first onsets in the
  prompted order; a missed event counts as wrong), with a 95% Wilson interval;
* FAD and KAD (``eval_gen.score.score_arrays``, ``mel-stats`` backend) against held-out built-in-bank mix-ups;
* the CLAP score and CLAP order accuracy (judge: the tiny T-CLAP by default, which is also system 1's
  conditioner, so these two columns favour it; the detector column is the unbiased one);
* beside them the detector's own order accuracy on the real held-out mix-ups (the judge's ceiling), and on the
  same mix-ups passed through the first model's own VAE and vocoder (``AudioLDMComponents.resynthesize``): the
  ceiling of this generation path, i.e. what a perfect UNet could reach with this VAE and vocoder, with its FAD.

Generation clamps predicted latents to the models' training range when they record one (the pipeline's
default); ``--no-clip-latents`` measures without.

    python benchmarks/ldm_table4.py            # 100 prompts x 4 seeds per model
    python benchmarks/ldm_table4.py --quick    # 20 prompts x 1 seed
    python benchmarks/ldm_table4.py --prompts 100 --seeds 1 --scheduler ddim --steps 200   # DDIM 200 (time and FAD)
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MODELS = ("tiny-tclap", "tiny-baseline")


def heldout_prompts(n: int, seed: int = 0) -> list[tuple[str, list[str]]]:
    """``n`` ordered prompts over the built-in bank: ``n // 2`` event pairs, each in both orders."""
    from tclap.synth import EVENT_CLASSES, event_phrase

    pairs = list(itertools.combinations(EVENT_CLASSES, 2))
    rng = np.random.default_rng(seed)
    chosen = [pairs[i] for i in rng.permutation(len(pairs))[: max(1, n // 2)]]
    out = []
    for a, b in chosen:
        for x, y in ((a, b), (b, a)):
            out.append((f"{event_phrase(x)} followed by {event_phrase(y)}", [x, y]))
    return out[:n]


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (c - h, c + h)


def reference_mixups(work: Path, n: int, seconds: float) -> tuple[list[np.ndarray], list[list[str]]]:
    """Held-out 2-event mix-ups (bank instances never used in training) and their event orders."""
    from basekit.audio import load_audio
    from tclap.data.manifest import read_manifest
    from tclap.data.mixup import MixupConfig, build_mixups

    cfg = MixupConfig(bank="builtin", seconds=seconds, sr=16000, split="heldout", seed=123, min_events=2,
                      max_events=2, overlap_prob=0.0)
    rep = build_mixups(cfg, work / "ref", n, quiet=True)
    items = read_manifest(rep.manifest)
    waves = [load_audio(it["audio"], sr=16000) for it in items]
    orders = [[e["label"] for e in sorted(it["events"], key=lambda e: e["onset"])] for it in items]
    return waves, orders


def resynthesis_ceiling(name: str, ref: list[np.ndarray], orders: list[list[str]]) -> dict:
    """Detector order accuracy and FAD of the real mix-ups after the model's VAE + vocoder."""
    from audioldm_cond.components import load_components
    from eval_gen.detector import detect_order, order_matches
    from eval_gen.score import score_arrays

    comps = load_components(name)
    res = comps.resynthesize(ref)
    correct = sum(order_matches(detect_order(w, comps.sample_rate), o) for w, o in zip(res, orders))
    fad = score_arrays(res, ref, comps.sample_rate, backend="mel-stats", metrics=("fad",))["metrics"]["fad"]["value"]
    return {"correct": int(correct), "n": len(ref), "fad": fad}


def evaluate_model(name: str, prompts, seeds: list[int], ref: list[np.ndarray], steps: int, guidance: float,
                   batch: int, judge: str, clip_latents: bool | None = None, scheduler: str = "dpm",
                   candidates: int = 1) -> dict:
    from audioldm_cond.components import load_components, make_scheduler
    from audioldm_cond.pipeline import TemporalAudioLDMPipeline
    from eval_gen.detector import detect_order, order_matches
    from eval_gen.score import score_arrays

    comps = load_components(name)
    comps.scheduler = make_scheduler(scheduler, dict(comps.scheduler.config))
    pipe = TemporalAudioLDMPipeline(comps, progress=False)
    texts = [p for p, _ in prompts]
    t0 = time.perf_counter()
    gen, gen_prompts, orders = [], [], []
    for s in seeds:
        out = pipe(texts, seconds=comps.config.max_seconds, num_inference_steps=steps, guidance_scale=guidance,
                   seed=s * 100_000, batch_size=batch, clip_latents=clip_latents, num_candidates=candidates)
        # the best candidate of each prompt by the model's own CLAP score (all of them when candidates == 1)
        gen += [np.asarray(out.audios[j], dtype=np.float32) for j in out.best()]
        gen_prompts += texts
        orders += [o for _, o in prompts]
    wall = time.perf_counter() - t0
    sr = comps.sample_rate
    correct = sum(order_matches(detect_order(w, sr), o) for w, o in zip(gen, orders))
    m = score_arrays(gen, ref, sr, prompts=gen_prompts, backend="mel-stats",
                     metrics=("fad", "kad", "clap", "order"), clap_model=judge)["metrics"]
    return {"name": name, "n": len(gen), "correct": int(correct), "acc": correct / len(gen),
            "ci": wilson(int(correct), len(gen)), "fad": m["fad"]["value"], "kad": m["kad"]["value"],
            "clap": m["clap_score"]["value"], "order_clap": m["order_clap"]["value"],
            "sec_per_clip": wall / len(gen)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="20 prompts x 1 seed")
    p.add_argument("--prompts", type=int, default=None)
    p.add_argument("--seeds", type=int, default=None)
    p.add_argument("--steps", type=int, default=20, help="sampler steps")
    p.add_argument("--scheduler", default="dpm", choices=("dpm", "ddim"),
                   help="DPM-Solver++ (default) or DDIM, e.g. --scheduler ddim --steps 200 for the FAD comparison")
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--models", default=",".join(MODELS),
                   help="two AudioLDMs (shipped names or directories): T-CLAP-conditioned first, baseline second")
    p.add_argument("--judge", default="tiny-tclap", help="CLAP for the CLAP score / CLAP order columns")
    p.add_argument("--work", default=None, help="where the held-out reference mix-ups go (default: a temp dir)")
    p.add_argument("--no-clip-latents", action="store_true", help="generate without clamping predicted latents")
    p.add_argument("--candidates", type=int, default=1,
                   help="clips generated per prompt; the one the model's own CLAP scores best is evaluated "
                        "(default 1: no re-ranking)")
    args = p.parse_args(argv)
    n_prompts = args.prompts or (20 if args.quick else 100)
    n_seeds = args.seeds or (1 if args.quick else 4)
    prompts = heldout_prompts(n_prompts)
    from eval_gen.detector import detect_order, order_matches
    from basekit.errors import UserError
    from tclap.models.factory import load_clap

    try:  # a wrong --judge should fail now, not after every model has generated its clips
        load_clap(args.judge)
    except UserError as e:
        print(f"ldm_table4: --judge: {e}", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        ref, ref_orders = reference_mixups(work, n_prompts, seconds=4.0)
        ceiling = sum(order_matches(detect_order(w, 16000), o) for w, o in zip(ref, ref_orders))
        models = [m.strip() for m in args.models.split(",") if m.strip()]
        clip = False if args.no_clip_latents else None
        rows = [evaluate_model(m, prompts, list(range(n_seeds)), ref, args.steps, args.guidance, args.batch,
                               args.judge, clip, args.scheduler, args.candidates)
                for m in models]
        resyn = resynthesis_ceiling(models[0], ref, ref_orders) if models else None
    print(f"\n### Table-4 miniature: {n_prompts} held-out ordered prompts x {n_seeds} seed(s), "
          f"{'DPM-Solver++' if args.scheduler == 'dpm' else 'DDIM'} {args.steps} steps, guidance {args.guidance:g}, 4 s clips, latent clamp "
          f"{'off' if args.no_clip_latents else 'on where recorded'}"
          + (f", best of {args.candidates} candidates by each model's own CLAP score" if args.candidates > 1 else "")
          + "\n")
    print("| system | order acc. (detector) | 95% CI | FAD (mel-stats) | KAD | CLAP score | CLAP order acc. | s/clip |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        lo, hi = r["ci"]
        print(f"| AudioLDM conditioned on {r['name']} | {100 * r['acc']:.1f}% ({r['correct']}/{r['n']}) | "
              f"{100 * lo:.1f}-{100 * hi:.1f}% | {r['fad']:.3f} | {r['kad']:.4f} | {r['clap']:.3f} | "
              f"{100 * (r['order_clap'] or 0):.1f}% | {r['sec_per_clip']:.2f} |")
    lo, hi = wilson(ceiling, len(ref))
    print(f"| real held-out mix-ups (detector ceiling) | {100 * ceiling / len(ref):.1f}% ({ceiling}/{len(ref)}) | "
          f"{100 * lo:.1f}-{100 * hi:.1f}% | - | - | - | - | - |")
    if resyn is not None:
        lo, hi = wilson(resyn["correct"], resyn["n"])
        print(f"| real mix-ups through {models[0]}'s VAE + vocoder (generation-path ceiling) | "
              f"{100 * resyn['correct'] / resyn['n']:.1f}% ({resyn['correct']}/{resyn['n']}) | "
              f"{100 * lo:.1f}-{100 * hi:.1f}% | {resyn['fad']:.3f} | - | - | - | - |")
    if len(rows) < 2:
        return 0
    gap = 100 * (rows[0]["acc"] - rows[1]["acc"])
    print(f"\nT-CLAP minus baseline: {gap:+.1f} points (targets: T-CLAP >= 75% and >= +15 points)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
