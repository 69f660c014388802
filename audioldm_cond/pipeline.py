"""Text-to-audio generation with a CLAP/T-CLAP-conditioned AudioLDM: one ``__call__``, scheduler swappable.

The maths is that of diffusers' ``AudioLDMPipeline`` (so a benchmark compares like with like and the outputs match
for the same seed): text condition ``c = normalize(CLAP_text(prompt))``, null condition ``u`` = the empty prompt's
embedding (or the negative prompt's), latents ``x_T ~ N(0, I) * init_noise_sigma``, and at each step one UNet call
on the batch ``[x, x]`` with class labels ``[u, c]``, then classifier-free guidance
``eps = eps_u + g * (eps_c - eps_u)`` and a scheduler step; finally VAE decode -> log-mel -> vocoder.

Differences from diffusers, none of which changes the numbers:

- per-output seeds: output ``j`` (prompt ``i``, candidate ``k``, ``j = i * num_candidates + k``) starts from
  ``randn`` drawn with ``torch.Generator().manual_seed(seed + j)``, so any one output can be regenerated alone
  (with a single prompt and ``seed=s`` it equals diffusers with ``generator=torch.Generator().manual_seed(s)``);
- outputs are processed in chunks of ``batch_size`` whatever the number of prompts, and the result does not depend
  on ``batch_size``;
- several candidates per prompt are re-ranked by the CLAP score (cosine of the prompt's and the generated audio's
  CLAP embeddings), best first;
- conditions are encoded once per call and the guidance batch is built once per chunk, under ``inference_mode``.

One addition that does change the numbers, and only for models that record a ``latent_range`` (the trainer does):
each step's predicted clean latent is clamped to the training latents' per-channel range before the scheduler
step (``clip_latents``, on by default for such models). The tiny models' deterministic DPM-Solver / DDIM
trajectories otherwise drift into broadband smears; clamped, the same 20 steps give separate events.
"""

from __future__ import annotations

import inspect
import math
import secrets
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from audioldm_cond.components import AudioLDMComponents, clamp_prediction
from audioldm_cond.conditioning import ClapConditioner
from basekit.errors import UserError


@dataclass
class GenerationOutput:
    """What :class:`TemporalAudioLDMPipeline` returns; lists are aligned, grouped per prompt, best first.

    Attributes:
        audios: float32 waveforms ``[T]`` at ``sample_rate``, as the vocoder made them: their peak may pass full scale
            (the tiny models' does), so set the level before writing (:func:`basekit.audio.set_level`, as
            ``audioldm-cond generate`` does; :func:`basekit.audio.save_audio` warns rather than clip silently).
        mels: the generated log-mels ``[frames, n_mels]`` (VAE output, before the vocoder).
        scores: CLAP score (cosine, in [-1, 1]) of each output against its prompt; None when no CLAP with an audio
            branch is available to score.
        prompts, prompt_index: the prompt of each output and its position in the input list.
        seeds: the seed each output's initial noise was drawn with (None when a ``generator`` was given).
        candidate_rank: 0 for the best candidate of its prompt, 1 for the next, ...
    """

    audios: list[np.ndarray]
    mels: list[np.ndarray]
    scores: list[float] | None
    prompts: list[str]
    prompt_index: list[int]
    seeds: list[int | None]
    candidate_rank: list[int]
    sample_rate: int
    seconds: float
    extra: dict = field(default_factory=dict)

    def best(self) -> list[int]:
        """Indices of the best output of each prompt, in prompt order."""
        return [j for j, r in enumerate(self.candidate_rank) if r == 0]


def _check_prompts(prompt) -> list[str]:
    if isinstance(prompt, str):
        prompts = [prompt]
    elif isinstance(prompt, (list, tuple)):
        prompts = list(prompt)
    else:
        raise UserError(f"prompt must be a string or a list of strings, got {type(prompt).__name__}")
    if not prompts:
        raise UserError("no prompt given; pass at least one text such as 'a beep followed by a knock'")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise UserError(f"prompt {i + 1} is a {type(p).__name__}, not text")
        if not p.strip():
            raise UserError(
                f"prompt {i + 1} is empty; describe the sound, e.g. 'a beep followed by a knock' "
                "(the empty prompt is the unconditional case that guidance uses)"
            )
    return prompts


