"""``audioldm-cond``: generate audio from text (``generate``) and train (``train``, see ``audioldm_cond.train``).

``audioldm-cond generate "a beep followed by a knock" --out gen/`` writes ``gen/<id>.wav``, ``gen/<id>.png`` (the
log-mel with the prompt as title) and ``gen/prompts.jsonl`` (``id``, ``prompt``, ``seed``, ``score``, settings),
the folder layout ``eval-gen score`` reads. Re-running the same command skips the clips already written with the
same settings (it resumes), and says how many it skipped.

Levels: a clip is written by :func:`basekit.audio.set_level`'s policy: turned down only when its peak would pass
-1 dBFS, never turned up (``--normalize peak|loudness`` opt in, the upward gain capped by ``--max-gain-db``), so
no sample reaches full scale. Each record's ``level`` holds the peak (dBFS) and loudness (LUFS) before and after
and the gain; a clip that would have clipped, or is near-silent (peak below -60 dBFS before any gain), is a
warning on stderr.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Sequence

from basekit.device import DEVICE_HELP, resolve_device
from basekit.errors import UserError, cli_entry

PROMPTS_FILE = "prompts.jsonl"
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


# ----------------------------------------------------------------------------------------------- prompts
def _slug(text: str, n: int = 40) -> str:
    s = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return s[:n].rstrip("_") or "prompt"


def read_prompts(positional: Sequence[str], path: str | None) -> list[dict]:
    """Prompts from the command line and/or a file -> ``[{"id", "prompt"}]`` in order.

    A ``.jsonl`` file holds objects with ``prompt`` (or ``text`` / ``caption``) and an optional ``id``; any other
    file holds one prompt per line (blank lines and ``#`` comments are not prompts).
    """
    items: list[dict] = [{"prompt": p, "where": f"prompt {i + 1} on the command line"} for i, p in enumerate(positional)]
    if path:
        p = Path(path)
        if not p.is_file():
            raise UserError(f"prompts file not found: {p} (one prompt per line, or JSON Lines with a 'prompt' key)")
        lines = p.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines, 1):
            where = f"{p}:{n}"
            if p.suffix == ".jsonl":
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except ValueError as exc:
                    raise UserError(f"{where} is not valid JSON ({exc.msg}); fix or remove the line") from None
                text = next((obj[k] for k in ("prompt", "text", "caption") if isinstance(obj, dict) and k in obj), None)
                if not isinstance(text, str):
                    raise UserError(f"{where} has no 'prompt' text field; add one")
                items.append({"prompt": text, "id": obj.get("id"), "where": where})
            else:
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                items.append({"prompt": line.strip(), "where": where})
    if not items:
        raise UserError("no prompts: give PROMPT arguments or --prompts FILE")
    seen: set[str] = set()
    for i, it in enumerate(items):
        if not it["prompt"].strip():
            raise UserError(f"{it['where']} is an empty prompt; describe the sound, e.g. 'a beep followed by a knock'")
        pid = it.get("id")
        if pid is None:
            pid = f"{i:04d}_{_slug(it['prompt'])}"
        pid = str(pid)
        if not _SAFE_ID.match(pid):
            raise UserError(f"{it['where']}: id {pid!r} is not a safe file name (letters, digits, _ . - only)")
        if pid in seen:
            raise UserError(f"{it['where']}: id {pid!r} is used twice; ids name the output files and must be unique")
        seen.add(pid)
        it["id"] = pid
    return items


def _read_records(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    out = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            out[str(rec["id"])] = rec
        except (ValueError, KeyError, TypeError):
            raise UserError(f"{path}:{n} is not a generation record; move the file away or choose another --out") from None
    return out


def _write_records(path: Path, records: dict[str, dict], order: list[str]) -> None:
    from basekit.atomic import atomic_write_text

    ids = [i for i in order if i in records] + [i for i in records if i not in set(order)]
    atomic_write_text(path, "".join(json.dumps(records[i], ensure_ascii=False) + "\n" for i in ids))


def _runs(indices: list[int], size: int) -> list[list[int]]:
    """Split sorted ``indices`` into runs of consecutive numbers, each at most ``size`` long."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and runs[-1][-1] == i - 1 and len(runs[-1]) < size:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


# ----------------------------------------------------------------------------------------------- generate
def add_generate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("prompt", nargs="*", help="text prompt(s), e.g. 'a beep followed by a knock'")
    p.add_argument("--prompts", help="file of prompts: one per line, or JSON Lines with 'prompt' (and 'id')")
    p.add_argument("--out", help="output folder for <id>.wav, <id>.png and prompts.jsonl (required to generate)")
    p.add_argument("--list-events", action="store_true",
                   help="print the sound events --model was trained on, one phrase per line, and exit (no --out)")
    p.add_argument("--model", default="tiny-tclap", help="tiny-tclap (default), tiny-baseline, or an AudioLDM directory")
    p.add_argument("--text-encoder", help="swap the conditioning CLAP: a name or directory tclap loads")
    p.add_argument("--adapter", action="store_true", help="with --text-encoder of another size: a linear adapter")
    p.add_argument("--scorer", help="CLAP that scores and re-ranks candidates (default: the conditioning CLAP)")
    p.add_argument("--seconds", type=float, help="clip length (default: the model's maximum)")
    p.add_argument("--steps", type=int, default=20, help="denoising steps (default 20)")
    p.add_argument("--guidance", type=float, default=2.5, help="classifier-free guidance scale (default 2.5)")
    p.add_argument("--negative-prompt", help="what to steer away from (replaces the empty prompt in guidance)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first clip; clip j uses seed + j (default 0)")
    p.add_argument("--candidates", type=int, default=1, help="clips per prompt, best CLAP score kept (default 1)")
    p.add_argument("--scheduler", choices=("dpm", "ddim"), default="dpm", help="DPM-Solver++ (default) or DDIM")
    p.add_argument("--batch-size", type=int, default=8, help="clips denoised together (default 8)")
    p.add_argument("--no-clip-latents", action="store_true",
                   help="do not clamp predicted latents to the model's training range (on when the model has one)")
    p.add_argument("--normalize", choices=("none", "peak", "loudness"), default="none",
                   help="level of the written clips: none (default: turned down only if the peak would pass -1 dBFS, "
                        "never up), peak (peak at -1 dBFS) or loudness (--target-lufs, peak at most -1 dBFS)")
    p.add_argument("--target-lufs", type=float, default=-23.0, help="loudness target of --normalize loudness "
                   "(default -23 LUFS, EBU R128)")
    p.add_argument("--max-gain-db", type=float, default=20.0,
                   help="cap on the upward gain of --normalize peak/loudness (default 20 dB)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--verbose", action="store_true",
                   help="also the progress bars of transformers / diffusers (e.g. 'Loading weights')")


def _warn(msg: str) -> None:
    print(f"audioldm-cond: warning: {msg}", file=sys.stderr)


def _fmt_db(v: float | None, unit: str = "dBFS") -> str:
    return "-inf " + unit if v is None else f"{v:+.1f} {unit}"


def _level_warnings(clip_id: str, level: dict) -> None:
    """One stderr line for a clip that would have clipped, and one for a near-silent clip."""
    if level["would_clip"]:
        _warn(f"{clip_id}: the model's output peaked at {_fmt_db(level['peak_dbfs_before'])}, over full scale; "
              f"turned down {-level['gain_db']:.1f} dB to {_fmt_db(level['peak_dbfs_after'])} instead of clipping")
    if level["silent"]:
        _warn(f"{clip_id}: near-silent output (peak {_fmt_db(level['peak_dbfs_before'])} before any gain, below "
              f"{level['silence_dbfs']:g} dBFS); it is written as is, not turned up")


def model_max_seconds(model: str) -> float | None:
    """The longest clip ``model`` generates, read from its config files alone (no weights load), so that a bad
    ``--seconds`` fails at once. ``None`` when the files do not say (the load then checks it)."""
    from audioldm_cond.components import CONFIG_FILE, ComponentsConfig, resolve_model_dir  # noqa: PLC0415

    root = resolve_model_dir(model)  # a missing model is one line here too
    try:
        if (root / CONFIG_FILE).is_file():
            return float(ComponentsConfig.from_dict(json.loads((root / CONFIG_FILE).read_text())).max_seconds)
        # a plain diffusers AudioLDM: latent frames x VAE downsampling x the vocoder's hop, as load_components does
        unet = json.loads((root / "unet" / "config.json").read_text())
        vae = json.loads((root / "vae" / "config.json").read_text())
        voc = json.loads((root / "vocoder" / "config.json").read_text())
        hop = 1
        for r in voc["upsample_rates"]:
            hop *= int(r)
        frames = int(unet["sample_size"]) * 2 ** (len(vae["block_out_channels"]) - 1)
        return frames * hop / float(voc["sampling_rate"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _check_clap_arg(flag: str, value: str | None) -> None:
    """A ``--text-encoder`` / ``--scorer`` that names a local path which is not there: one line before any load."""
    if not value:
        return
    from tclap.models.factory import looks_like_local_path  # noqa: PLC0415

    if looks_like_local_path(value) and not Path(value).expanduser().exists():
        raise UserError(f"{flag} {value}: not found (no such folder or file; a CLAP name, directory, .pt checkpoint "
                        "or hub id owner/name)")


def check_generate_args(args: argparse.Namespace) -> None:
    """Every check that needs no weights, run before the (slow) model load."""
    for name, v in (("--steps", args.steps), ("--candidates", args.candidates), ("--batch-size", args.batch_size)):
        if v < 1:
            raise UserError(f"{name} {v} must be at least 1")
    if args.seconds is not None and not (args.seconds > 0 and args.seconds != float("inf")):
        raise UserError(f"--seconds {args.seconds:g} must be a positive length, e.g. 4")
    if not (args.guidance >= 0 and args.guidance != float("inf")):
        raise UserError(f"--guidance {args.guidance:g} must be a number >= 0 (2.5 is AudioLDM's default)")
    if not args.max_gain_db >= 0 or args.max_gain_db == float("inf"):
        raise UserError(f"--max-gain-db {args.max_gain_db:g} must be a finite number >= 0, e.g. 20")
    if not -70.0 <= args.target_lufs < 0.0:
        raise UserError(f"--target-lufs {args.target_lufs:g} must be in [-70, 0), e.g. -23 (EBU R128) or -14")
    if args.adapter and not args.text_encoder:
        raise UserError("--adapter needs --text-encoder (the encoder whose size differs from the UNet's)")
    if args.negative_prompt is not None and not args.negative_prompt.strip():
        raise UserError("--negative-prompt is empty; leave it out (the empty prompt is already the default null "
                        "condition) or describe what to steer away from")
    _check_clap_arg("--text-encoder", args.text_encoder)
    _check_clap_arg("--scorer", args.scorer)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder")
    limit = model_max_seconds(args.model)
    if args.seconds is not None and limit is not None and args.seconds > limit + 1e-9:
        raise UserError(f"--seconds {args.seconds:g} is beyond model {args.model}'s limit of {limit:g} s (the length "
                        f"it was trained on); ask for at most {limit:g}")


def list_events(model: str) -> int:
    """``generate --list-events``: the phrases of the model's ``events.json``, one per line (no weights load)."""
    from audioldm_cond.components import resolve_model_dir  # noqa: PLC0415
    from audioldm_cond.events import EVENTS_FILE, read_events  # noqa: PLC0415

    root = resolve_model_dir(model)
    events = read_events(root)
    if events is None:
        raise UserError(f"model {model} has no list of the events it was trained on ({root / EVENTS_FILE}); write one "
                        "with audioldm_cond.events.write_events")
    for e in events:
        print(e["phrase"])
    return 0


def warn_unknown_events(model: str, items: list[dict]) -> None:
    """Before the model loads: a warning for each prompt that names an event the model was not trained on (from the
    model's ``events.json``; nothing when it has none)."""
    from audioldm_cond.components import resolve_model_dir  # noqa: PLC0415
    from audioldm_cond.events import check_prompt, read_events  # noqa: PLC0415

    events = read_events(resolve_model_dir(model))
    if not events:
        return
    see = f"`audioldm-cond generate --list-events --model {model}` lists the ones it knows"
    for it in items:
        known, unknown = check_prompt(it["prompt"], events)
        if not known:
            _warn(f"{it['where']} ({it['prompt']!r}) names no sound event model {model} was trained on; expect noise "
                  f"whatever its CLAP score ({see})")
        elif unknown:
            _warn(f"{it['where']}: {', '.join(repr(u) for u in unknown)} names no sound event model {model} was "
                  f"trained on ({see})")


def run_generate(args: argparse.Namespace) -> int:
    from basekit.quiet import quiet_third_party

    if args.list_events:
        return list_events(args.model)
    if not args.out:
        raise UserError("--out is required: the folder for the clips (or --list-events to see what the model knows)")
    items = read_prompts(args.prompt, args.prompts)
    check_generate_args(args)  # before the (slow) model load
    warn_unknown_events(args.model, items)
    args.device = resolve_device(args.device)
    with quiet_third_party(args.verbose, load=("transformers", "diffusers")):
        return _generate(args, items)


def _generate(args: argparse.Namespace, items: list[dict]) -> int:
    """The model load and the generation of a checked ``generate`` command."""
    from audioldm_cond.components import load_components
    from audioldm_cond.pipeline import TemporalAudioLDMPipeline
    from basekit.audio import save_audio, set_level
    from basekit.plotting import plot_spectrogram

    out = Path(args.out)
    if args.adapter:
        comps = _load_with_adapter(args)
    else:
        comps = load_components(args.model, text_encoder=args.text_encoder, device=args.device, scheduler=args.scheduler)
    conditioner_note = _conditioner_note(args, comps)
    pipe = TemporalAudioLDMPipeline(comps, scorer=args.scorer, progress=False if args.quiet else None)
    seconds = pipe.check_seconds(comps.config.max_seconds if args.seconds is None else args.seconds)
    settings = {
        "model": str(args.model),
        "text_encoder": args.text_encoder,
        "seconds": seconds,
        "steps": args.steps,
        "guidance": args.guidance,
        "negative_prompt": args.negative_prompt,
        "candidates": args.candidates,
        "scheduler": args.scheduler,
        "clip_latents": comps.config.latent_range is not None and not args.no_clip_latents,
        "normalize": args.normalize,
    }
    if args.normalize != "none":
        settings["max_gain_db"] = args.max_gain_db
        if args.normalize == "loudness":
            settings["target_lufs"] = args.target_lufs
    out.mkdir(parents=True, exist_ok=True)
    rec_path = out / PROMPTS_FILE
    records = _read_records(rec_path)
    order = [it["id"] for it in items]
    k = args.candidates
    pending, skipped = [], 0
    for i, it in enumerate(items):
        rec = records.get(it["id"])
        want_seed = args.seed + i * k
        same = (
            rec is not None
            and rec.get("prompt") == it["prompt"]
            and rec.get("seed") == want_seed
            and rec.get("settings") == settings
            and (out / f"{it['id']}.wav").exists()
        )
        if same:
            skipped += 1
        else:
            pending.append(i)
    prompts_per_call = max(1, args.batch_size // k)
    for run in _runs(pending, prompts_per_call):
        res = pipe(
            [items[i]["prompt"] for i in run],
            seconds=seconds,
            num_inference_steps=args.steps,
            guidance_scale=args.guidance,
            clip_latents=False if args.no_clip_latents else None,
            negative_prompt=args.negative_prompt,
            seed=args.seed + run[0] * k,  # clip j of the whole job keeps seed + j however the job is split
            num_candidates=k,
            batch_size=args.batch_size,
        )
        for j in res.best():
            it = items[run[res.prompt_index[j]]]
            audio, level = set_level(res.audios[j], res.sample_rate, normalize=args.normalize,
                                     target_lufs=args.target_lufs, max_gain_db=args.max_gain_db)
            _level_warnings(it["id"], level)
            wav = save_audio(out / f"{it['id']}.wav", audio, res.sample_rate, on_overload="error")
            plot_spectrogram(
                res.mels[j], comps.hop_length, res.sample_rate, title=it["prompt"], path=out / f"{it['id']}.png"
            )
            records[it["id"]] = {
                "id": it["id"],
                "prompt": it["prompt"],
                "seed": res.seeds[j],
                "score": res.scores[j] if res.scores is not None else None,
                "audio": wav.name,
                "level": level,
                "settings": settings,
            }
            if conditioner_note is not None:
                records[it["id"]]["conditioner"] = conditioner_note
        _write_records(rec_path, records, order)  # after every chunk: an interrupted job resumes from here
    done = len(pending)
    msg = f"generated {done} clip(s) in {out}"
    if skipped:
        msg += f"; skipped {skipped} already generated with the same settings"
    print(msg)
    return 0


def _conditioner_note(args: argparse.Namespace, comps) -> dict | None:
    """With ``--text-encoder``: is it the encoder the UNet was trained with? A note on stderr when not (the UNet
    learned one encoder's embedding space; another's moves what comes out), and the record for prompts.jsonl."""
    if not args.text_encoder:
        return None
    from audioldm_cond.components import resolve_model_dir  # noqa: PLC0415
    from audioldm_cond.conditioning import trained_text_tower_matches  # noqa: PLC0415

    same = False if args.adapter else trained_text_tower_matches(resolve_model_dir(args.model),
                                                                 comps.conditioner.clap.model)
    note = {"text_encoder": str(args.text_encoder), "trained_with": str(comps.config.clap),
            "same_as_trained": same, "adapter": bool(args.adapter)}
    if same is False:
        note["note"] = "the UNet was trained with another text encoder"
        print(f"audioldm-cond: note: --text-encoder {args.text_encoder} is not the encoder model {args.model}'s UNet "
              f"was trained with ({comps.config.clap}); the UNet reads another encoder's embeddings, so the clips may "
              "not follow the prompt (train the UNet on this encoder: audioldm-cond train)", file=sys.stderr)
    elif same is None:
        note["note"] = "the model folder holds no safetensors text encoder to compare with"
    return note


def _load_with_adapter(args: argparse.Namespace):
    from diffusers import UNet2DConditionModel

    from audioldm_cond.components import load_components, resolve_model_dir

    unet_cfg = UNet2DConditionModel.load_config(resolve_model_dir(args.model) / "unet")
    dim = int(unet_cfg["projection_class_embeddings_input_dim"])
    print(
        "warning: the adapter is untrained at generation time; train it with `audioldm-cond train` for real use",
        file=sys.stderr,
    )
    return load_components(
        args.model, text_encoder=args.text_encoder, device=args.device, scheduler=args.scheduler, adapter_dim=dim
    )


# ----------------------------------------------------------------------------------------------- probe-order
def add_probe_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", action="append", help="tiny-tclap, tiny-baseline or an AudioLDM directory; repeat "
                   "to compare models on the same clips (default: both shipped models)")
    p.add_argument("--data", default="builtin-heldout", help="builtin-heldout (default: held-out built-in mix-ups) "
                   "or a manifest whose items have order-swapped negative_captions (`tclap mixup` writes them)")
    p.add_argument("--n", type=int, default=100, help="clips to probe (default 100)")
    p.add_argument("--timesteps", default=None, help="comma-separated fractions of the noise schedule or integer "
                   "timesteps (default 0.1,0.25,0.4,0.55,0.7,0.85)")
    p.add_argument("--noise-draws", type=int, default=2, help="noise samples per clip and timestep (default 2)")
    p.add_argument("--seconds", type=float, help="clip length (default: the model's maximum)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument("--out", required=True, help="folder for order_probe.json and order_probe.md")
    p.add_argument("--cache-dir", help="where builtin-heldout is built (default: OUT/cache)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--verbose", action="store_true",
                   help="also the progress bars of transformers / diffusers (e.g. 'Loading weights')")


def run_probe(args: argparse.Namespace) -> int:
    from audioldm_cond.components import load_components  # noqa: PLC0415
    from audioldm_cond.probe import MARKDOWN_HEADER, markdown_row, probe_items, probe_order  # noqa: PLC0415
    from basekit.atomic import atomic_write_text  # noqa: PLC0415
    from tclap.data.manifest import read_manifest  # noqa: PLC0415

    if args.n < 1:
        raise UserError(f"--n {args.n}: give 1 or more clips")
    timesteps = None
    if args.timesteps:
        try:
            timesteps = [float(x) for x in args.timesteps.split(",") if x.strip()]
        except ValueError:
            raise UserError(f"--timesteps {args.timesteps!r}: give comma-separated numbers, e.g. 0.1,0.4,0.7") from None
    models = args.model or ["tiny-tclap", "tiny-baseline"]
    if args.noise_draws < 1:
        raise UserError(f"--noise-draws {args.noise_draws}: give 1 or more")
    if args.data != "builtin-heldout" and not Path(args.data).is_file():
        raise UserError(f"--data {args.data}: no such manifest (pass a manifest path or builtin-heldout)")
    for name in models:  # every model's length limit, before the first one loads
        limit = model_max_seconds(name)
        if args.seconds is not None and (not args.seconds > 0 or (limit is not None and args.seconds > limit + 1e-9)):
            raise UserError(f"--seconds {args.seconds:g} must be positive and at most model {name}'s limit of "
                            f"{limit:g} s" if limit is not None else f"--seconds {args.seconds:g} must be positive")
    args.device = resolve_device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results, table = {}, [MARKDOWN_HEADER]
    data: dict[tuple, tuple] = {}  # (seconds, rate) -> (items, skipped): the same clips for every model
    for name in models:
        from basekit.quiet import quiet_third_party  # noqa: PLC0415

        with quiet_third_party(args.verbose, load=("transformers", "diffusers")):
            comps = load_components(name, device=args.device)
        secs = float(args.seconds or comps.config.max_seconds)
        key = (secs, comps.sample_rate) if args.data == "builtin-heldout" else ()
        if key not in data:
            if args.data == "builtin-heldout":
                from tclap.evaluation.runner import EvalConfig, builtin_heldout  # noqa: PLC0415

                cache = Path(args.cache_dir) if args.cache_dir else out / "cache"
                # about 1 in 5 built-in mix-ups overlaps its events (no order, no swapped caption): build spare ones
                raw, _ = builtin_heldout(cache, secs, comps.sample_rate, EvalConfig(heldout_mixes=max(2 * args.n, 8)))
            else:
                raw = read_manifest(args.data)
            data[key] = probe_items(raw, args.n)
            if data[key][1]:
                print("probe-order: skipped " + ", ".join(f"{v} item(s): {k}" for k, v in data[key][1].items()),
                      file=sys.stderr)
        items, skipped = data[key]
        res = probe_order(comps, items, timesteps=timesteps, noise_draws=args.noise_draws, seconds=args.seconds,
                          seed=args.seed, progress=not args.quiet)
        res.update({"model": name, "data": args.data, "skipped": skipped})
        results[name] = res
        table.append(markdown_row(name, res))
    atomic_write_text(out / "order_probe.json", json.dumps(results, indent=2))
    atomic_write_text(out / "order_probe.md", "\n".join(table) + "\n")
    print("\n".join(table))
    return 0


# ----------------------------------------------------------------------------------------------- main
def _train_module():
    try:
        from audioldm_cond.train import cli as train_cli  # noqa: PLC0415 - lazy: heavy, and optional here
    except ImportError as exc:
        raise UserError(f"the trainer is not available in this installation ({exc})") from None
    return train_cli


def build_parser() -> argparse.ArgumentParser:
    """The ``audioldm-cond`` parser (``train`` is parsed by :mod:`audioldm_cond.train.cli`, see :func:`main`)."""
    parser = argparse.ArgumentParser(prog="audioldm-cond", description="Generate audio from text with a CLAP- or T-CLAP-conditioned AudioLDM (generate), and train one (train).")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="text -> WAV + spectrogram PNG per prompt")
    add_generate_arguments(gen)
    sub.add_parser("train", help="train the VAE or the LDM (see `audioldm-cond train --help`)", add_help=False)
    probe = sub.add_parser("probe-order", help="does a model's UNet use the order in its prompt? (a likelihood "
                           "probe on real clips, no sampling)")
    add_probe_arguments(probe)
    return parser


@cli_entry(prog="audioldm-cond")
def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        train_cli = _train_module()
        p = argparse.ArgumentParser(prog="audioldm-cond train", description="train an AudioLDM (stages vae, ldm)")
        train_cli.add_arguments(p)
        return int(train_cli.run(p.parse_args(argv[1:])) or 0)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "probe-order":
        return run_probe(args)
    return run_generate(args)


if __name__ == "__main__":
    raise SystemExit(main())
