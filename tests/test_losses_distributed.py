"""The gathered loss with 2 CPU processes (gloo) equals one process on the same global batch: loss and gradients.

Each process holds a replica of a small model (two linear "towers" and the two logit scales) and its share of
the global batch (3 rows on rank 0, 2 on rank 1, so the uneven-size path is exercised). After backward, the
gradients are averaged across processes as DistributedDataParallel does; they must equal the gradients of a
single process that sees all 5 rows.
"""

from __future__ import annotations

import math

import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from tclap.losses import TClapLoss

SPLIT = [(0, 3), (3, 5)]


def _data():
    g = torch.Generator().manual_seed(1)
    xa = torch.randn(5, 6, generator=g)
    xt = torch.randn(5, 4, generator=g)
    xn = torch.randn(5, 4, generator=g)
    mask = torch.tensor([True, False, True, False, True])
    return xa, xt, xn, mask


def _model():
    torch.manual_seed(3)
    m = torch.nn.ModuleDict({"a": torch.nn.Linear(6, 8), "t": torch.nn.Linear(4, 8)})
    m.ls_a = torch.nn.Parameter(torch.tensor(math.log(5.0)))
    m.ls_t = torch.nn.Parameter(torch.tensor(math.log(3.0)))
    return m


def _step(m, xa, xt, xn, mask):
    fa = F.normalize(m["a"](xa), dim=-1)
    ft = F.normalize(m["t"](xt), dim=-1)
    fn = F.normalize(m["t"](xn), dim=-1)
    out = TClapLoss(lambda_t=0.5)(fa, ft, m.ls_a, m.ls_t, fn, mask)
    out["loss"].backward()
    return out


def _worker(rank: int, world: int, init_method: str, out_path: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world)
    try:
        xa, xt, xn, mask = _data()
        lo, hi = SPLIT[rank]
        m = _model()
        out = _step(m, xa[lo:hi], xt[lo:hi], xn[lo:hi], mask[lo:hi])
        for p in m.parameters():  # what DDP does: average gradients over processes
            dist.all_reduce(p.grad)
            p.grad /= world
        result = {k: v.detach() for k, v in out.items()}
        result["grads"] = {n: p.grad.clone() for n, p in m.named_parameters()}
        torch.save(result, f"{out_path}.{rank}")
        dist.barrier()  # gloo aborts a process whose peer tears down the group while it is still talking
    finally:
        dist.destroy_process_group()


def test_two_process_gather_matches_single_process(tmp_path):
    out_path = str(tmp_path / "res")
    # A rendezvous file, not a TCP port picked beforehand: a port found free and released could be taken by another
    # process (the other xdist worker) before rank 0 bound it.
    mp.spawn(_worker, args=(2, f"file://{tmp_path / 'rendezvous'}", out_path), nprocs=2, join=True)
    m = _model()
    ref = _step(m, *_data())
    ref_grads = {n: p.grad for n, p in m.named_parameters()}
    for rank in range(2):
        res = torch.load(f"{out_path}.{rank}")
        for k in ("loss", "contrastive_loss", "temporal_loss"):
            assert torch.allclose(res[k], ref[k].detach(), atol=1e-6), (rank, k)
        assert int(res["n_temporal"]) == 3
        for n, g in ref_grads.items():
            assert torch.allclose(res["grads"][n], g, atol=1e-6), (rank, n)
