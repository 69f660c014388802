"""T-CLAP training losses (paper eq. 3): ``L_train = L_c + λ · L_t``.

Each loss is a small ``nn.Module`` that takes *features* (projected, L2-normalised embeddings) and the
model's log-temperatures, not the model (open_clip's ``ClipLoss`` shape), and returns named terms.

Logit scales: pass ``ClapModel.logit_scale_a`` / ``logit_scale_t`` as they are stored, i.e. the *logs* of the
temperatures; ``exp`` is applied here. As in ``ClapModel.forward``, ``exp(logit_scale_a)`` scales the
audio -> text logits (rows are clips) and ``exp(logit_scale_t)`` the text -> audio logits (rows are
captions). With ``logit_scale_t=None`` both directions use ``logit_scale_a`` (LAION-CLAP's ``ClipLoss``).
L_t compares two captions for one clip, an audio -> text decision, so it uses ``logit_scale_a``.
Clamping the scale (LAION clamps ``exp`` at 100) is the trainer's job.

The trainer adds one more term when items carry an order-swapped audio (``--negative-audio``):
:class:`AudioNegativeLoss`, the audio-side hard negative (the caption should prefer its clip over the same
events in the other order), weighted by the same λ.

Distributed: features are gathered across processes with gradients (:func:`tclap.distributed.gather_with_grad`)
so every process computes the loss of the *global* batch; see :mod:`tclap.distributed` for why DDP's
gradient averaging then reproduces single-process gradients exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tclap.distributed import gather_with_grad
from basekit.errors import UserError


def _check_pair(a: torch.Tensor, t: torch.Tensor, what: str) -> None:
    if a.ndim != 2 or t.ndim != 2 or a.shape != t.shape:
        raise UserError(
            f"{what}: audio features {tuple(a.shape)} and text features {tuple(t.shape)} must both be [B, D] "
            "with the same B (one caption per clip) and D"
        )


class ContrastiveLoss(nn.Module):
    """Symmetric InfoNCE over the (global) batch: L_c = (CE(s_a·A·Tᵀ, I) + CE(s_t·T·Aᵀ, I)) / 2.

    Args:
        gather: gather features across processes (when ``torch.distributed`` is initialised).
    """

    def __init__(self, gather: bool = True) -> None:
        super().__init__()
        self.gather = gather

    def forward(self, audio_features: torch.Tensor, text_features: torch.Tensor, logit_scale_a: torch.Tensor,
                logit_scale_t: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``audio_features [B, D]``, ``text_features [B, D]`` (row i is clip i's caption) -> ``{"contrastive_loss"}``."""
        _check_pair(audio_features, text_features, "contrastive loss")
        if self.gather:
            audio_features = gather_with_grad(audio_features)
            text_features = gather_with_grad(text_features)
        s_a = logit_scale_a.exp()
        s_t = logit_scale_t.exp() if logit_scale_t is not None else s_a
        sim = audio_features @ text_features.t()  # [N, N] cosine similarities, rows = clips
        labels = torch.arange(sim.shape[0], device=sim.device)
        loss_a2t = F.cross_entropy(s_a * sim, labels)
        loss_t2a = F.cross_entropy(s_t * sim.t(), labels)
        return {"contrastive_loss": (loss_a2t + loss_t2a) / 2}