class TemporalAudioLDMPipeline:
    """Generate audio from text with :class:`AudioLDMComponents` (see the module docstring).

    Example::

        pipe = TemporalAudioLDMPipeline(load_components("tiny-tclap"))
        out = pipe("a beep followed by a knock", seconds=4, seed=0)
        out.audios[0]  # np.ndarray [T] at out.sample_rate

    The scheduler is swappable: ``pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)``.
    """

    def __init__(self, components: AudioLDMComponents, scorer=None, progress: bool | None = None):
        """
        Args:
            components: the model.
            scorer: the CLAP that re-ranks candidates (a ``ClapBundle``, a ``ClapConditioner`` or a name ``tclap``
                loads); default: the conditioning CLAP when it has an audio branch.
            progress: show a tqdm bar (default: only on a terminal).
        """
        self.components = components
        self.progress = progress
        self._scorer_arg = scorer
        self._scorer: ClapConditioner | None = None

    @property
    def scheduler(self):
        return self.components.scheduler

    @scheduler.setter
    def scheduler(self, value) -> None:
        self.components.scheduler = value

    @property
    def scorer(self) -> ClapConditioner | None:
        """The CLAP used for scores and re-ranking (None if none with an audio branch is available)."""
        if self._scorer is None:
            s = self._scorer_arg
            if s is None:
                cond = self.components.conditioner
                self._scorer = cond if cond.has_audio else None
            elif isinstance(s, ClapConditioner):
                self._scorer = s
            else:
                self._scorer = ClapConditioner(s, source="text", cfg_dropout=0.0)
                if not self._scorer.has_audio:
                    raise UserError(f"scorer CLAP '{self._scorer.clap_name}' has no audio branch; pick a full CLAP")
        return self._scorer

    # ------------------------------------------------------------------------------------------ checks
    def check_seconds(self, seconds: float) -> float:
        c = self.components
        try:
            seconds = float(seconds)
        except (TypeError, ValueError):
            raise UserError(f"seconds={seconds!r} is not a number") from None
        if not math.isfinite(seconds) or seconds <= 0:
            raise UserError(f"seconds={seconds:g} must be a positive length, e.g. 4")
        if seconds < c.min_seconds - 1e-9:
            raise UserError(f"seconds={seconds:g} is shorter than one latent frame ({c.min_seconds:g} s); ask for more")
        if seconds > c.config.max_seconds + 1e-9:
            raise UserError(
                f"seconds={seconds:g} is beyond this model's limit of {c.config.max_seconds:g} s; ask for at most "
                f"{c.config.max_seconds:g}"
            )
        return seconds

    # ------------------------------------------------------------------------------------------ call
    @torch.inference_mode()
    def __call__(
        self,
        prompt: str | Sequence[str],
        seconds: float | None = None,
        num_inference_steps: int = 20,
        guidance_scale: float = 2.5,
        negative_prompt: str | Sequence[str] | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        num_candidates: int = 1,
        batch_size: int = 8,
        eta: float = 0.0,
        score: bool = True,
        clip_latents: bool | None = None,
    ) -> GenerationOutput:
        """Generate ``num_candidates`` clips per prompt.

        Args:
            prompt: one text or a list (N prompts).
            seconds: clip length (default: the model's ``max_seconds``); ``0 < seconds <= max_seconds``.
            num_inference_steps: scheduler steps (20 suits DPM-Solver++; DDIM needs ~200 for the same quality).
            guidance_scale: classifier-free guidance weight ``g``; ``<= 1`` turns guidance off (one UNet pass).
            negative_prompt: replaces the empty prompt as the null condition (one text, or one per prompt).
            seed: output ``j`` uses ``seed + j`` (random when None and no ``generator``; the seeds are returned).
            generator: instead of ``seed``, draw all initial noise from this generator in one call (diffusers' way).
            num_candidates: clips per prompt, re-ranked by CLAP score, best first.
            batch_size: outputs denoised together (memory vs speed; results do not depend on it).
            eta: DDIM's eta (ignored by other schedulers).
            score: compute CLAP scores (when a CLAP with an audio branch is available); always on for re-ranking.
            clip_latents: clamp each step's predicted clean latent to the model's recorded training range
                (``config.latent_range``; see :func:`~audioldm_cond.components.clamp_prediction`). Default: on
                when the model has a range, off otherwise.

        Returns:
            :class:`GenerationOutput` with ``N * num_candidates`` outputs.
        """
        c = self.components
        prompts = _check_prompts(prompt)
        seconds = self.check_seconds(c.config.max_seconds if seconds is None else seconds)
        if int(num_inference_steps) < 1:
            raise UserError(f"num_inference_steps={num_inference_steps} must be at least 1")
        if int(num_candidates) < 1:
            raise UserError(f"num_candidates={num_candidates} must be at least 1")
        if int(batch_size) < 1:
            raise UserError(f"batch_size={batch_size} must be at least 1")
        if not math.isfinite(float(guidance_scale)) or guidance_scale < 0:
            raise UserError(f"guidance_scale={guidance_scale} must be a number >= 0 (2.5 is AudioLDM's default)")
        n_cand, n_prompts = int(num_candidates), len(prompts)
        rng = c.config.latent_range
        if clip_latents and rng is None:
            raise UserError(f"clip_latents=True but model {c.config.name!r} has no recorded latent_range (train it "
                            "with this version, or leave clipping off)")
        clip = rng is not None if clip_latents is None else bool(clip_latents)
        if n_cand > 1 and self.scorer is None:
            raise UserError(
                "re-ranking candidates needs a CLAP with an audio branch, but this model's text encoder is text-only; "
                "pass a scorer CLAP (--scorer) or use 1 candidate"
            )
        negatives = self._negatives(negative_prompt, n_prompts)
        use_cfg = guidance_scale > 1.0
        device = c.device
        total = n_prompts * n_cand

        # Conditions: encoded once per distinct prompt, then repeated per candidate ([p0, p0, p1, p1, ...]).
        cond = c.conditioner.encode_text(prompts).to(device).repeat_interleave(n_cand, dim=0)  # [N*K, D]
        if use_cfg:
            if negatives is None:
                uncond = c.conditioner.unconditional(total).to(device)
            else:
                uncond = c.conditioner.encode_text(negatives).to(device).repeat_interleave(n_cand, dim=0)

        frames = c.frames_for(seconds)
        shape = (c.unet.config.out_channels, frames // c.vae_scale_factor, c.mel.n_mels // c.vae_scale_factor)
        if generator is not None:
            seeds: list[int | None] = [None] * total
            noise = torch.randn((total, *shape), generator=generator, device=generator.device, dtype=torch.float32)
        else:
            base = int(seed) if seed is not None else secrets.randbelow(2**31)
            seeds = [base + j for j in range(total)]
            noise = torch.stack(
                [torch.randn((1, *shape), generator=torch.Generator().manual_seed(s))[0] for s in seeds]
            )
        noise = noise.to(device)

        sched = c.scheduler
        udt = c.unet.dtype
        step_params = set(inspect.signature(sched.step).parameters)
        step_kwargs = {"eta": eta} if "eta" in step_params else {}
        if "generator" in step_params and generator is not None:
            step_kwargs["generator"] = generator
        n_samples = int(seconds * c.sample_rate)
        audios: list[np.ndarray] = []
        mels: list[np.ndarray] = []
        disable = None if self.progress is None else not self.progress  # None: tqdm shows the bar on a TTY only
        bar = tqdm(total=total * int(num_inference_steps), desc="generate", unit="step", disable=disable)
        try:
            for lo in range(0, total, int(batch_size)):
                hi = min(total, lo + int(batch_size))
                labels = torch.cat([uncond[lo:hi], cond[lo:hi]]) if use_cfg else cond[lo:hi]
                sched.set_timesteps(int(num_inference_steps), device=device)
                latents = noise[lo:hi] * sched.init_noise_sigma
                for t in sched.timesteps:
                    x = torch.cat([latents, latents]) if use_cfg else latents
                    x = sched.scale_model_input(x, t)
                    # Latents and the scheduler's arithmetic stay float32; a half-precision UNet (GPU) gets
                    # its own dtype and its output comes back as float32.
                    eps = c.unet(x.to(udt), t, encoder_hidden_states=None, class_labels=labels.to(udt)).sample.float()
                    if use_cfg:
                        eps_u, eps_c = eps.chunk(2)
                        eps = eps_u + guidance_scale * (eps_c - eps_u)
                    if clip:
                        eps = clamp_prediction(sched, eps, latents, t, rng)
                    latents = sched.step(eps, t, latents, **step_kwargs).prev_sample
                    bar.update(hi - lo)
                mel = c.latents_to_mel(latents)  # [b, 1, frames, n_mels]
                # The vocoder may sit elsewhere than the UNet (a trainer moves only what it trains to the GPU).
                wave = c.vocoder(mel[:, 0].to(device=_module_device(c.vocoder, device), dtype=c.vocoder.dtype))
                wave = wave.float().cpu()[:, :n_samples]  # [b, T]
                audios.extend(w.numpy().astype(np.float32) for w in wave)
                mels.extend(m.float().cpu().numpy() for m in mel[:, 0])
        finally:
            bar.close()

        want = score or n_cand > 1
        scores = self._score(prompts, audios, n_cand) if want and self.scorer is not None else None
        order = list(range(total))
        if scores is not None:
            # Within each prompt's group, best CLAP score first (stable: ties keep generation order).
            order = []
            for i in range(n_prompts):
                group = list(range(i * n_cand, (i + 1) * n_cand))
                order.extend(sorted(group, key=lambda j: -scores[j]))
        return GenerationOutput(
            audios=[audios[j] for j in order],
            mels=[mels[j] for j in order],
            scores=[scores[j] for j in order] if scores is not None else None,
            prompts=[prompts[j // n_cand] for j in order],
            prompt_index=[j // n_cand for j in order],
            seeds=[seeds[j] for j in order],
            candidate_rank=[p - (j // n_cand) * n_cand for p, j in enumerate(order)],
            sample_rate=c.sample_rate,
            seconds=seconds,
            extra={"steps": int(num_inference_steps), "guidance_scale": float(guidance_scale),
                   "scheduler": type(sched).__name__, "negative_prompt": negative_prompt, "clip_latents": clip},
        )

    def _negatives(self, negative_prompt, n: int) -> list[str] | None:
        if negative_prompt is None:
            return None
        if isinstance(negative_prompt, str):
            return [negative_prompt] * n
        neg = list(negative_prompt)
        if len(neg) != n:
            raise UserError(f"{len(neg)} negative prompts for {n} prompts; give one, or one per prompt")
        return neg

    def _score(self, prompts: list[str], audios: list[np.ndarray], n_cand: int) -> list[float]:
        """CLAP cosine between each output and its prompt."""
        s = self.scorer
        text = s.raw_text(prompts, warn=False)  # [N, D], already L2-normalised
        audio = s.raw_audio(audios, sr=self.components.sample_rate)  # [N*K, D]
        text = text.to(audio.device).repeat_interleave(n_cand, dim=0)
        return [float(v) for v in (text * audio).sum(-1).cpu()]


def _module_device(module, default: torch.device) -> torch.device:
    """The device of a module's first parameter or buffer (``default`` for a module with neither)."""
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device(default)
