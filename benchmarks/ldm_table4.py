"""Table-4 miniature: the embedded AudioLDM conditioned on the tiny T-CLAP vs on the tiny baseline CLAP.

The paper's Table 4 compares AudioLDM_L (LAION-CLAP conditioning) with AudioLDM_T (T-CLAP conditioning). Here
both shipped tiny models (``tiny-tclap``, ``tiny-baseline``, made by ``python -m conductor.recipes.audioldm``)
generate the same held-out ordered prompts ("<event A> followed by <event B>", event pairs x both orders) with
the same seeds, and are scored by:

* temporal-order accuracy by event-onset detection (``eval_gen.detector``: detected first onsets in the
  prompted order; a missed event counts as wrong), with a 95% Wilson interval;
* the **paired order claim**: clip (seed s, prompt j) of one system against clip (s, j) of the other, McNemar's
  exact test on the discordant pairs (``eval_gen.stats.paired_order_claim``): "yes" only at p < 0.01 over at
  least 400 pairs with the first system ahead, otherwise "not shown" and why;
* FAD and KAD (``eval_gen.score.score_arrays``, ``mel-stats`` backend) against held-out built-in-bank mix-ups;
* the CLAP score and CLAP order accuracy (judge: the tiny T-CLAP by default, which is also system 1's
  conditioner, so these two columns favour it; the detector column is the unbiased one).

Beside them, on a second held-out set independent of the FAD reference set (``--ceiling-clips``, at least 400):

* the **detector ceiling**: the judge's order accuracy on those real clips, with its Wilson interval;
* the **FAD floors, measured the same way as the generated clips** (as many clips as each system generated,
  none of them in the reference set): the real clips themselves (FAD's own sampling floor at these sizes), and
  the same clips through the first model's VAE and vocoder (``AudioLDMComponents.resynthesize``: what a perfect
  UNet could reach on this generation path), with the detector's order accuracy on those (the generation-path
  ceiling). FAD of a set against itself leaves out the sampling noise a generated set pays for, so the older row
  of the reference clips through VAE + vocoder against themselves is kept but labelled as such.

Generation clamps predicted latents to the models' training range when they record one (the pipeline's
default); ``--no-clip-latents`` measures without.

    python benchmarks/ldm_table4.py            # 100 prompts x 4 seeds per model (400 pairs)
    python benchmarks/ldm_table4.py --quick    # 20 prompts x 1 seed
    python benchmarks/ldm_table4.py --prompts 100 --seeds 1 --scheduler ddim --steps 200   # DDIM 200 (time and FAD)
    python benchmarks/ldm_table4.py --json table4.json   # every number also as JSON
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MODELS = ("tiny-tclap", "tiny-baseline")
REF_SEED = 123  # the FAD reference set (as in every earlier run of this benchmark)
INDEPENDENT_SEED = 2025  # the ceiling / floor set: held-out clips that are not in the reference set


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


def reference_mixups(work: Path, n: int, seconds: float, seed: int = REF_SEED,
                     name: str = "ref") -> tuple[list[np.ndarray], list[list[str]]]:
    """Held-out 2-event mix-ups (bank instances never used in training) and their event orders."""
    from basekit.audio import load_audio
    from tclap.data.manifest import read_manifest
    from tclap.data.mixup import MixupConfig, build_mixups

    cfg = MixupConfig(bank="builtin", seconds=seconds, sr=16000, split="heldout", seed=seed, min_events=2,
                      max_events=2, overlap_prob=0.0)
    rep = build_mixups(cfg, work / name, n, quiet=True)
    items = read_manifest(rep.manifest)
    waves = [load_audio(it["audio"], sr=16000) for it in items]
    orders = [[e["label"] for e in sorted(it["events"], key=lambda e: e["onset"])] for it in items]
    return waves, orders


def _share(outcomes: list[bool]) -> dict:
    from eval_gen.stats import wilson_interval

    k, n = int(sum(outcomes)), len(outcomes)
    return {"correct": k, "n": n, "acc": k / n if n else None, "ci": list(wilson_interval(k, n))}


def _fad(gen: list[np.ndarray], ref: list[np.ndarray], sr: int) -> float:
    from eval_gen.score import score_arrays

    return score_arrays(gen, ref, sr, backend="mel-stats", metrics=("fad",), n_boot=0)["metrics"]["fad"]["value"]


def floors(name: str, independent: list[np.ndarray], orders: list[list[str]], ref: list[np.ndarray]) -> dict:
    """FAD floors of ``independent`` real clips (none in ``ref``) and of the same clips through ``name``'s VAE +
    vocoder, with the detector's order accuracy on the latter; and the older same-clips row (ref through the path
    against ref itself)."""
    from audioldm_cond.components import load_components
    from eval_gen.detector import get_detector, order_matches

    det = get_detector()
    comps = load_components(name)
    sr = comps.sample_rate
    res = comps.resynthesize(independent)
    res_ref = comps.resynthesize(ref)
    return {"n": len(independent), "real_fad": _fad(independent, ref, sr),
            "resynth": {**_share([order_matches(det.detect_order(w, sr), o) for w, o in zip(res, orders)]),
                        "fad": _fad(res, ref, sr)},
            "resynth_same_clips_fad": _fad(res_ref, ref, sr)}


def evaluate_model(name: str, prompts, seeds: list[int], ref: list[np.ndarray], steps: int, guidance: float,
                   batch: int, judge: str, clip_latents: bool | None = None, scheduler: str = "dpm",
                   candidates: int = 1) -> dict:
    """Generate every prompt with every seed and score; ``outcomes`` maps ``"seed<s>/p<j>"`` -> order right."""
    from audioldm_cond.components import load_components, make_scheduler
    from audioldm_cond.pipeline import TemporalAudioLDMPipeline
    from eval_gen.detector import get_detector, order_matches
    from eval_gen.score import score_arrays

    comps = load_components(name)
    comps.scheduler = make_scheduler(scheduler, dict(comps.scheduler.config))
    pipe = TemporalAudioLDMPipeline(comps, progress=False)
    texts = [p for p, _ in prompts]
    t0 = time.perf_counter()
    gen, gen_prompts, orders, keys = [], [], [], []
    for s in seeds:
        out = pipe(texts, seconds=comps.config.max_seconds, num_inference_steps=steps, guidance_scale=guidance,
                   seed=s * 100_000, batch_size=batch, clip_latents=clip_latents, num_candidates=candidates)
        # the best candidate of each prompt by the model's own CLAP score (all of them when candidates == 1)
        gen += [np.asarray(out.audios[j], dtype=np.float32) for j in out.best()]
        gen_prompts += texts
        orders += [o for _, o in prompts]
        keys += [f"seed{s}/p{j:03d}" for j in range(len(prompts))]
    wall = time.perf_counter() - t0
    sr = comps.sample_rate
    det = get_detector()
    outcomes = {k: bool(order_matches(det.detect_order(w, sr), o)) for k, w, o in zip(keys, gen, orders)}
    m = score_arrays(gen, ref, sr, prompts=gen_prompts, backend="mel-stats",
                     metrics=("fad", "kad", "clap", "order"), clap_model=judge, n_boot=0)["metrics"]
    return {"name": name, **_share(list(outcomes.values())), "outcomes": outcomes,
            "fad": m["fad"]["value"], "kad": m["kad"]["value"], "clap": m["clap_score"]["value"],
            "order_clap": m["order_clap"]["value"], "sec_per_clip": wall / len(gen)}


def _pct(r: dict) -> tuple[str, str]:
    lo, hi = r["ci"]
    return f"{100 * r['acc']:.1f}% ({r['correct']}/{r['n']})", f"{100 * lo:.1f}-{100 * hi:.1f}%"


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
    p.add_argument("--ceiling-clips", type=int, default=400,
                   help="real held-out clips for the detector ceiling (default 400; at least the generated count "
                        "is used, so the FAD floors have as many clips as each system)")
    p.add_argument("--alpha", type=float, default=0.01, help="significance level of the paired order claim")
    p.add_argument("--min-pairs", type=int, default=400, help="pairs the order claim needs (default 400)")
    p.add_argument("--json", default=None, help="also write every number (and the per-clip outcomes) here")
    args = p.parse_args(argv)
    n_prompts = args.prompts or (20 if args.quick else 100)
    n_seeds = args.seeds or (1 if args.quick else 4)
    prompts = heldout_prompts(n_prompts)
    from basekit.errors import UserError
    from eval_gen.detector import get_detector, order_matches
    from eval_gen.stats import paired_order_claim
    from tclap.models.factory import load_clap

    try:  # a wrong --judge should fail now, not after every model has generated its clips
        load_clap(args.judge)
    except UserError as e:
        print(f"ldm_table4: --judge: {e}", file=sys.stderr)
        return 2
    if args.ceiling_clips < 1 or args.min_pairs < 1 or not 0 < args.alpha < 1:
        print("ldm_table4: --ceiling-clips and --min-pairs must be >= 1 and --alpha in (0, 1)", file=sys.stderr)
        return 2

    n_gen = len(prompts) * n_seeds
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        ref, _ = reference_mixups(work, n_prompts, seconds=4.0)
        indep, indep_orders = reference_mixups(work, max(args.ceiling_clips, n_gen), seconds=4.0,
                                               seed=INDEPENDENT_SEED, name="independent")
        det = get_detector()
        ceiling = _share([order_matches(det.detect_order(w, 16000), o) for w, o in zip(indep, indep_orders)])
        models = [m.strip() for m in args.models.split(",") if m.strip()]
        clip = False if args.no_clip_latents else None
        rows = [evaluate_model(m, prompts, list(range(n_seeds)), ref, args.steps, args.guidance, args.batch,
                               args.judge, clip, args.scheduler, args.candidates)
                for m in models]
        floor = floors(models[0], indep[:n_gen], indep_orders[:n_gen], ref) if models else None
    print(f"\n### Table-4 miniature: {n_prompts} held-out ordered prompts x {n_seeds} seed(s), "
          f"{'DPM-Solver++' if args.scheduler == 'dpm' else 'DDIM'} {args.steps} steps, guidance {args.guidance:g}, "
          f"4 s clips, latent clamp {'off' if args.no_clip_latents else 'on where recorded'}"
          + (f", best of {args.candidates} candidates by each model's own CLAP score" if args.candidates > 1 else "")
          + f"; FAD against {len(ref)} held-out reference mix-ups\n")
    print("| system | order acc. (detector) | 95% Wilson CI | FAD (mel-stats) | KAD | CLAP score | CLAP order acc. "
          "| s/clip |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        acc, ci = _pct(r)
        print(f"| AudioLDM conditioned on {r['name']} | {acc} | {ci} | {r['fad']:.3f} | {r['kad']:.4f} | "
              f"{r['clap']:.3f} | {100 * (r['order_clap'] or 0):.1f}% | {r['sec_per_clip']:.2f} |")
    acc, ci = _pct(ceiling)
    print(f"| real held-out mix-ups, {ceiling['n']} not in the reference set (detector ceiling) | {acc} | {ci} | "
          "- | - | - | - | - |")
    if floor is not None:
        print(f"| the first {floor['n']} of them (as many as each system generated): FAD sampling floor | - | - | "
              f"{floor['real_fad']:.3f} | - | - | - | - |")
        acc, ci = _pct(floor["resynth"])
        print(f"| the same {floor['n']} through {models[0]}'s VAE + vocoder (generation-path ceiling and FAD floor) | "
              f"{acc} | {ci} | {floor['resynth']['fad']:.3f} | - | - | - | - |")
        print(f"| the {len(ref)} reference clips through the same VAE + vocoder, against themselves (no sampling "
              f"noise: below a fair floor) | - | - | {floor['resynth_same_clips_fad']:.3f} | - | - | - | - |")
    claim = None
    if len(rows) >= 2:
        claim = paired_order_claim(rows[0]["outcomes"], rows[1]["outcomes"], alpha=args.alpha,
                                   min_pairs=args.min_pairs)
        m = claim["mcnemar"]
        gap = 100 * (rows[0]["acc"] - rows[1]["acc"])
        print(f"\n{rows[0]['name']} minus {rows[1]['name']}: {gap:+.1f} points on the detector's order accuracy.")
        print(f"Paired order claim ({rows[0]['name']} above {rows[1]['name']}, clips paired by seed and prompt): "
              f"**{claim['verdict']}** ({claim['reason']}). Exact McNemar test over {claim['n_pairs']} pairs: "
              f"p = {claim['p_value']:.3g}; {rows[0]['name']} alone right on {m['only_a']}, {rows[1]['name']} alone "
              f"right on {m['only_b']}, both on {m['both']}, neither on {m['neither']}.")
    if floor is not None and rows:
        print(f"FAD over the VAE + vocoder floor measured the same way: "
              + ", ".join(f"{r['name']} {r['fad'] / floor['resynth']['fad']:.2f}x" for r in rows) + ".")
    if args.json:
        from basekit.atomic import atomic_write_text

        out = {"settings": {**vars(args), "n_prompts": n_prompts, "n_seeds": n_seeds, "ref_seed": REF_SEED,
                            "independent_seed": INDEPENDENT_SEED, "n_ref": len(ref)},
               "systems": rows, "detector_ceiling": ceiling, "floors": floor, "order_claim": claim}
        atomic_write_text(args.json, json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
