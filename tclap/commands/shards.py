"""``tclap shards``: write WebDataset shards the trainers stream (``tclap train`` / ``audioldm-cond train --train DIR``).

``tclap shards captions``: a captioned set (AudioCaps / Clotho / Auto-ACD-style CSV or JSONL plus its audio folder),
with negative captions from ``tclap negatives`` joined in by caption, as tars of the stream layout; sharded over
machines (``--shard i/n``) and resumable (finished tars are kept). See :mod:`tclap.data.captioned`.
"""

from __future__ import annotations

import argparse
from tclap.data.captioned import convert
from tclap.data.mixup import parse_shard


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    c = sub.add_parser("captions", help="a captioned set (CSV/JSONL + audio folder) as WebDataset shards",
                       description="a captioned set (CSV/JSONL + audio folder) as WebDataset shards")
    table = c.add_mutually_exclusive_group(required=True)
    table.add_argument("--csv", help="captions CSV: AudioCaps (audiocap_id,youtube_id,start_time,caption), Clotho "
                                     "(file_name,caption_1..caption_5) or an audio column with a caption column")
    table.add_argument("--jsonl", help="captions JSONL: {\"audio\"|\"file_name\": NAME, \"caption\" | \"captions\": [...]}")
    c.add_argument("--audio-dir", required=True, help="folder the table's audio file names are in")
    name = c.add_mutually_exclusive_group()
    name.add_argument("--audio-column", default=None, help="the column holding the audio file name (default: the first "
                                                            "of file_name, audio, filename, file, path, youtube_id, ...)")
    name.add_argument("--audio-name", default=None, metavar="PATTERN",
                      help="the file name from the row's columns, e.g. '{youtube_id}_{start_time}.wav'")
    c.add_argument("--negatives", default=None, help="tclap negatives output (negatives.jsonl or .csv), joined in by caption")
    c.add_argument("--out", required=True, help="folder for the tars and the index (shared by all machines)")
    c.add_argument("--shard", default=None, help="i/n: write items k with k %% n == i (machine i of n)")
    c.add_argument("--shard-items", type=int, default=500, help="items per tar (default 500)")
    c.add_argument("--source", default=None, help="the items' source name (default: the table's file name)")
    c.add_argument("--quiet", action="store_true", help="do not list the skipped rows")


def run(args: argparse.Namespace) -> int:

    report = convert(args.csv or args.jsonl, args.audio_dir, args.out, negatives=args.negatives,
                     shard=parse_shard(args.shard), items_per_shard=args.shard_items, audio_column=args.audio_column,
                     audio_name=args.audio_name, source=args.source, quiet=args.quiet)
    print(report.summary())
    return 0
