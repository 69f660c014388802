"""Streaming training data: WebDataset shards, manifests and on-the-fly mix-ups, read as the trainer goes.

The in-memory path of :mod:`tclap.train.data` holds every clip's features; this package holds none: memory
stays flat however large the data (a shuffle buffer per reader, a few batches in flight).

Contract (the trainer relies on each point; tests check them):

- **Sources** (:mod:`~tclap.data.stream.sources`): manifests, shard paths / globs / brace patterns / ``pipe:``
  commands (opened with ``webdataset``), and ``bank:SPEC`` clip banks for mix-ups made on the fly.
- **Plan** (:mod:`~tclap.data.stream.plan`): ``processes x workers`` readers; each micro-step's global batch is a
  pure function of ``(seed, readers, micro-step)`` and the data. Within an epoch every usable item is read at
  most once across all processes and workers, exactly once when the shards divide evenly; the remainder is
  counted and reported. ``--resampled`` draws shards with replacement instead (endless). The temporal and the
  positive-only sources fill fixed shares of every batch (the paper's 1:4).
- **Mix-ups on the fly**: bank rows are built inside the workers from ``(seed, global index)`` alone, with their
  order-swapped caption and negative audio; nothing is written.
- **Resume**: a reader started at micro-step ``m`` produces what an uninterrupted reader produces from ``m`` on
  (whole shards are skipped by their counts, the current shard's emitted items are read but not decoded).
- **Work in the workers** (:mod:`~tclap.data.stream.readers`): reading, decoding, resampling, crop/pad and the mel
  front end; the training process only stacks the chunks (:mod:`~tclap.data.stream.loader`).
- **Bad input**: one line naming the shard and member; unusable items are counted skips; a source that cannot be
  read, or a worker that dies or hangs, ends the run with one line instead of a traceback or a hang.

Why not ``webdataset``'s own pipeline (``split_by_node`` / ``split_by_worker`` / ``shuffle``) end to end: its
shard split and shuffle buffer depend on how many workers run and keep no position, so a run cannot resume in
mid-epoch to the same items, nor equal a run with another layout. We use ``webdataset`` for what it does well
(URL opening with ``gopen``, brace expansion, the tar layout and key rule) and keep the plan here.
"""

from tclap.data.stream.loader import ProcessStream, StreamDataset
from tclap.data.stream.plan import POSITIVE, TEMPORAL, DataPlan, build_plan, shuffle_order, split_rows
from tclap.data.stream.readers import ChunkBuilder, ChunkOptions, merge, reader_chunks
from tclap.data.stream.sources import BANK, MANIFEST, SHARDS, CountCache, Source, Unit, parse_source

__all__ = [
    "BANK", "MANIFEST", "POSITIVE", "SHARDS", "TEMPORAL", "ChunkBuilder", "ChunkOptions", "CountCache", "DataPlan",
    "ProcessStream", "Source", "StreamDataset", "Unit", "build_plan", "merge", "parse_source", "reader_chunks",
    "shuffle_order", "split_rows",
]