class TemporalLoss(nn.Module):
    """Temporal-focused loss L_t (paper eq. 3), for the samples that have a negative caption.

    ``ℓ_i = -log( exp(s·a_i·t_i⁺) / (exp(s·a_i·t_i⁺) + exp(s·a_i·t_i⁻)) ) = softplus(s·(a_i·t_i⁻ - a_i·t_i⁺))``

    with ``s = exp(logit_scale_a)`` by default; ``use_logit_scale=False`` gives the paper's plain dot products
    (``s = 1``; cosines in [-1, 1] then give weak gradients). L_t is the **mean of ℓ_i over the samples that
    have a negative** (over the global batch when distributed); a batch without any returns 0 with a
    defined (zero) gradient.

    Args:
        use_logit_scale: multiply the similarities by ``exp(logit_scale_a)``.
        gather: gather features across processes.
    """

    def __init__(self, use_logit_scale: bool = True, gather: bool = True) -> None:
        super().__init__()
        self.use_logit_scale = use_logit_scale
        self.gather = gather

    def forward(self, audio_features: torch.Tensor, text_features: torch.Tensor,
                negative_text_features: torch.Tensor, has_negative: torch.Tensor,
                logit_scale_a: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Compute L_t.

        Args:
            audio_features: ``[B, D]`` clips.
            text_features: ``[B, D]`` positive captions t_i⁺.
            negative_text_features: ``[B, D]`` negative captions t_i⁻ (rows with ``has_negative`` False are ignored;
                fill them with anything, e.g. zeros).
            has_negative: ``[B]`` bool.
            logit_scale_a: the model's log-temperature (required when ``use_logit_scale``).

        Returns:
            ``{"temporal_loss": scalar, "n_temporal": int64 scalar}`` (the count of samples with negatives).
        """
        _check_pair(audio_features, text_features, "temporal loss")
        _check_pair(audio_features, negative_text_features, "temporal loss (negatives)")
        if has_negative.shape != (audio_features.shape[0],):
            raise UserError(f"has_negative has shape {tuple(has_negative.shape)}; expected [{audio_features.shape[0]}]")
        mask = has_negative.to(torch.bool)
        if self.gather:
            audio_features = gather_with_grad(audio_features)
            text_features = gather_with_grad(text_features)
            negative_text_features = gather_with_grad(negative_text_features)
            mask = gather_with_grad(mask)
        pos = (audio_features * text_features).sum(-1)  # [N] a_i·t_i⁺
        neg = (audio_features * negative_text_features).sum(-1)  # [N] a_i·t_i⁻
        if self.use_logit_scale:
            if logit_scale_a is None:
                raise UserError("TemporalLoss(use_logit_scale=True) needs logit_scale_a")
            scale = logit_scale_a.exp()
            pos, neg = scale * pos, scale * neg
        n = mask.sum()
        # softplus(neg - pos) == -log(e^pos / (e^pos + e^neg)), without overflow for large scales
        per_sample = F.softplus(neg - pos)
        # masked sum (not indexing) so an all-False mask still yields a graph-connected zero
        total = (per_sample * mask.to(per_sample.dtype)).sum()
        loss = total / n.clamp(min=1).to(per_sample.dtype)
        return {"temporal_loss": loss, "n_temporal": n.to(torch.long)}


class AudioNegativeLoss(nn.Module):
    """Audio-side hard negative: the caption should prefer its clip over the order-swapped clip.

    ``ℓ_i = softplus(s·(a_i⁻·t_i - a_i·t_i)) = -log( exp(s·a_i·t_i) / (exp(s·a_i·t_i) + exp(s·a_i⁻·t_i)) )``

    with ``s = exp(logit_scale_a)`` (always scaled: the trainer has used the learned scale for this term
    since it was added), ``a_i⁻`` the embedding of item i's negative audio (the same event instances in the
    reversed order). The term is the mean of ℓ_i over the rows given, which are the rows of **this process**
    that have a negative audio: it is not gathered (each ℓ_i needs only its own row), so with several
    processes DDP averages per-process means (the global mean when they hold equal numbers of such rows).
    The paper's T-Classify audio-to-text decision is this comparison (design.md).
    """

    def forward(self, audio_features: torch.Tensor, text_features: torch.Tensor,
                negative_audio_features: torch.Tensor, logit_scale_a: torch.Tensor) -> dict[str, torch.Tensor]:
        """``audio_features [N, D]`` (a_i), ``text_features [N, D]`` (t_i), ``negative_audio_features [N, D]``
        (a_i⁻), ``N >= 1`` -> ``{"audio_negative_loss": scalar}``."""
        _check_pair(audio_features, text_features, "audio negative loss")
        _check_pair(negative_audio_features, text_features, "audio negative loss (negative audio)")
        s = logit_scale_a.exp()
        pos = (audio_features * text_features).sum(-1)  # [N] a_i·t_i
        neg = (negative_audio_features * text_features).sum(-1)  # [N] a_i⁻·t_i
        return {"audio_negative_loss": F.softplus(s * (neg - pos)).mean()}


class TClapLoss(nn.Module):
    """``L_train = L_c + λ·L_t`` (paper: λ = 0.5).

    L_c sees every sample; L_t only the samples that carry a negative caption. Features are gathered once
    across processes and both terms are computed on the global batch.

    Returns ``{"loss", "contrastive_loss", "temporal_loss", "n_temporal"}``.
    """

    def __init__(self, lambda_t: float = 0.5, use_logit_scale: bool = True, gather: bool = True) -> None:
        super().__init__()
        if lambda_t < 0:
            raise UserError(f"lambda_t must be >= 0, got {lambda_t}")
        self.lambda_t = float(lambda_t)
        self.gather = gather
        self.contrastive = ContrastiveLoss(gather=False)
        self.temporal = TemporalLoss(use_logit_scale=use_logit_scale, gather=False)

    def forward(self, audio_features: torch.Tensor, text_features: torch.Tensor, logit_scale_a: torch.Tensor,
                logit_scale_t: torch.Tensor | None = None, negative_text_features: torch.Tensor | None = None,
                has_negative: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Shapes as in :class:`ContrastiveLoss` and :class:`TemporalLoss`; without negatives L_t is 0."""
        _check_pair(audio_features, text_features, "T-CLAP loss")
        b = audio_features.shape[0]
        if negative_text_features is None:
            negative_text_features = torch.zeros_like(text_features)
            has_negative = torch.zeros(b, dtype=torch.bool, device=audio_features.device)
        elif has_negative is None:
            has_negative = torch.ones(b, dtype=torch.bool, device=audio_features.device)
        if self.gather:
            audio_features = gather_with_grad(audio_features)
            text_features = gather_with_grad(text_features)
            negative_text_features = gather_with_grad(negative_text_features)
            has_negative = gather_with_grad(has_negative.to(torch.bool))
        lc = self.contrastive(audio_features, text_features, logit_scale_a, logit_scale_t)["contrastive_loss"]
        t = self.temporal(audio_features, text_features, negative_text_features, has_negative, logit_scale_a)
        return {
            "loss": lc + self.lambda_t * t["temporal_loss"],
            "contrastive_loss": lc,
            "temporal_loss": t["temporal_loss"],
            "n_temporal": t["n_temporal"],
        }
