"""Training throughput: our T-CLAP step vs a straightforward transformers ``ClapModel`` loop, made fair.

All loops train the same ``tiny`` CLAP (same init, same batch size, same built-in mix-ups, L_c + 0.5·L_t) on the
same threads, in the same run, with the SAME share of rows that carry a negative caption (``--negative-share``,
default 0.8 = the tiny preset's temporal fraction; the other rows are the mix-ups of overlapping events, L_c only):

* ``transformers loop, features every step``: per batch, ``ClapFeatureExtractor`` (numpy) turns the in-memory
  waveforms into log-mels, the tokenizer and ``ClapModel.forward(return_loss=True)`` give L_c, a second
  ``get_text_features`` forward embeds the negative captions of the rows that have one for L_t, then backward
  and an AdamW step;
* ``transformers loop, features cached`` (**the baseline the ratios use**): the same, with every clip's log-mels
  computed once before the first step, as ours are; the one-off caching time is reported apart;
* ``tclap.train`` (in memory): :func:`tclap.train.trainer.train` as ``tclap train`` runs it on a manifest:
  log-mels cached once, ONE text forward over positive + negative captions, :class:`tclap.losses.TClapLoss`;
  its samples/s is the trainer's own per-step timing; its one-off setup is reported apart;
* ``tclap.train streaming``: the same items as WebDataset shards, read, decoded and turned into log-mels by 2
  DataLoader workers while training (``tclap train --train SHARDS``): end-to-end samples/s, data loading included.
  Optionally ``--mixed-precision bf16`` (autocast), the trainer's option for bf16-capable chips.

The loops alternate step by step (baseline steps run in the trainer's step callback), so load from other
processes on a shared machine slows them alike; each ratio is the median of per-step rates.

Goal: ours >= 2x the baseline's samples/s. Prints a Markdown table. ``--quick`` runs in a few minutes on 2 cores.

    OMP_NUM_THREADS=1 python benchmarks/bench_train.py --quick
    python benchmarks/bench_train.py --model htsat-tiny-roberta --device cuda --no-bf16   # real size, on a GPU

``--model htsat-tiny-roberta`` (or ``htsat-base-roberta``) times the real LAION-CLAP sizes, random weights,
on 10 s clips at the model's 48 kHz; its tokenizer is the built-in tiny BPE (the real RoBERTa vocabulary
cannot be downloaded here; caption token counts are alike, so the timing is representative). On a GPU
(``--device cuda``) all loops run there; ``tclap.train`` picks the GPU through accelerate as ``tclap train``
does, and the baseline's features are moved to the GPU each step, as a user of that loop would.
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
    """The straightforward loop, one optimizer step per :meth:`step` call (timed inside).

    Each batch holds ``round(negative_share * batch)`` items with a negative caption and the rest without, as
    the trainer's batches do; ``cache_features`` computes every clip's log-mels once, up front.
    """

    def __init__(self, manifest: Path, batch: int, lambda_t: float, negative_share: float, cache_features: bool,
                 seed: int = 0, init: str = "tiny", device: str = "cpu"):
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
        self.items = read_manifest(manifest)
        self.paired = [i for i, it in enumerate(self.items) if it.get("negative_captions")]
        self.unpaired = [i for i, it in enumerate(self.items) if not it.get("negative_captions")]
        self.waves = [load_audio(it["audio"], sr=self.sr) for it in self.items]  # in memory: no disk reads timed
        self.cache_s = 0.0
        self.cached = None
        if cache_features:
            t0 = time.perf_counter()
            self.cached = torch.cat([self._features(list(range(s, min(s + 64, len(self.waves)))))
                                     for s in range(0, len(self.waves), 64)])
            self.cache_s = time.perf_counter() - t0
        self.opt = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.01)
        self.model.train()
        self.batch, self.lambda_t = batch, lambda_t
        self.k_neg = int(round(batch * negative_share)) if self.unpaired else batch
        self.rng = np.random.default_rng(seed)

    def _features(self, idx) -> torch.Tensor:
        return self.fe([self.waves[i] for i in idx], sampling_rate=self.sr, return_tensors="pt")["input_features"]

    def _tokens(self, texts):
        enc = self.tok(texts, padding=True, truncation=True, max_length=self.bundle.max_text_length, return_tensors="pt")
        return {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}

    def _draw(self, pool: list[int], k: int) -> list[int]:
        return [pool[j] for j in self.rng.choice(len(pool), size=k, replace=len(pool) < k)] if k else []

    def step(self) -> tuple[float, float]:
        """One step: ``(seconds, seconds spent in ClapFeatureExtractor)``."""
        idx = self._draw(self.paired, self.k_neg) + self._draw(self.unpaired, self.batch - self.k_neg)
        t0 = time.perf_counter()
        feats = self.cached[idx] if self.cached is not None else self._features(idx)
        t_fe = time.perf_counter() - t0
        feats = feats.to(self.device)
        pos = self._tokens([self.items[i]["captions"][0] for i in idx])
        neg = self._tokens([self.items[i]["negative_captions"][0] for i in idx[: self.k_neg]])
        out = self.model(input_ids=pos["input_ids"], attention_mask=pos["attention_mask"], input_features=feats,
                         return_loss=True)  # L_c (ClapModel's own symmetric contrastive loss)
        t_neg = self.model.get_text_features(**neg)  # a second text forward for the negatives
        t_neg = F.normalize(t_neg.pooler_output if hasattr(t_neg, "pooler_output") else t_neg, dim=-1)
        a = out.audio_embeds[: self.k_neg]  # [k, D], normalised: the rows that have a negative
        s = self.model.logit_scale_a.exp()
        l_t = F.softplus(s * ((a * t_neg).sum(-1) - (a * out.text_embeds[: self.k_neg]).sum(-1))).mean()
        (out.loss + self.lambda_t * l_t).backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - t0, t_fe


def run_interleaved(manifest: Path, out: Path, batch: int, steps: int, warmup: int, lambda_t: float,
                    negative_share: float, mixed_precision: str = "no", init: str = "tiny", device: str = "cpu",
                    streamed: tuple[Path, Path] | None = None, both_baselines: bool = True) -> dict:
    """Alternate one tclap.train step with one step of each baseline, so that load from other processes on a
    shared machine hits all alike. ``streamed``: train from these (paired, unpaired) shard folders instead of
    the manifest. Returns the medians over the timed steps."""
    from tclap.train.config import preset
    from tclap.train.trainer import train

    bases = {"cached": _BaselineLoop(manifest, batch, lambda_t, negative_share, True, init=init, device=device)}
    if both_baselines:
        bases["fresh"] = _BaselineLoop(manifest, batch, lambda_t, negative_share, False, init=init, device=device)
    cfg = preset("tiny")
    cfg.init = init
    cfg.steps, cfg.data.batch_size, cfg.loss.lambda_t = warmup + steps, batch, lambda_t
    cfg.data.temporal_fraction = negative_share  # the same share of rows with a negative as the baselines
    cfg.data.unpaired = "positive"  # overlap mix-ups (no negative) are the L_c-only rows, as in the baselines
    cfg.checkpoint_every = cfg.steps  # one checkpoint, after the last timed step
    cfg.mixed_precision = mixed_precision
    ours, data_wait = [], []
    theirs: dict[str, list[float]] = {k: [] for k in bases}
    fe_share: list[float] = []
    t_start = time.perf_counter()
    first_done: list[float] = []

    def on_step(step: int, rec: dict) -> None:  # called after each of our optimizer steps
        if not first_done:
            first_done.append(time.perf_counter())
        for name, base in bases.items():
            dt, t_fe = base.step()
            if step > warmup:
                theirs[name].append(batch / dt)
                if name == "fresh":
                    fe_share.append(t_fe / dt)
        if step > warmup:
            ours.append(rec["samples_per_s"])
            data_wait.append(rec["data_wait_s"] / rec["step_s"])

    if streamed is None:
        train(cfg, [str(manifest)], out, quiet=True, export=False, step_callback=on_step)
    else:
        cfg.data.unpaired, cfg.data.workers = "skip", 2
        train(cfg, [str(streamed[0])], out, positive_manifests=[str(streamed[1])], quiet=True, export=False,
              step_callback=on_step)
    res = {"ours": statistics.median(ours), "ratios": [o / b for o, b in zip(ours, theirs["cached"])],
           "setup_s": first_done[0] - t_start, "cache_s": bases["cached"].cache_s, "wait": statistics.median(data_wait)}
    for name, rates in theirs.items():
        res[name] = statistics.median(rates)
    res["fe_share"] = statistics.median(fe_share) if fe_share else float("nan")
    return res


def _split_shards(manifest: Path, root: Path) -> tuple[Path, Path]:
    """The manifest's items with a negative caption and those without, as two shard folders of two tars each (one
    per streaming worker)."""
    from tclap.data.manifest import read_manifest, write_manifest
    from tclap.data.shards import write_webdataset_shards

    items = read_manifest(manifest)
    out = []
    for name, keep in (("paired", lambda it: bool(it.get("negative_captions"))),
                       ("unpaired", lambda it: not it.get("negative_captions"))):
        kept = [it for it in items if keep(it)]
        m = write_manifest(root / f"{name}.jsonl", kept)
        write_webdataset_shards(m, root / name, items_per_shard=(len(kept) + 1) // 2)
        out.append(root / name)
    return out[0], out[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="batch 32, 3 timed steps")
    p.add_argument("--batch-size", type=int, default=None, help="default 64 (the recipe's), 32 with --quick")
    p.add_argument("--steps", type=int, default=None, help="timed optimizer steps (default 10, 3 with --quick)")
    p.add_argument("--warmup", type=int, default=1, help="untimed first steps (allocator, lazy init)")
    p.add_argument("--threads", type=int, default=1, help="torch threads for all loops (default 1)")
    p.add_argument("--lambda-t", type=float, default=0.5)
    p.add_argument("--negative-share", type=float, default=0.8,
                   help="share of each batch's rows with a negative caption, the same in every loop (default 0.8)")
    p.add_argument("--model", default="tiny", help="tiny (default) or a real-size config: htsat-tiny-roberta, "
                   "htsat-base-roberta (random weights)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=False,
                   help="also time `tclap train --mixed-precision bf16` (fast where the CPU has AMX / AVX512-BF16)")
    p.add_argument("--stream", action=argparse.BooleanOptionalAction, default=True,
                   help="also time tclap.train streaming the same items from shards (2 workers; default on)")
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
        # accelerate would take the GPU for tclap.train; keep all loops on the CPU (read when the trainer's
        # Accelerator is made; CUDA_VISIBLE_DEVICES would come too late once torch has looked for a GPU)
        os.environ["ACCELERATE_USE_CPU"] = "true"
    from tclap.data.mixup import build_builtin_mixups

    share = args.negative_share
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
        manifest = build_builtin_mixups(Path(tmp) / "mix", n=2 * batch, seconds=seconds, sr=sr, seed=0)
        t_data = time.perf_counter() - t0
        kw = dict(init=init, device=args.device)
        r = run_interleaved(manifest, Path(tmp) / "run", batch, steps, args.warmup, args.lambda_t, share, **kw)
        rs = rb = None
        if args.stream:
            _reset_accelerate()
            shards = _split_shards(manifest, Path(tmp) / "shards")
            rs = run_interleaved(manifest, Path(tmp) / "run-stream", batch, steps, args.warmup, args.lambda_t, share,
                                 streamed=shards, both_baselines=False, **kw)
        if args.bf16:
            _reset_accelerate()
            rb = run_interleaved(manifest, Path(tmp) / "run-bf16", batch, steps, args.warmup, args.lambda_t, share,
                                 "bf16", both_baselines=False, **kw)

    dev = torch.cuda.get_device_name() if args.device != "cpu" else "cpu"
    print(f"\nmodel={args.model} device={dev} batch={batch} timed_steps={steps} threads={torch.get_num_threads()} "
          f"lambda_t={args.lambda_t} negative share={share:g} in every loop (mix-ups built in {t_data:.1f} s)\n")
    print("| method | samples/s | s/step | vs transformers loop with cached features |")
    print("|---|---:|---:|---:|")
    base = r["cached"]
    print(f"| transformers ClapModel loop, ClapFeatureExtractor every step (numpy features {100 * r['fe_share']:.0f}% of "
          f"step) | {r['fresh']:.1f} | {batch / r['fresh']:.2f} | {r['fresh'] / base:.2f}x |")
    print(f"| transformers ClapModel loop, features cached once (baseline; caching took {r['cache_s']:.1f} s, not "
          f"counted) | {base:.1f} | {batch / base:.2f} | 1.00x |")
    print(f"| tclap.train in memory (cached features, one text forward, TClapLoss) | {r['ours']:.1f} | "
          f"{batch / r['ours']:.2f} | {r['ours'] / base:.2f}x (per-step pairs {min(r['ratios']):.2f}-{max(r['ratios']):.2f}x) |")
    if rs is not None:
        print(f"| tclap.train streaming from shards, 2 workers, end to end (data wait {100 * rs['wait']:.0f}% of step; vs "
              f"its own interleaved baseline at {rs['cached']:.1f}/s) | {rs['ours']:.1f} | {batch / rs['ours']:.2f} | "
              f"{rs['ours'] / rs['cached']:.2f}x |")
    if rb is not None:
        where = "CPU" if args.device == "cpu" else "CUDA"
        print(f"| tclap.train in memory, --mixed-precision bf16 ({where} autocast; vs its own interleaved baseline at "
              f"{rb['cached']:.1f}/s) | {rb['ours']:.1f} | {batch / rb['ours']:.2f} | {rb['ours'] / rb['cached']:.2f}x |")
    ratio = r["ours"] / base
    print(f"\ngoal >= 2x against the cached-features baseline: {ratio:.2f}x {'met' if ratio >= 2 else 'NOT met'}. "
          f"Steps alternate (one of ours, one of each baseline) so shared-machine load hits all alike. tclap.train's "
          f"one-off setup (model load, feature cache of the {2 * batch} clips, first step) took {r['setup_s']:.1f} s.")
    return 0


def _reset_accelerate() -> None:
    """accelerate keeps one process-wide state whose settings cannot change once set; reset it (accelerate's own
    tests do the same) so that the next run in this process may use other settings."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


if __name__ == "__main__":
    raise SystemExit(main())
