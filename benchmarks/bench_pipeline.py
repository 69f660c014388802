"""Generation benchmarks for audioldm_cond (CPU by default). Prints Markdown tables.

1. ``TemporalAudioLDMPipeline`` vs diffusers' ``AudioLDMPipeline`` on the same tiny components (tiny random
   ``SpeechT5HifiGan`` vocoder for both), same steps, length and seed: wall time (median of alternating runs),
   ratio (goal <= 1.05) and the largest output difference (the two must agree numerically).
2. DPM-Solver++ at 20 steps vs DDIM at 200 steps on the same components: wall time. (FAD needs a trained
   model; with random weights it would measure nothing, so it is left to the trained embedded model's report.)
3. A real-size AudioLDM-s UNet (model_channels 128, channel_mult [1, 2, 3, 5], attention at 8/4/2, 2 res blocks,
   512-d class projection, random weights): latency of one guided step on an 8 x 256 x 16 latent (10.24 s).

    python benchmarks/bench_pipeline.py            # full
    python benchmarks/bench_pipeline.py --quick    # < 2 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def _timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def bench_vs_diffusers(comps, seconds: float, steps: int, repeats: int) -> list[str]:
    from audioldm_cond.pipeline import TemporalAudioLDMPipeline

    ref = comps.to_diffusers()
    ours = TemporalAudioLDMPipeline(comps, progress=False)
    prompt = "a beep followed by a knock"

    def run_ref():
        return ref(prompt, audio_length_in_s=seconds, num_inference_steps=steps,
                   generator=torch.Generator().manual_seed(0)).audios[0]

    def run_ours():
        # score=False: diffusers does not CLAP-score its output, so neither do we here (like with like)
        return ours(prompt, seconds=seconds, num_inference_steps=steps, seed=0, score=False).audios[0]

    run_ref(), run_ours()  # warm-up (allocator, oneDNN kernel choice)
    t_ref, t_ours = [], []
    for _ in range(repeats):  # alternate so that load changes on a shared machine hit both alike
        t, a_ref = _timed(run_ref, 1)
        t_ref.append(t)
        t, a_ours = _timed(run_ours, 1)
        t_ours.append(t)
    mr, mo = statistics.median(t_ref), statistics.median(t_ours)
    diff = float(np.abs(a_ref - a_ours).max() / (np.abs(a_ref).max() + 1e-30))
    return [
        "| pipeline | steps | seconds | median wall s | ratio vs diffusers | max rel. output diff |",
        "|---|---|---|---|---|---|",
        f"| diffusers AudioLDMPipeline (baseline) | {steps} | {seconds} | {mr:.3f} | 1.00 | - |",
        f"| TemporalAudioLDMPipeline | {steps} | {seconds} | {mo:.3f} | {mo / mr:.2f} | {diff:.1e} |",
    ]


def bench_schedulers(comps, seconds: float, dpm_steps: int, ddim_steps: int) -> list[str]:
    from audioldm_cond.components import make_scheduler
    from audioldm_cond.pipeline import TemporalAudioLDMPipeline

    pipe = TemporalAudioLDMPipeline(comps, progress=False)
    cfg = dict(comps.scheduler.config)
    rows = ["| scheduler | steps | wall s | ratio vs DDIM |", "|---|---|---|---|"]
    res = {}
    for kind, steps in (("ddim", ddim_steps), ("dpm", dpm_steps)):
        pipe.scheduler = make_scheduler(kind, cfg)
        res[kind] = (steps, _timed(lambda: pipe("a beep followed by a knock", seconds=seconds,
                                                num_inference_steps=steps, seed=0, score=False), 1)[0])
    base = res["ddim"][1]
    rows.append(f"| DDIM (baseline) | {res['ddim'][0]} | {base:.2f} | 1.00 |")
    rows.append(f"| DPM-Solver++ 2M | {res['dpm'][0]} | {res['dpm'][1]:.2f} | {res['dpm'][1] / base:.2f} |")
    return rows


def bench_real_unet(steps: int) -> list[str]:
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    ch = [128 * m for m in (1, 2, 3, 5)]
    unet = UNet2DConditionModel(
        sample_size=256, in_channels=8, out_channels=8,
        down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        block_out_channels=ch, layers_per_block=2, cross_attention_dim=ch,
        attention_head_dim=[c // 32 for c in ch],  # AudioLDM: 32 channels per head
        class_embed_type="simple_projection", projection_class_embeddings_input_dim=512, class_embeddings_concat=True,
    ).eval()
    n_params = sum(p.numel() for p in unet.parameters()) / 1e6
    x = torch.randn(2, 8, 256, 16)  # [uncond, cond] guidance batch of one 10.24 s clip
    labels = torch.nn.functional.normalize(torch.randn(2, 512), dim=-1)
    with torch.inference_mode():
        unet(x, 500, encoder_hidden_states=None, class_labels=labels)  # warm-up
        t, _ = _timed(lambda: unet(x, 500, encoder_hidden_states=None, class_labels=labels), steps)
    return [
        "| model | params (M) | latent | batch | s / step (CPU) | threads |",
        "|---|---|---|---|---|---|",
        f"| AudioLDM-s UNet (random) | {n_params:.1f} | 8x256x16 | 2 (CFG) | {t:.2f} | {torch.get_num_threads()} |",
    ]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer steps and repeats (< 2 min on 2 cores)")
    args = p.parse_args(argv)
    from audioldm_cond.components import build_tiny_components
    from tclap.models import load_clap

    comps = build_tiny_components(load_clap("tiny"), seed=0, vocoder="hifigan", unet_channels=(16, 32),
                                  vae_channels=(16, 32), max_seconds=2.56)
    q = args.quick
    print("## 1. Our pipeline vs diffusers' AudioLDMPipeline (same tiny components, CPU)\n")
    print("\n".join(bench_vs_diffusers(comps, seconds=1.28, steps=5 if q else 20, repeats=3 if q else 5)), "\n")
    print("## 2. DPM-Solver++ vs DDIM\n")
    print("\n".join(bench_schedulers(comps, 1.28, 5 if q else 20, 25 if q else 200)), "\n")
    print("## 3. Real-size AudioLDM-s UNet, one guided step\n")
    print("\n".join(bench_real_unet(1 if q else 3)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
