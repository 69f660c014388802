"""Training throughput: our T-CLAP step vs a straightforward transformers ``ClapModel`` loop.

Both train the same ``tiny`` CLAP (same init, same batch size, same built-in mix-ups, L_c + 0.5·L_t) for
a few optimizer steps on the same threads, in the same run:

* ``transformers loop`` (the baseline): per batch, ``ClapFeatureExtractor`` (numpy) turns the in-memory
  waveforms into log-mels, the tokenizer and ``ClapModel.forward(return_loss=True)`` give L_c, a second
  ``get_text_features`` forward embeds the negative captions for L_t, then backward and an AdamW step;
* ``tclap.train`` (ours): :func:`tclap.train.trainer.train` as ``tclap train`` runs it: log-mels computed
  once and cached (clips no longer than the model window need no random crop), ONE text forward over
  positive + negative captions, :class:`tclap.losses.TClapLoss`. Its samples/s is the trainer's own
  per-step timing (``metrics.jsonl``'s ``samples_per_s``); the one-off feature cache is reported apart.

Goal: ours >= 2x the baseline's samples/s. Prints a Markdown table. ``--quick`` runs in < 90 s on 2 cores.

    OMP_NUM_THREADS=1 python benchmarks/bench_train.py --quick
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def _ours(manifest: Path, out: Path, batch: int, steps: int, warmup: int, lambda_t: float) -> dict:
    from tclap.train.config import preset
    from tclap.train.trainer import train

    cfg = preset("tiny")
    cfg.steps, cfg.data.batch_size, cfg.loss.lambda_t = warmup + steps, batch, lambda_t
    cfg.checkpoint_every = cfg.steps  # one checkpoint at the end, outside the timed steps' records
    rates: list[float] = []
    t0 = time.perf_counter()
    first_step_at: list[float] = []

    def on_step(step: int, rec: dict) -> None:
        if step == 1:
            first_step_at.append(time.perf_counter())
        if step > warmup:
            rates.append(rec["samples_per_s"])

    train(cfg, [str(manifest)], out, quiet=True, export=False, step_callback=on_step)
    # time before the first step finished minus that step's own time ~= model load + feature cache
    setup = first_step_at[0] - t0 - batch / max(rates[0], 1e-9) if rates else float("nan")
    return {"samples_per_s": statistics.median(rates), "setup_s": setup}


def _baseline(manifest: Path, batch: int, steps: int, warmup: int, lambda_t: float, seed: int = 0) -> dict:
    """The straightforward loop; returns median samples/s and the median share of time in feature extraction."""
    from tclap.audio import load_audio
    from tclap.data.manifest import read_manifest
    from tclap.models import load_clap
    from tclap.models.configs import FrontEndConfig
    from tclap.models.factory import make_feature_extractor

    bundle = load_clap("tiny")
    model, tok = bundle.model, bundle.tokenizer
    fe = make_feature_extractor(FrontEndConfig(**bundle.frontend.to_dict()))
    sr = bundle.sample_rate
    items = [it for it in read_manifest(manifest) if it.get("negative_captions")]
    waves = [load_audio(it["audio"], sr=sr) for it in items]  # in memory: disk reads are not timed
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.01)
    model.train()
    rng = np.random.default_rng(seed)
    rates, fe_share = [], []
    for step in range(warmup + steps):
        idx = rng.choice(len(items), size=batch, replace=len(items) < batch)
        t0 = time.perf_counter()
        feats = fe([waves[i] for i in idx], sampling_rate=sr, return_tensors="pt")["input_features"]
        t_fe = time.perf_counter() - t0
        pos = tok([items[i]["captions"][0] for i in idx], padding=True, truncation=True,
                  max_length=bundle.max_text_length, return_tensors="pt")
        neg = tok([items[i]["negative_captions"][0] for i in idx], padding=True, truncation=True,
                  max_length=bundle.max_text_length, return_tensors="pt")
        out = model(input_ids=pos["input_ids"], attention_mask=pos["attention_mask"], input_features=feats,
                    return_loss=True)
        t_neg = model.get_text_features(**neg)
        t_neg = F.normalize(t_neg.pooler_output if hasattr(t_neg, "pooler_output") else t_neg, dim=-1)
        a = out.audio_embeds  # normalised [B, D]
        s = model.logit_scale_a.exp()
        l_t = F.softplus(s * ((a * t_neg).sum(-1) - (a * out.text_embeds).sum(-1))).mean()
        loss = out.loss + lambda_t * l_t
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        if step >= warmup:
            rates.append(batch / dt)
            fe_share.append(t_fe / dt)
    return {"samples_per_s": statistics.median(rates), "fe_share": statistics.median(fe_share)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="batch 32, 3 timed steps (< 90 s on 2 CPU cores)")
    p.add_argument("--batch-size", type=int, default=None, help="default 64 (the recipe's), 32 with --quick")
    p.add_argument("--steps", type=int, default=None, help="timed optimizer steps (default 10, 3 with --quick)")
    p.add_argument("--warmup", type=int, default=1, help="untimed first steps (allocator, lazy init)")
    p.add_argument("--threads", type=int, default=1, help="torch threads for both (default 1)")
    p.add_argument("--lambda-t", type=float, default=0.5)
    args = p.parse_args(argv)
    batch = args.batch_size or (32 if args.quick else 64)
    steps = args.steps or (3 if args.quick else 10)
    torch.set_num_threads(args.threads)

    from tclap.data.mixup import build_builtin_mixups

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        manifest = build_builtin_mixups(Path(tmp) / "mix", n=batch + batch // 2, seconds=4.0, sr=16000, seed=0)
        t_data = time.perf_counter() - t0
        base = _baseline(manifest, batch, steps, args.warmup, args.lambda_t)
        ours = _ours(manifest, Path(tmp) / "run", batch, steps, args.warmup, args.lambda_t)

    ratio = ours["samples_per_s"] / base["samples_per_s"]
    print(f"\nmodel=tiny batch={batch} timed_steps={steps} threads={torch.get_num_threads()} "
          f"lambda_t={args.lambda_t} (mix-ups built in {t_data:.1f} s)\n")
    print("| method | samples/s | s/step | speed-up vs transformers loop |")
    print("|---|---:|---:|---:|")
    print(f"| transformers ClapModel + ClapFeatureExtractor loop (numpy features {100 * base['fe_share']:.0f}% of step) "
          f"| {base['samples_per_s']:.1f} | {batch / base['samples_per_s']:.2f} | 1.00x |")
    print(f"| tclap.train (cached features, one text forward, TClapLoss) | {ours['samples_per_s']:.1f} | "
          f"{batch / ours['samples_per_s']:.2f} | {ratio:.2f}x |")
    print(f"\ngoal >= 2x: {'met' if ratio >= 2 else 'NOT met'}; tclap.train's one-off setup (model load + feature "
          f"cache of {batch + batch // 2} clips) took {ours['setup_s']:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
