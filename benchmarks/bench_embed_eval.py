"""Evaluation embedding throughput: batched ``ClapBundle`` vs one item at a time.

Baselines, in the same run and on the same model:

* ``transformers, 1 at a time``: the straightforward loop: ``ClapProcessor`` (numpy feature extractor /
  tokenizer) + ``ClapModel.get_*_features`` per clip or caption;
* ``bundle, 1 at a time``: our bundle called with ``batch_size=1``;
* ``bundle, batched``: our bundle with its default batching (goal: >= 5x the transformers loop).

Prints a Markdown table (items/s and the speed-up over the transformers loop). ``--quick`` runs in < 60 s.

    python benchmarks/bench_embed_eval.py --quick [--model tiny] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def _rate(fn, n: int) -> float:
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny", help="any load_clap source (default: tiny)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="small counts (< 60 s on 2 CPU cores)")
    p.add_argument("--n-audio", type=int, default=None)
    p.add_argument("--n-text", type=int, default=None)
    p.add_argument("--audio-batch", type=int, default=64)
    p.add_argument("--text-batch", type=int, default=256)
    args = p.parse_args(argv)

    from transformers import ClapProcessor

    from tclap.models import load_clap
    from tclap.models.frontends import make_feature_extractor
    from tclap.models.configs import FrontEndConfig

    n_audio = args.n_audio or (16 if args.quick else 256)
    n_text = args.n_text or (128 if args.quick else 1024)
    bundle = load_clap(args.model, device=args.device)
    fe = make_feature_extractor(FrontEndConfig(**bundle.frontend.to_dict()))
    proc = ClapProcessor(feature_extractor=fe, tokenizer=bundle.tokenizer)
    sr = bundle.sample_rate
    rng = np.random.default_rng(0)
    # clips of the model's window length (the common evaluation case) and mixed captions
    clips = [rng.standard_normal(int(bundle.frontend.max_length_s * sr)).astype(np.float32) * 0.1 for _ in range(n_audio)]
    words = "a beep knock siren bell followed by and then after before rain dog barks man speaks".split()
    texts = [" ".join(rng.choice(words, size=int(rng.integers(3, 12)))) for _ in range(n_text)]
    model = bundle.model.eval()
    dev = bundle.device

    def hf_audio_loop():
        with torch.no_grad():
            for c in clips:
                x = proc.feature_extractor(c, sampling_rate=sr, return_tensors="pt")["input_features"].to(dev)
                model.get_audio_features(input_features=x)

    def hf_text_loop():
        with torch.no_grad():
            for t in texts:
                enc = proc.tokenizer([t], return_tensors="pt").to(dev)
                model.get_text_features(**enc)

    # warm-up (allocators, lazy inits)
    bundle.embed_audio(clips[:2])
    bundle.embed_text(texts[:2])
    rows = []
    for kind, n, loop, single, batched in (
        ("audio", n_audio, hf_audio_loop, lambda: bundle.embed_audio(clips, batch_size=1),
         lambda: bundle.embed_audio(clips, batch_size=args.audio_batch)),
        ("text", n_text, hf_text_loop, lambda: bundle.embed_text(texts, batch_size=1),
         lambda: bundle.embed_text(texts, batch_size=args.text_batch)),
    ):
        base = _rate(loop, n)
        r1 = _rate(single, n)
        rb = _rate(batched, n)
        rows.append((kind, "transformers ClapProcessor + ClapModel, 1 at a time", base, 1.0))
        rows.append((kind, "ClapBundle, batch_size=1", r1, r1 / base))
        rows.append((kind, f"ClapBundle, batched ({args.audio_batch if kind == 'audio' else args.text_batch})", rb, rb / base))

    print(f"\nmodel={args.model} device={args.device} threads={torch.get_num_threads()} "
          f"n_audio={n_audio} n_text={n_text}\n")
    print("| input | method | items/s | speed-up vs transformers loop |")
    print("|---|---|---:|---:|")
    for kind, name, rate, ratio in rows:
        print(f"| {kind} | {name} | {rate:.1f} | {ratio:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
