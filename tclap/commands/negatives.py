"""``tclap negatives``: order-swapped negative captions for AudioCaps/Clotho-style captions."""

from __future__ import annotations

import argparse
from tclap.negatives.runner import NegativesConfig, run_negatives


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("captions", help="captions file: AudioCaps/Clotho CSV or JSONL with caption/captions")
    p.add_argument("--backend", choices=["rule", "llm"], default="rule", help="rule (needs nothing) or llm")
    p.add_argument("--out", required=True, help="output folder (negatives.jsonl, negatives.csv, .cache.jsonl)")
    p.add_argument("--endpoint", default=None, help="OpenAI-compatible base URL, e.g. http://localhost:8000/v1")
    p.add_argument("--model", default=None, help="model name for --endpoint")
    p.add_argument("--api-key-env", default=None, help="environment variable holding the API key")
    p.add_argument("--hf-model", default=None, help="local transformers text-generation model folder (instead of --endpoint)")
    p.add_argument("--prompt-file", default=None, help="prompt template with {caption} (default: the shipped prompt)")
    p.add_argument("--retries", type=int, default=2, help="extra tries when a model answer fails validation (default 2)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per endpoint request (default 30)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:

    cfg = NegativesConfig(
        backend=args.backend, endpoint=args.endpoint, model=args.model, api_key_env=args.api_key_env,
        hf_model=args.hf_model, prompt_file=args.prompt_file, retries=args.retries, timeout=args.timeout,
    )
    report = run_negatives(args.captions, args.out, cfg, quiet=args.quiet)
    print(report.summary())
    return 0
