"""The one cross-process gather used by the losses (open_clip's ``gather_features``, reduced to one function).

With ``torch.distributed`` initialised and more than one process, :func:`gather_with_grad` concatenates every
process's rows in rank order. Gradients flow back to the process that owns the rows: the local rows are
the caller's own tensor (their autograd path is untouched, as open_clip does), and the remote rows come
from ``torch.distributed.nn.functional.all_gather``, whose backward sums each process's gradient into the
owner. Every process computes the same loss over the global batch, so each owner receives
``world_size x`` the single-process gradient of its rows; DistributedDataParallel's gradient *averaging*
then gives exactly the single-process gradient of the global batch (``tests/test_losses_distributed.py``).

Processes may hold different numbers of rows (a short last batch): sizes are exchanged first and rows
padded for the collective, then trimmed.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def world_info() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` when not running distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x [B_r, ...]`` from all processes in rank order -> ``[sum_r B_r, ...]``.

    Floating tensors keep gradients (see the module docstring); other dtypes (masks, counts) are gathered
    without. Outside a process group (or with one process) ``x`` is returned as is.
    """
    rank, world = world_info()
    if world == 1:
        return x
    size = torch.tensor([x.shape[0]], device=x.device, dtype=torch.long)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    sizes_i = [int(s.item()) for s in sizes]
    max_n = max(sizes_i)
    padded = x
    if x.shape[0] < max_n:
        pad = x.new_zeros((max_n - x.shape[0], *x.shape[1:]))
        padded = torch.cat([x, pad])
    if x.is_floating_point():
        from torch.distributed.nn.functional import all_gather  # noqa: PLC0415 (loads only when distributed)

        parts = list(all_gather(padded))
    else:
        parts = [torch.zeros_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded.contiguous())
    parts = [p[:n] for p, n in zip(parts, sizes_i)]
    parts[rank] = x  # local rows keep their own autograd path
    return torch.cat(parts)


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum a (non-differentiable) tensor over processes; identity outside a process group."""
    _, world = world_info()
    if world == 1:
        return x
    y = x.detach().clone()
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y


def native_bf16(device: str = "cpu") -> bool:
    """Whether ``device`` runs bf16 matmuls natively (a CUDA GPU with bf16; a CPU with AVX512-BF16 or AMX).

    On a CPU without them torch emulates bf16 autocast, which is far slower than fp32 (measured on an AVX2-only
    CPU: docs/notes/clap-recipe.md), while a CPU with AMX runs it faster than fp32.
    """
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN: read the CPU's feature flags
        caps = getattr(torch._C._cpu, "_get_cpu_capability", dict)()
        return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))


def resolve_mixed_precision(mixed_precision: str) -> str:
    """``"auto"`` -> ``"bf16"`` where the training device runs bf16 natively (:func:`native_bf16`), else ``"no"``
    (fp32); any other value is returned as it is."""
    if mixed_precision != "auto":
        return mixed_precision
    return "bf16" if native_bf16("cuda" if torch.cuda.is_available() else "cpu") else "no"


def make_accelerator(mixed_precision: str = "no", **kwargs):
    """``accelerate.Accelerator(mixed_precision=..., **kwargs)`` that also works for a second run in one process.

    accelerate keeps one ``AcceleratorState`` per process and refuses a new ``Accelerator`` whose
    ``mixed_precision`` differs from the first one's (a notebook or a test that trains fp32, then bf16).
    When that is the case, the precision part of the state is cleared first; the process-group part
    (``PartialState``) is kept, so a launched multi-process job is not touched (its runs share one precision).
    """
    from accelerate import Accelerator  # noqa: PLC0415
    from accelerate.state import AcceleratorState  # noqa: PLC0415

    shared = AcceleratorState._shared_state
    if shared and str(shared.get("_mixed_precision", mixed_precision)) != str(mixed_precision):
        AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(mixed_precision=mixed_precision, **kwargs)
