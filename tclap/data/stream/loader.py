"""One process's stream of micro-steps: its readers run as DataLoader workers (or in the process itself).

Worker ``w`` of process ``rank`` is reader ``g = rank * workers + w`` and yields that reader's chunks of
micro-steps ``start, start + 1, ...``. A DataLoader over an iterable dataset takes one item from each worker
in turn, so the ``workers`` consecutive items it returns are the same micro-step's chunks, in reader order;
:class:`ProcessStream` groups them.

No hang, one line: a worker that cannot read a source sends ``{"error": line}`` and the process raises it;
a worker that dies (killed, out of memory, a crash in a decoder library) or sends nothing for ``timeout``
seconds makes the DataLoader raise, and :class:`ProcessStream` names the rank, the worker and the shard and
member it was reading (each worker keeps that in a small shared buffer, written before every item).
"""

from __future__ import annotations

import multiprocessing
import os
import re
from typing import Iterator

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from basekit.errors import UserError
from tclap.data.stream.plan import DataPlan
from tclap.data.stream.readers import ChunkOptions, reader_chunks

_STATUS_BYTES = 1024


class StreamDataset(IterableDataset):
    """The chunks of the readers of process ``rank``; each DataLoader worker serves one reader."""

    def __init__(self, plan: DataPlan, rank: int, start: int, opts: ChunkOptions, status: list | None = None) -> None:
        super().__init__()
        self.plan, self.rank, self.start, self.opts, self.status = plan, rank, start, opts, status

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        w = 0 if info is None else info.id
        if info is not None:
            torch.set_num_threads(1)  # the workers share the cores with the training process
        buf = self.status[w] if self.status else None
        pid = os.getpid()

        def note(text: str) -> None:
            if buf is not None:
                buf.value = f"{pid}\t{text}".encode("utf-8", "replace")[: _STATUS_BYTES - 1]

        yield from reader_chunks(self.plan, self.plan.reader_of(self.rank, w), self.start, self.opts, note)


class ProcessStream:
    """This process's chunks, one list (one chunk per reader, in reader order) per micro-step from ``start``.

    Args:
        plan: the run's :class:`DataPlan`.
        rank: this process's index.
        start: the first micro-step (a resumed run's).
        opts: the readers' :class:`ChunkOptions`.
        timeout: seconds to wait for a worker's chunk before giving up with one line (workers only).
    """

    def __init__(self, plan: DataPlan, rank: int, start: int, opts: ChunkOptions, timeout: float = 600.0) -> None:
        self.plan, self.rank, self.workers, self.timeout = plan, rank, plan.workers, timeout
        if self.workers == 0:
            self.status = None
            self._it = iter(StreamDataset(plan, rank, start, opts))
            self.loader = None
            return
        ctx = multiprocessing.get_context()
        self.status = [ctx.RawArray("c", _STATUS_BYTES) for _ in range(self.workers)]
        self.loader = DataLoader(StreamDataset(plan, rank, start, opts, self.status), batch_size=None,
                                 num_workers=self.workers, timeout=timeout, prefetch_factor=2,
                                 multiprocessing_context=ctx)
        self._it = iter(self.loader)

    def __iter__(self) -> "ProcessStream":
        return self

    def __next__(self) -> list[dict]:
        chunks = [self._next_chunk() for _ in range(max(1, self.workers))]
        for c in chunks:
            if "error" in c:
                self.close()
                raise UserError(c["error"])
        return chunks

    def _next_chunk(self) -> dict:
        try:
            return next(self._it)
        except StopIteration:  # a worker ended without a chunk or an error line: it must have died
            self.close()
            raise UserError(f"rank {self.rank}: a data worker stopped early ({self._reading()}); run again with "
                            "--workers 0 to see the error in this process") from None
        except RuntimeError as exc:
            line = self.explain(exc)
            if line is None:
                raise
            raise UserError(line) from None

    def explain(self, exc: BaseException) -> str | None:
        """One line for a DataLoader error about a worker that died or timed out (None for any other error).

        The DataLoader raises it from ``next()``, or from its SIGCHLD handler wherever the training process is
        when a worker dies; the trainer asks here either way.
        """
        msg = str(exc)
        if not isinstance(exc, RuntimeError) or ("DataLoader worker" not in msg and "timed out" not in msg):
            return None
        self.close()
        pids = {int(p) for p in re.findall(r"\d+", msg.split("exited")[0])} if "exited" in msg else set()
        what = f"died ({msg.splitlines()[0][:120]})" if "timed out" not in msg else f"sent nothing for {self.timeout:g} s"
        return (f"rank {self.rank}: data worker {what} while reading {self._reading(pids)}; check that source "
                "(run with --workers 0 to read it in this process)")

    def _reading(self, pids: set[int] | None = None) -> str:
        """What the workers were reading (those with the given pids, when known)."""
        if not self.status:
            return "(no worker)"
        seen = []
        for w, buf in enumerate(self.status):
            raw = buf.value.decode("utf-8", "replace")
            pid, _, where = raw.partition("\t")
            if pids and pid.isdigit() and int(pid) not in pids:
                continue
            seen.append(f"worker {w}: {where or 'nothing yet'}")
        return "; ".join(seen) or "(unknown)"

    def close(self) -> None:
        """Stop the workers (the DataLoader iterator shuts them down when dropped)."""
        it, self._it = self._it, iter(())
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
