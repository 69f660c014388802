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
  Also timed with ``--mixed-precision bf16`` (autocast on the CPU or the GPU), the trainer's option for
  bf16-capable chips.

The two loops alternate step by step (a baseline step runs in the trainer's step callback), so load from
other processes on a shared machine slows both alike; the ratio is the median of per-step rates.

Goal: ours >= 2x the baseline's samples/s. Prints a Markdown table. ``--quick`` runs in < 90 s on 2 cores.

    OMP_NUM_THREADS=1 python benchmarks/bench_train.py --quick
    python benchmarks/bench_train.py --model htsat-tiny-roberta --device cuda --no-bf16   # real size, on a GPU

``--model htsat-tiny-roberta`` (or ``htsat-base-roberta``) times the real LAION-CLAP sizes, random weights,
on 10 s clips at the model's 48 kHz; its tokenizer is the built-in tiny BPE (the real RoBERTa vocabulary
cannot be downloaded here; caption token counts are alike, so the timing is representative). On a GPU
(``--device cuda``) both loops run there; ``tclap.train`` picks the GPU through accelerate as ``tclap train``
does, and the baseline's numpy features are moved to the GPU each step, as a user of that loop would.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


class _BaselineLoop:
    """The straightforward loop, one optimizer step per :meth:`step` call (timed inside)."""

    def __init__(self, manifest: Path, batch: int, lambda_t: float, seed: int = 0, init: str = "tiny",
                 device: str = "cpu"):
        from basekit.audio import load_audio
        from tclap.data.manifest import read_manifest
        from tclap.models import load_clap
        from tclap.models.configs import FrontEndConfig
        from tclap.models.frontends import make_feature_extractor

        self.bundle = load_clap(init)  # the same seeded init as tclap.train's
        self.device = torch.device(device)
        self.model, self.tok = self.bundle.model.to(self.device), self.bundle.tokenizer
        self.fe = make_feature_extractor(FrontEndConfig(**self.bundle.frontend.to_dict()))
        self.sr = self.bundle.sample_rate
        self.items = [it for it in read_manifest(manifest) if it.get("negative_captions")]
        self.waves = [load_audio(it["audio"], sr=self.sr) for it in self.items]  # in memory: no disk reads timed
        self.opt = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.01)
        self.model.train()
        self.batch, self.lambda_t = batch, lambda_t
        self.rng = np.random.default_rng(seed)

    def _tokens(self, texts):
        enc = self.tok(texts, padding=True, truncation=True, max_length=self.bundle.max_text_length, return_tensors="pt")
        return {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}

    def step(self) -> tuple[float, float]:
        """One step: ``(seconds, seconds spent in ClapFeatureExtractor)``."""
        idx = self.rng.choice(len(self.items), size=self.batch, replace=len(self.items) < self.batch)
        t0 = time.perf_counter()
        feats = self.fe([self.waves[i] for i in idx], sampling_rate=self.sr, return_tensors="pt")["input_features"]
        t_fe = time.perf_counter() - t0
        feats = feats.to(self.device)
        pos = self._tokens([self.items[i]["captions"][0] for i in idx])
        neg = self._tokens([self.items[i]["negative_captions"][0] for i in idx])
        out = self.model(input_ids=pos["input_ids"], attention_mask=pos["attention_mask"], input_features=feats,
                         return_loss=True)  # L_c (ClapModel's own symmetric contrastive loss)
        t_neg = self.model.get_text_features(**neg)  # a second text forward for the negatives
        t_neg = F.normalize(t_neg.pooler_output if hasattr(t_neg, "pooler_output") else t_neg, dim=-1)
        a = out.audio_embeds  # [B, D], normalised
        s = self.model.logit_scale_a.exp()
        l_t = F.softplus(s * ((a * t_neg).sum(-1) - (a * out.text_embeds).sum(-1))).mean()
        (out.loss + self.lambda_t * l_t).backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - t0, t_fe


