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
    python benchmarks/bench_pipeline.py --device cuda --real-size --dtype fp16   # on a GPU

``--real-size`` runs tables 1 and 2 on AudioLDM-s-sized components with random weights (VAE 128-256-512 with 8
latent channels, the UNet of table 3, a full-size ``SpeechT5HifiGan``, a RoBERTa-base CLAP text tower with the
built-in tiny tokenizer) at 10.24 s, the setting diffusers' AudioLDM documentation times.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


_SYNC = {"cuda": False}


def _timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        if _SYNC["cuda"]:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if _SYNC["cuda"]:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def build_real_size_components(seed: int = 0):
    """AudioLDM-s-sized components with random weights (see the module docstring)."""
    from diffusers import AutoencoderKL
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    from audioldm_cond.components import AudioLDMComponents, ComponentsConfig, make_scheduler
    from audioldm_cond.conditioning import ClapConditioner
    from audioldm_cond.mel import AudioLDMMelConfig, AudioLDMMelFrontEnd
    from tclap.models.factory import from_config
    from tclap.models.tokenizer import build_tiny_tokenizer

    mel = AudioLDMMelConfig()
    clap = from_config("htsat-tiny-roberta", tokenizer=build_tiny_tokenizer(model_max_length=77), seed=seed)
    torch.manual_seed(seed)
    vae = AutoencoderKL(in_channels=1, out_channels=1, down_block_types=["DownEncoderBlock2D"] * 3,
                        up_block_types=["UpDecoderBlock2D"] * 3, block_out_channels=[128, 256, 512],
                        latent_channels=8, layers_per_block=2, sample_size=512)
    voc = SpeechT5HifiGan(SpeechT5HifiGanConfig(
        model_in_dim=64, sampling_rate=16000, upsample_initial_channel=1024, upsample_rates=[5, 4, 2, 2, 2],
        upsample_kernel_sizes=[16, 16, 8, 4, 4], resblock_kernel_sizes=[3, 7, 11],
        resblock_dilation_sizes=[[1, 3, 5]] * 3, normalize_before=False))
    comps = AudioLDMComponents(
        vae=vae.eval(), unet=_real_unet(projection_dim=clap.model.config.projection_dim).eval(),
        scheduler=make_scheduler("dpm"), vocoder=voc.eval(), mel=AudioLDMMelFrontEnd(**mel.__dict__),
        conditioner=ClapConditioner(clap, source="text"),
        config=ComponentsConfig(name="audioldm-s-random", mel=mel, max_seconds=10.24, vocoder="hifigan"))
    return comps.validate()


def _real_unet(projection_dim: int = 512):
    """AudioLDM-s's UNet (model_channels 128, mult 1-2-3-5, attention at the lower three levels), random."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    ch = [128 * m for m in (1, 2, 3, 5)]
    return UNet2DConditionModel(
        sample_size=256, in_channels=8, out_channels=8,
        down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        block_out_channels=ch, layers_per_block=2, cross_attention_dim=ch,
        attention_head_dim=[c // 32 for c in ch],  # AudioLDM: 32 channels per head
        class_embed_type="simple_projection", projection_class_embeddings_input_dim=projection_dim,
        class_embeddings_concat=True,
    )


def bench_vs_diffusers(comps, seconds: float, steps: int, repeats: int, dtype=torch.float32) -> list[str]:
    from audioldm_cond.pipeline import TemporalAudioLDMPipeline

    ref = comps.to_diffusers()
    ref.text_encoder.to(dtype)  # diffusers runs every model in the text encoder's dtype
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


def bench_real_unet(steps: int, device: str = "cpu", dtype=torch.float32) -> list[str]:
    unet = _real_unet().to(device=device, dtype=dtype)
    n_params = sum(p.numel() for p in unet.parameters()) / 1e6
    x = torch.randn(2, 8, 256, 16, device=device, dtype=dtype)  # [uncond, cond] guidance batch of one 10.24 s clip
    labels = torch.nn.functional.normalize(torch.randn(2, 512, device=device), dim=-1).to(dtype)
    with torch.inference_mode():
        unet(x, 500, encoder_hidden_states=None, class_labels=labels)  # warm-up
        t, _ = _timed(lambda: unet(x, 500, encoder_hidden_states=None, class_labels=labels), steps)
    where = torch.cuda.get_device_name() if device != "cpu" else f"CPU, {torch.get_num_threads()} threads"
    return [
        "| model | params (M) | latent | batch | dtype | s / step | device |",
        "|---|---|---|---|---|---|---|",
        f"| AudioLDM-s UNet (random) | {n_params:.1f} | 8x256x16 | 2 (CFG) | {str(dtype).split('.')[-1]} | {t:.4f} | {where} |",
    ]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer steps and repeats (< 2 min on 2 cores)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "fp16", "bf16"),
                   help="VAE / UNet / vocoder dtype (fp16 / bf16 on a GPU)")
    p.add_argument("--real-size", action="store_true", help="tables 1-2 on AudioLDM-s-sized random components, 10.24 s")
    args = p.parse_args(argv)
    if args.device != "cpu" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: no CUDA device here; use --device cpu")
    _SYNC["cuda"] = args.device != "cpu"
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    from audioldm_cond.components import build_tiny_components
    from tclap.models import load_clap

    q = args.quick
    if args.real_size:
        comps, seconds = build_real_size_components(), 10.24
    else:
        comps = build_tiny_components(load_clap("tiny"), seed=0, vocoder="hifigan", unet_channels=(16, 32),
                                      vae_channels=(16, 32), max_seconds=2.56)
        seconds = 1.28
    comps.to(args.device)
    for m in (comps.vae, comps.unet, comps.vocoder):
        m.to(dtype)
    where = torch.cuda.get_device_name() if args.device != "cpu" else "CPU"
    size = "AudioLDM-s-sized random" if args.real_size else "tiny"
    print(f"device: {where}; components: {size}; dtype {args.dtype}; {seconds} s\n")
    print(f"## 1. Our pipeline vs diffusers' AudioLDMPipeline (same {size} components)\n")
    print("\n".join(bench_vs_diffusers(comps, seconds=seconds, steps=5 if q else 20, repeats=3 if q else 5,
                                      dtype=dtype)), "\n")
    print("## 2. DPM-Solver++ vs DDIM\n")
    print("\n".join(bench_schedulers(comps, seconds, 5 if q else 20, 25 if q else 200)), "\n")
    print("## 3. Real-size AudioLDM-s UNet, one guided step\n")
    print("\n".join(bench_real_unet(1 if q else (20 if args.device != "cpu" else 3), args.device, dtype)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
