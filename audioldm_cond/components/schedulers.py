"""Noise schedulers over AudioLDM's betas."""

from __future__ import annotations

from basekit.errors import UserError

# AudioLDM's noise schedule (cvssp/audioldm-s-full-v2 scheduler_config.json).
AUDIOLDM_BETAS = dict(num_train_timesteps=1000, beta_start=0.0015, beta_end=0.0195, beta_schedule="scaled_linear")


def make_scheduler(kind: str = "dpm", config: dict | None = None):
    """A scheduler over AudioLDM's betas (or those of ``config``): ``dpm`` (DPM-Solver++ 2M), ``ddim``, ``ddpm``."""
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler  # noqa: PLC0415 (heavy)

    base = dict(config or AUDIOLDM_BETAS)
    if kind == "dpm":
        return DPMSolverMultistepScheduler.from_config(base, algorithm_type="dpmsolver++", solver_order=2)
    if kind == "ddim":
        return DDIMScheduler.from_config(base, clip_sample=False, set_alpha_to_one=False)
    if kind == "ddpm":
        return DDPMScheduler.from_config(base, clip_sample=False)
    raise UserError(f"scheduler '{kind}' is unknown; use dpm (DPM-Solver++), ddim or ddpm")