def run_interleaved(manifest: Path, out: Path, batch: int, steps: int, warmup: int, lambda_t: float,
                    mixed_precision: str = "no", init: str = "tiny", device: str = "cpu") -> dict:
    """Alternate one tclap.train step and one baseline step, so that load from other processes on a shared
    machine hits both alike. Returns the medians over the timed steps."""
    from tclap.train.config import preset
    from tclap.train.trainer import train

    base = _BaselineLoop(manifest, batch, lambda_t, init=init, device=device)
    cfg = preset("tiny")
    cfg.init = init
    cfg.steps, cfg.data.batch_size, cfg.loss.lambda_t = warmup + steps, batch, lambda_t
    cfg.checkpoint_every = cfg.steps  # one checkpoint, after the last timed step
    cfg.mixed_precision = mixed_precision
    ours, theirs, fe_share = [], [], []
    t_start = time.perf_counter()
    first_done: list[float] = []

    def on_step(step: int, rec: dict) -> None:  # called after each of our optimizer steps
        if not first_done:
            first_done.append(time.perf_counter())
        dt, t_fe = base.step()
        if step > warmup:
            ours.append(rec["samples_per_s"])
            theirs.append(batch / dt)
            fe_share.append(t_fe / dt)

    train(cfg, [str(manifest)], out, quiet=True, export=False, step_callback=on_step)
    return {"ours": statistics.median(ours), "base": statistics.median(theirs), "fe_share": statistics.median(fe_share),
            "ratios": [o / b for o, b in zip(ours, theirs)], "setup_s": first_done[0] - t_start}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="batch 32, 3 timed steps (< 90 s on 2 CPU cores)")
    p.add_argument("--batch-size", type=int, default=None, help="default 64 (the recipe's), 32 with --quick")
    p.add_argument("--steps", type=int, default=None, help="timed optimizer steps (default 10, 3 with --quick)")
    p.add_argument("--warmup", type=int, default=1, help="untimed first steps (allocator, lazy init)")
    p.add_argument("--threads", type=int, default=1, help="torch threads for both (default 1)")
    p.add_argument("--lambda-t", type=float, default=0.5)
    p.add_argument("--model", default="tiny", help="tiny (default) or a real-size config: htsat-tiny-roberta, "
                   "htsat-base-roberta (random weights)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True,
                   help="also time `tclap train --mixed-precision bf16` (fast where the CPU has AMX / AVX512-BF16)")
    args = p.parse_args(argv)
    batch = args.batch_size or (32 if args.quick else 64)
    steps = args.steps or (3 if args.quick else 10)
    torch.set_num_threads(args.threads)

    if args.device != "cpu":
        if not args.device.startswith("cuda") or not torch.cuda.is_available():
            raise SystemExit(f"--device {args.device}: no CUDA device here; use --device cpu")
        if args.device != "cuda":
            torch.cuda.set_device(torch.device(args.device))
    elif torch.cuda.is_available():
        # accelerate would take the GPU for tclap.train; keep both loops on the CPU (read when the trainer's
        # Accelerator is made; CUDA_VISIBLE_DEVICES would come too late once torch has looked for a GPU)
        os.environ["ACCELERATE_USE_CPU"] = "true"
    from tclap.data.mixup import build_builtin_mixups

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        init, seconds, sr = "tiny", 4.0, 16000
        if args.model != "tiny":
            from tclap.models.export import export_bundle
            from tclap.models.factory import from_config
            from tclap.models.tokenizer import build_tiny_tokenizer

            bundle = from_config(args.model, tokenizer=build_tiny_tokenizer(model_max_length=77))
            init = str(export_bundle(bundle, Path(tmp) / "init"))
            seconds, sr = bundle.frontend.max_length_s, bundle.sample_rate
            del bundle
        manifest = build_builtin_mixups(Path(tmp) / "mix", n=batch + batch // 2, seconds=seconds, sr=sr, seed=0)
        t_data = time.perf_counter() - t0
        r = run_interleaved(manifest, Path(tmp) / "run", batch, steps, args.warmup, args.lambda_t,
                            init=init, device=args.device)
        rb = None
        if args.bf16:
            # accelerate keeps one process-wide state whose mixed precision cannot change once set; reset it
            # (accelerate's own tests do the same) so the second run in this process may use bf16.
            from accelerate.state import AcceleratorState

            AcceleratorState._reset_state(reset_partial_state=True)
            rb = run_interleaved(manifest, Path(tmp) / "run-bf16", batch, steps, args.warmup, args.lambda_t, "bf16",
                                 init=init, device=args.device)

    ratio = r["ours"] / r["base"]
    lo, hi = min(r["ratios"]), max(r["ratios"])
    dev = torch.cuda.get_device_name() if args.device != "cpu" else "cpu"
    print(f"\nmodel={args.model} device={dev} batch={batch} timed_steps={steps} threads={torch.get_num_threads()} "
          f"lambda_t={args.lambda_t} (mix-ups built in {t_data:.1f} s)\n")
    print("| method | samples/s | s/step | speed-up vs transformers loop |")
    print("|---|---:|---:|---:|")
    print(f"| transformers ClapModel + ClapFeatureExtractor loop (numpy features {100 * r['fe_share']:.0f}% of step) "
          f"| {r['base']:.1f} | {batch / r['base']:.2f} | 1.00x |")
    print(f"| tclap.train (cached features, one text forward, TClapLoss) | {r['ours']:.1f} | "
          f"{batch / r['ours']:.2f} | {ratio:.2f}x (per-step pairs {lo:.2f}-{hi:.2f}x) |")
    if rb is not None:
        rat_b = rb["ours"] / rb["base"]
        where = "CPU" if args.device == "cpu" else "CUDA"
        print(f"| tclap.train, --mixed-precision bf16 ({where} autocast; vs its own interleaved fp32 baseline at "
              f"{rb['base']:.1f}/s) | {rb['ours']:.1f} | {batch / rb['ours']:.2f} | {rat_b:.2f}x "
              f"(pairs {min(rb['ratios']):.2f}-{max(rb['ratios']):.2f}x) |")
    verdict = f"fp32 {ratio:.2f}x {'met' if ratio >= 2 else 'NOT met'}"
    if rb is not None:
        verdict += f"; bf16 {rb['ours'] / rb['base']:.2f}x {'met' if rb['ours'] / rb['base'] >= 2 else 'NOT met'}"
    print(f"\ngoal >= 2x: {verdict}. Steps alternate (one of ours, one baseline) so shared-"
          f"machine load hits both alike. tclap.train's one-off setup (model load, feature cache of the "
          f"{batch + batch // 2} clips, first step) took {r['setup_s']:.1f} s.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
