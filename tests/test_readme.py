"""Doc test: every command in README.md runs, so none of them rots (issue 7, item 4).

How the README is read:

- every fenced ````bash`` block (also the indented ones inside list items) is a *block*; each non-empty line that
  is not a ``#`` comment is a command line, split on ``" && "`` into commands;
- *set-up* commands are what CI itself runs (``python3 -m venv``, ``. .venv/bin/activate``, ``pip install``,
  ``python -m pytest``, ``bash .ci/run``): they are not re-run here, but checked against ``.ci/run`` so the README
  and CI cannot drift apart;
- every other command runs for real in a subprocess (``bash -c``; the console scripts come from the virtual
  environment's ``bin/`` next to ``sys.executable``, put first on ``PATH``), in README order, in one temporary
  working directory per README section (later commands read what earlier ones wrote, e.g. ``runs/tour/...``),
  and must exit 0;
- an *output block* is a fenced block preceded by ``<!-- readme-output: PREFIX -->``: it shows what the one
  README command starting with ``PREFIX`` prints (stdout and stderr as they interleave, progress bars left out).
  The test fails when the command prints something else now; ``python scripts/readme_outputs.py`` runs those
  commands the same way and rewrites the blocks (``--check`` lists the blocks that differ). A section that shows
  an output runs with no substitution, so what the README shows is what its command prints.

Real-scale inputs named by the README (``clap-htsat-unfused/``, ``630k-audioset-best.pt``, ``ESC-50-master/``, ...)
are replaced by tiny stand-ins written at those paths in the real formats, and real-scale sizes are shrunk by
:data:`SUBSTITUTIONS`, an explicit table (each rule must still match a README command, so a reworded README
cannot silently run at full scale). Commands that need the shipped embedded models (``tiny-tclap``,
``tiny-baseline``) are skipped, with the reason, only while those assets are not in the checkout.
"""

from __future__ import annotations

import csv
import http.server
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CI_SCRIPT = ROOT / ".ci" / "run"
# Not resolved: the venv's python is a symlink and the console scripts live beside the link, not its target.
VENV_BIN = Path(sys.executable).parent

COMMAND_TIMEOUT_S = 600  # one shrunk command (the quick reproduction: ~3 min on a busy 2-core machine); a README change that escapes the table fails instead of hanging
SERVE_TIMEOUT_S = 120  # until `mos serve` answers HTTP

# --------------------------------------------------------------------------------------------- README parsing
_FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
_HEADING = re.compile(r"^(#{2,3})\s+(.*?)\s*$")
# A placeholder line the lead fills from a real run, e.g. GENERATE_OUTPUT or REPRODUCE_TABLES.
_OUTPUT_MARKER = re.compile(r"^<!--\s*readme-output:\s*(.*?)\s*-->\s*$")
_PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+$")


@dataclass
class Block:
    """One fenced code block of the README."""

    lang: str
    line: int  # 1-based line of the opening fence
    section: str  # the enclosing "## " heading
    subsection: str  # the enclosing "### " heading ("" when none)
    lines: list[str] = field(default_factory=list)
    caption: str = ""  # the last prose line before the block (tells what an output block shows)
    shows: str = ""  # output blocks: the prefix of the README command whose output the block is

    @property
    def where(self) -> str:
        sub = f" / {self.subsection}" if self.subsection else ""
        return f"README.md:{self.line} ({self.section}{sub})"

    def commands(self) -> list[str]:
        """The block's commands in order: non-comment lines, split on `` && ``."""
        out: list[str] = []
        for raw in self.lines:
            s = raw.strip()
            if not s or s.startswith("#"):
                continue
            out.extend(c for c in split_and(s) if c)
        return out


def split_and(line: str) -> list[str]:
    """Split a shell line on `` && `` outside quotes (``printf 'a && b'`` stays one command)."""
    parts, start, quote, i = [], 0, "", 0
    while i < len(line):
        ch = line[i]
        if quote:
            if ch == quote:
                quote = ""
            elif ch == "\\" and quote == '"':
                i += 1
        elif ch in "'\"":
            quote = ch
        elif ch == "\\":
            i += 1
        elif line.startswith(" && ", i):
            parts.append(line[start:i].strip())
            start = i + 4
            i += 3
        i += 1
    parts.append(line[start:].strip())
    return parts


def parse_blocks(text: str) -> list[Block]:
    """All fenced blocks of a Markdown text, with their headings and captions (fence indentation removed)."""
    blocks: list[Block] = []
    section = subsection = caption = shows = ""
    cur: Block | None = None
    indent = ""
    for n, line in enumerate(text.splitlines(), 1):
        m = _FENCE.match(line)
        if cur is not None:
            if m and not m.group(2):
                blocks.append(cur)
                cur = None
            else:
                cur.lines.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            continue
        if m:
            indent = m.group(1)
            cur = Block(lang=m.group(2), line=n, section=section, subsection=subsection, caption=caption,
                        shows=shows)
            shows = ""
            continue
        om = _OUTPUT_MARKER.match(line.strip())
        if om:
            shows = om.group(1)
            continue
        h = _HEADING.match(line)
        if h:
            if len(h.group(1)) == 2:
                section, subsection = h.group(2), ""
            else:
                subsection = h.group(2)
            continue
        if line.strip():
            caption, shows = line.strip(), ""  # a marker names the block right after it, not a later one
    if cur is not None:
        raise AssertionError(f"README.md:{cur.line}: code fence never closed")
    return blocks


def readme_blocks() -> list[Block]:
    return parse_blocks(README.read_text(encoding="utf-8"))


def bash_blocks() -> list[Block]:
    return [b for b in readme_blocks() if b.lang == "bash"]


# --------------------------------------------------------------------------------------------- set-up commands
_SETUP = (
    re.compile(r"^python3 -m venv\b"),
    re.compile(r"^\. \.venv/bin/activate$"),
    re.compile(r"^pip install\b"),
    re.compile(r"^python -m pytest\b"),
    re.compile(r"^bash \.ci/run$"),
)


def is_setup(cmd: str) -> bool:
    """Set-up commands are what CI runs itself (checked against .ci/run, not re-run here)."""
    return any(p.match(cmd) for p in _SETUP)


def ci_commands() -> list[str]:
    """The command lines of .ci/run (comments, shell options and ``if`` plumbing left out)."""
    out = []
    for line in CI_SCRIPT.read_text(encoding="utf-8").splitlines():
        s = line.strip()
        if s and not s.startswith("#") and is_setup(s):
            out.append(s)
    return out


def pip_requirements(cmd: str) -> tuple[set[str], set[str]]:
    """``pip install`` arguments -> (plain requirements, extras of the editable project install).

    ``-e .`` and ``-e ".[test]"`` both install the project; the union of their extras is what counts.
    """
    args = shlex.split(cmd)[2:]
    reqs, extras = set(), set()
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-q", "--quiet", "-U", "--upgrade"):
            pass
        elif a in ("-e", "--editable"):
            i += 1
            m = re.fullmatch(r"\.(?:\[([\w,]+)\])?", args[i])
            assert m, f"editable install of something other than this project: {args[i]!r}"
            extras.add("")  # the project itself
            extras.update(x for x in (m.group(1) or "").split(",") if x)
        elif a.startswith("-"):
            raise AssertionError(f"pip option {a!r} in {cmd!r} is not understood by this check; extend it")
        else:
            reqs.add(a)
        i += 1
    return reqs, extras


# --------------------------------------------------------------------------------------------- substitutions
@dataclass(frozen=True)
class Sub:
    """One real-scale -> test-scale rewrite of a README command (regex on the command line)."""

    pattern: str
    replacement: str
    why: str


#: The substitution table. Rules are applied in order to every command that runs; ``{llm}`` and ``{port}`` are
#: filled per run (the fake LLM endpoint and a free port). Every rule must match at least one README command.
SUBSTITUTIONS: tuple[Sub, ...] = (
    Sub(r"^accelerate launch --multi_gpu --num_processes 8 -m tclap\.cli train ", "tclap train ",
        "8 GPU processes cannot run here; the same arguments run in one process (a 2-process accelerate run is "
        "tested in tests/test_train.py)"),
    Sub(r"^(tclap train --preset paper .*)$", r"\1 --steps 2 --batch-size 4",
        "the paper preset's 30k steps of batch 512 -> 2 steps of 4"),
    Sub(r"^(tclap export --model 630k-audioset-best\.pt .*)$", r"\1 --config tiny",
        "the stand-in LAION checkpoint is the tiny architecture, not HTSAT + RoBERTa-base"),
    Sub(r"--n 50000\b", "--n 6", "50k ESC-50 mix-ups -> 6"),
    Sub(r"--seconds 10\b", "--seconds 4", "10 s clips -> 4 s"),
    Sub(r"--sr 48000\b", "--sr 16000", "48 kHz (HTSAT's rate) -> 16 kHz, the tiny CLAP's rate"),
    Sub(r"http://localhost:8000/v1", "{llm}", "the LLM endpoint -> a fake OpenAI-compatible server on loopback"),
    Sub(r"--port 7860\b", "--port {port}", "a free port instead of Gradio's default"),
    Sub(r"^(audioldm-cond train --stage ldm .*)$", r"\1 --steps 2 --batch-size 2 --ckpt-every 1",
        "AudioLDM fine-tuning: 1000 steps of batch 16 -> 2 steps of 2"),
    Sub(r"^(audioldm-cond generate .*--model audioldm-s-full-v2/ .*)$", r"\1 --steps 3",
        "the stand-in AudioLDM is random-weight: 3 denoising steps show the path works"),
    Sub(r"^tclap reproduce --preset tiny\b", "tclap reproduce --preset quick",
        "the 45-minute miniature -> its smoke-run preset (the same stages, a few steps each)"),
)

#: What a command writes under its ``--out`` (from the README's prose and the commands' ``--help``): checked after
#: it exits 0, so a command that "succeeds" without its output fails too.
PRODUCES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (r"^audioldm-cond generate ", ("prompts.jsonl", "*.wav", "*.png")),
    (r"^audioldm-cond train ", ("final/model_index.json", "log.jsonl")),
    (r"^tclap mixup ", ("manifest.jsonl", "audio/*.wav")),
    (r"^tclap evaluate ", ("metrics.json", "metrics.md")),
    (r"^tclap export ", ("config.json",)),
    (r"^tclap negatives ", ("negatives.jsonl", "negatives.csv")),
    (r"^tclap train ", ("model/config.json", "metrics.jsonl")),
    (r"^tclap reproduce ", ("report.md", "results.json", "study/study.yaml")),
    (r"^eval-gen score ", ("scores.json", "scores.md")),
    (r"^mos report ", ("report.md", "summary.csv", "exclusions.csv", "ratings_long.csv")),
)


def missing_outputs(cmd: str, workdir: Path) -> list[str]:
    """The outputs :data:`PRODUCES` expects of ``cmd`` that are not in ``workdir``."""
    args = shlex.split(cmd)
    if "--out" not in args:
        return []
    out = workdir / args[args.index("--out") + 1]
    for pattern, globs in PRODUCES:
        if re.match(pattern, cmd):
            return [f"{out.relative_to(workdir)}/{g}" for g in globs if not any(out.glob(g))]
    return []


# Commands that need the shipped embedded models (trained by the recipes and committed under */assets/models/).
SHIPPED_ASSETS = (
    ROOT / "tclap" / "assets" / "models" / "tiny-tclap" / "config.json",
    ROOT / "tclap" / "assets" / "models" / "tiny-baseline" / "config.json",
    ROOT / "audioldm_cond" / "assets" / "models" / "tiny-tclap" / "model_index.json",
    ROOT / "audioldm_cond" / "assets" / "models" / "tiny-baseline" / "model_index.json",
)


def needs_shipped_models(cmd: str) -> bool:
    if re.search(r"(?<![\w/.-])tiny-(?:tclap|baseline)(?![\w/.-])", cmd):
        return True
    args = shlex.split(cmd)
    # `audioldm-cond generate` without --model uses tiny-tclap.
    if args[:2] == ["audioldm-cond", "generate"] and "--model" not in args:
        return True
    # `eval-gen score`: the `tclap` backend is tiny-tclap, and so is --clap-model's default for clap/order metrics.
    if args[:2] == ["eval-gen", "score"]:
        opt = {a: args[i + 1] for i, a in enumerate(args[:-1]) if a.startswith("--")}
        metrics = set(opt.get("--metrics", "fad,kad").split(","))
        if opt.get("--backend") == "tclap" or (metrics & {"clap", "order"} and "--clap-model" not in opt
                                               and opt.get("--backend") != "clap"):
            return True
    return False


def missing_assets() -> list[str]:
    return [str(p.relative_to(ROOT).parent) for p in SHIPPED_ASSETS if not p.exists()]


def substitute(cmd: str, values: dict[str, str]) -> str:
    """``cmd`` rewritten by :data:`SUBSTITUTIONS`, with ``{llm}`` / ``{port}`` filled from ``values``."""
    for sub in SUBSTITUTIONS:
        cmd = re.sub(sub.pattern, sub.replacement, cmd)
    for k, v in values.items():
        cmd = cmd.replace("{" + k + "}", v)
    return cmd


# --------------------------------------------------------------------------------------------- helpers
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_PROGRESS = re.compile(r"\d+%\|")  # tqdm bar lines: noise in a failure report


def _tail(text: str, n: int = 3000) -> str:
    text = "\n".join(line for line in text.replace("\r", "\n").splitlines() if not _PROGRESS.search(line))
    return text if len(text) <= n else "..." + text[-n:]


def command_env(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)  # conftest already set the Hugging Face offline switches; they are inherited
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["XDG_CACHE_HOME"] = str(workdir / ".cache")  # eval-gen's embedding cache stays in the tmp dir
    env["MPLBACKEND"] = "Agg"
    env["OMP_NUM_THREADS"] = env.get("OMP_NUM_THREADS", "1")
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"  # the fake LLM endpoint must not go via a proxy
    env.pop("VIRTUAL_ENV", None)
    return env


class FakeLLM:
    """An OpenAI-compatible ``/v1/chat/completions`` server on 127.0.0.1 answering from a hand-written table.

    It reads the caption from the prompt's last ``Caption:`` line and answers its order-swapped rewrite (written
    by hand below, not by the code under test), ``NONE`` for a one-event caption.
    """

    def __init__(self, answers: dict[str, str]):
        self.answers = answers
        self.requests = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                prompt = body["messages"][-1]["content"]
                captions = re.findall(r"^Caption:\s*(.*?)\s*$", prompt, flags=re.MULTILINE)
                answer = outer.answers.get(captions[-1].rstrip("."), "NONE") if captions else "NONE"
                outer.requests += 1
                data = json.dumps({
                    "id": f"chatcmpl-{outer.requests}", "object": "chat.completion", "model": body.get("model", ""),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": answer}}],
                }).encode()
                self.send_response(200 if self.path.endswith("/chat/completions") else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):  # keep the test output clean
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> "FakeLLM":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------------------------- stand-ins
#: AudioCaps-style captions of the stand-in CSV and their order-swapped rewrites, written by hand.
AUDIOCAPS_CAPTIONS = {
    "A dog barks followed by a man speaking": "A man speaks followed by a dog barking",
    "A door closes and then a woman laughs": "A woman laughs and then a door closes",
    "A car passes by before a horn honks": "A horn honks before a car passes by",
    "Rain falls on a roof": "NONE",
}
#: ESC-50 categories of the stand-in and the built-in event rendered for each.
ESC_CATEGORIES = {"dog": "bark", "door_wood_knock": "knock", "siren": "siren", "clock_tick": "clock_tick"}


def _tiny_bundle():
    from tclap.models import load_clap

    return load_clap("tiny")


def write_clap_export(path: Path) -> None:
    """``tclap export --model tiny`` output: a transformers ClapModel directory (clap-htsat-unfused/ stand-in)."""
    from tclap.cli import main as tclap_main

    assert tclap_main(["export", "--model", "tiny", "--out", str(path)]) == 0


def write_laion_checkpoint(path: Path, bundle) -> None:
    """A LAION-CLAP ``.pt`` of the tiny model (``module.``-prefixed keys under ``state_dict``, as LAION saves)."""
    import torch
    from test_laion_convert import hf_to_laion

    torch.save({"epoch": 45, "state_dict": hf_to_laion(bundle.model)}, path)


def write_audioldm_dir(path: Path, bundle) -> None:
    """A diffusers AudioLDM directory as `cvssp/audioldm-s-full-v2` has it (HiFi-GAN vocoder), tiny and random."""
    from audioldm_cond.components import CONFIG_FILE, build_tiny_components, save_components

    comps = build_tiny_components(bundle, seed=0, vocoder="hifigan", unet_channels=(16, 32), vae_channels=(16, 32),
                                  max_seconds=1.28)
    save_components(comps, path)
    # The hub copy has neither our provenance file nor the full-CLAP folder: remove them so the loader takes the
    # plain-diffusers route a real download takes.
    (path / CONFIG_FILE).unlink()
    shutil.rmtree(path / "clap", ignore_errors=True)
    index = json.loads((path / "model_index.json").read_text())
    assert index["vocoder"] == ["transformers", "SpeechT5HifiGan"], index["vocoder"]


def write_esc50(root: Path) -> None:
    """ESC-50-master/: meta/esc50.csv and audio/*.wav (5 s, 44.1 kHz, silence-padded), 4 categories x folds 1..5."""
    from basekit.audio import resample, save_audio
    from tclap.synth import render_event

    (root / "meta").mkdir(parents=True)
    rows = []
    for target, (category, label) in enumerate(ESC_CATEGORIES.items()):
        for fold in range(1, 6):
            # Repeated events (a dog barks a few times), as ESC-50's clips are: at least 1 s of sound to mix.
            parts, n = [], 0
            while n < 16000:
                ev = render_event(label, 10 * fold + len(parts), sr=16000)
                parts += [ev, np.zeros(1600, dtype=np.float32)]
                n += ev.size + 1600
            wav = resample(np.concatenate(parts[:-1]), 16000, 44100)
            clip = np.zeros(5 * 44100, dtype=np.float32)
            clip[: min(wav.size, clip.size)] = wav[: clip.size]
            name = f"{fold}-{100 + 10 * target + fold}-A-{target}.wav"
            save_audio(root / "audio" / name, clip, 44100)
            rows.append({"filename": name, "fold": fold, "target": target, "category": category,
                         "esc10": "False", "src_file": str(100 + 10 * target + fold), "take": "A"})
    with (root / "meta" / "esc50.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def write_audiocaps(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["audiocap_id", "youtube_id", "start_time", "caption"])
        for k, cap in enumerate(AUDIOCAPS_CAPTIONS):
            w.writerow([91139 + k, f"r1nicOVtvk{k}", 30 * k, cap])


def write_positive_manifest(path: Path) -> None:
    """data/auto-acd.jsonl: a positive-only manifest (captions, no negatives) over real small wav files."""
    from basekit.audio import save_audio
    from tclap.synth import EVENT_CLASSES, EVENT_PHRASES, render_event

    lines = []
    for k, label in enumerate(EVENT_CLASSES[:6]):
        clip = np.zeros(2 * 16000, dtype=np.float32)
        wav = render_event(label, k, sr=16000)
        clip[4000: 4000 + wav.size] = wav[: clip.size - 4000]
        rel = f"auto-acd/audio/{k:05d}.wav"
        save_audio(path.parent / rel, clip, 16000)
        lines.append(json.dumps({"id": f"acd-{k:05d}", "audio": rel,
                                 "captions": [f"{EVENT_PHRASES[label].capitalize()} in a quiet room."]}))
    path.write_text("\n".join(lines) + "\n")


def write_study(workdir: Path) -> None:
    """STUDY.yaml: a small MOS study with its clips (demo.synthetic), at the README's path.

    The simulated raters cannot listen, so the study screens on attention checks only (the rules a study file
    may set): gold clips, zero variance and consensus need real ears.
    """
    from demo.synthetic import write_synthetic_study

    screening = {"attention": True, "gold": False, "zero_variance": False, "min_consensus_corr": None}
    study = write_synthetic_study(workdir, n_prompts=2, clips_per_rater=2, min_ratings_per_clip=1, n_gold=0,
                                  extra={"screening": screening})
    study.rename(workdir / "STUDY.yaml")


#: The README's real-scale inputs (top-level names in the working directory) that :func:`standins` provides.
STANDIN_NAMES = ("clap-htsat-unfused/", "630k-audioset-best.pt", "roberta-base/", "audioldm-s-full-v2/",
                 "runs/tclap-export", "ESC-50-master/", "audiocaps/train.csv", "data/auto-acd.jsonl")


@pytest.fixture(scope="module")
def standins(tmp_path_factory) -> Path:
    """The real-scale inputs the README names, built once: tiny, in the real formats, at the README's paths."""
    root = tmp_path_factory.mktemp("readme-standins")
    bundle = _tiny_bundle()
    write_clap_export(root / "clap-htsat-unfused")
    shutil.copytree(root / "clap-htsat-unfused", root / "runs" / "tclap-export")
    write_laion_checkpoint(root / "630k-audioset-best.pt", bundle)
    bundle.tokenizer.save_pretrained(root / "roberta-base")
    write_audioldm_dir(root / "audioldm-s-full-v2", bundle)
    write_esc50(root / "ESC-50-master")
    write_audiocaps(root / "audiocaps" / "train.csv")
    write_positive_manifest(root / "data" / "auto-acd.jsonl")
    return root


# --------------------------------------------------------------------------------------------- running blocks
def _wait_http(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited with status {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, socket.timeout):
            pass
        time.sleep(0.5)
    raise AssertionError(f"no HTTP answer from {url} within {timeout:g} s")


def _rate_some(url: str, n_raters: int = 3) -> int:
    """Simulated raters through the app's public API (gradio_client), so that `mos report` has ratings to screen.

    Each follows the instructions it is shown (an attention check says which value to pick) and rates the other
    clips at random (seeded); returns the number of ratings saved.
    """
    import random

    from gradio_client import Client

    saved = 0
    for r in range(n_raters):
        rng = random.Random(r)
        client = Client(url, verbose=False, analytics_enabled=False, httpx_kwargs={"timeout": 120})
        s = client.predict(f"readme-rater-{r}", "", True, api_name="/start")
        token = s["token"]
        if s["phase"] == "training":
            s = client.predict(token, api_name="/finish_training")
        while s["phase"] == "rating":
            item = s["item"]["item_id"]
            client.predict(token, item, "play", api_name="/played")
            _listen_to_the_end(client, token, item)
            told = re.search(r"select (\d) on both scales", s["item"]["text"])
            values = {sc["name"]: int(told.group(1)) if told else rng.randint(1, 5) for sc in s["scales"]}
            res = client.predict(token, item, values, api_name="/rate")
            assert res["status"] == "saved", res
            saved += 1
            s = res["state"]
    return saved


def _listen_to_the_end(client, token: str, item: str, tries: int = 4) -> None:
    """Send the clip's ``ended`` once a listener could have heard it: the server times play..ended against the
    clip's duration and refuses an early end (saying how long the clip lasts), so wait that long and send it again."""
    for _ in range(tries):
        try:
            client.predict(token, item, "ended", api_name="/played")
            return
        except Exception as exc:  # gradio_client's AppError carries the server's one-line message
            m = re.search(r"lasts (\d+(?:\.\d+)?) s", str(exc))
            if not m:
                raise
            time.sleep(float(m.group(1)) + 0.1)
    raise AssertionError(f"the server never accepted the end of clip {item}")


def serve(cmd: str, workdir: Path, env: dict[str, str], port: int) -> str:
    """Run a `mos serve` command: start it, wait for HTTP, let simulated raters rate, then stop it."""
    log = workdir / f".serve-{port}.log"
    with log.open("w") as fh:
        proc = subprocess.Popen(["bash", "-c", f"exec {cmd}"], cwd=workdir, env=env, stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        try:
            _wait_http(url, proc, SERVE_TIMEOUT_S)
            assert _rate_some(url) > 0, "no rating was saved"
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- server output ---\n{_tail(log.read_text())}") from None
    finally:
        proc.send_signal(signal.SIGINT)  # the CLI stops the server cleanly on Ctrl-C
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return log.read_text()


def run_blocks(blocks: list[Block], workdir: Path, values: dict[str, str],
               outputs: dict[str, str] | None = None) -> tuple[list[str], list[str]]:
    """Run every non-set-up command of ``blocks`` in order in ``workdir``.

    A failing command does not stop the run (the later ones may not depend on it, and one run should show every
    broken command); returns (failures with their output tails, commands skipped for want of the shipped models).
    ``outputs``, when given, receives each command's output (stdout and stderr interleaved) by its README text.
    """
    env = command_env(workdir)
    absent = missing_assets()
    failures: list[str] = []
    skipped: list[str] = []
    outputs = {} if outputs is None else outputs
    for block in blocks:
        for original in block.commands():
            if is_setup(original):
                continue
            if absent and needs_shipped_models(original):
                skipped.append(f"{block.where}: `{original}`")
                continue
            cmd = substitute(original, values)
            ran_as = "" if cmd == original else f" (ran as `{cmd}`)"
            if re.match(r"^mos serve\b", cmd):
                try:
                    serve(cmd, workdir, env, int(values["port"]))
                except AssertionError as exc:
                    failures.append(f"{block.where}: `{original}`{ran_as} failed: {exc}")
                continue
            t0 = time.monotonic()
            try:
                # stderr into stdout: warnings stay where the user sees them, between the lines they belong to
                res = subprocess.run(["bash", "-c", cmd], cwd=workdir, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, timeout=COMMAND_TIMEOUT_S)
            except subprocess.TimeoutExpired as exc:
                failures.append(f"{block.where}: `{original}`{ran_as} ran over {COMMAND_TIMEOUT_S} s\n--- output ---\n"
                                f"{_tail(str(exc.stdout or ''))}")
                continue
            outputs[original] = res.stdout
            if res.returncode != 0:
                failures.append(f"{block.where}: `{original}`{ran_as} exited {res.returncode} after "
                                f"{time.monotonic() - t0:.1f} s\n--- output ---\n{_tail(res.stdout, 3000)}")
                continue
            missing = missing_outputs(cmd, workdir)
            if missing:
                failures.append(f"{block.where}: `{original}`{ran_as} exited 0 but did not write {', '.join(missing)}")
    return failures, skipped


# --------------------------------------------------------------------------------------------- output blocks
_NOISE = (re.compile(r"^Loading weights\b"),)  # third-party load bars a terminal overwrites in place


def shown_output(text: str) -> list[str]:
    """What a terminal leaves of a command's output: lines as printed, progress bars (carriage-return redraws,
    tqdm lines) left out, trailing spaces dropped, and the blank lines a bar leaves behind when its output is not a
    terminal dropped too (no blank line at the start or end, none twice in a row)."""
    lines: list[str] = []
    for raw in text.split("\n"):
        line = raw.split("\r")[-1].rstrip()  # a bar redrawn with \r shows only its last state
        if _PROGRESS.search(line) or any(p.search(line) for p in _NOISE):
            continue
        if not line and (not lines or not lines[-1]):
            continue
        lines.append(line)
    while lines and not lines[-1]:
        lines.pop()
    return lines


def output_blocks(blocks: list[Block]) -> list[tuple[Block, str]]:
    """``[(output block, the README command it shows)]``; a marker that names no command, or several, fails."""
    cmds = [c for b in blocks if b.lang == "bash" for c in b.commands() if not is_setup(c)]
    out = []
    for b in blocks:
        if not b.shows:
            continue
        hits = [c for c in cmds if c.startswith(b.shows)]
        assert len(hits) == 1, (f"{b.where}: readme-output marker {b.shows!r} names {len(hits)} README commands "
                                f"({hits}); make it the start of exactly one")
        out.append((b, hits[0]))
    return out


def output_differences(blocks: list[Block], outputs: dict[str, str]) -> list[str]:
    """The output blocks among ``blocks`` that differ from what their command printed (commands that did not run
    are left out), each with the first differing line."""
    diffs = []
    for block, cmd in output_blocks(blocks):
        if cmd not in outputs:
            continue
        now = shown_output(outputs[cmd])
        if now != block.lines:
            k = next((i for i, (a, b) in enumerate(zip(block.lines, now)) if a != b), min(len(now), len(block.lines)))
            shown = block.lines[k] if k < len(block.lines) else "(nothing)"
            printed = now[k] if k < len(now) else "(nothing)"
            diffs.append(f"{block.where}: the output of `{cmd}` differs from line {k + 1}:\n  README:  {shown}\n"
                         f"  printed: {printed}")
    return diffs


def _sections() -> list[str]:
    """README sections holding commands to run, in order (each is one test: its blocks share a working dir)."""
    out: list[str] = []
    for b in bash_blocks():
        if any(not is_setup(c) for c in b.commands()) and b.section not in out:
            out.append(b.section)
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40]


# --------------------------------------------------------------------------------------------- tests
def test_parser_on_a_hand_written_readme():
    text = (
        "# T\n\n## Set up\n\n```bash\npython3 -m venv .venv && . .venv/bin/activate && tool run --x 1\n```\n\n"
        "## Tour\n\n### `a`\n\nWhat it prints:\n\n```text\nSOME_OUTPUT\n```\n\n"
        "- item:\n\n  ```bash\n  # a comment\n  tool b 'x && y'\n\n  tool c\n  ```\n"
    )
    blocks = parse_blocks(text)
    assert [(b.lang, b.line, b.section, b.subsection) for b in blocks] == [
        ("bash", 5, "Set up", ""), ("text", 15, "Tour", "`a`"), ("bash", 21, "Tour", "`a`")]
    assert blocks[0].commands() == ["python3 -m venv .venv", ". .venv/bin/activate", "tool run --x 1"]
    assert blocks[1].caption == "What it prints:" and blocks[1].lines == ["SOME_OUTPUT"]
    assert blocks[2].commands() == ["tool b 'x && y'", "tool c"]  # && inside quotes is not a command break
    assert split_and('a "b && \\"c" && d \\&& e && f') == ['a "b && \\"c"', "d \\&& e", "f"]
    assert [is_setup(c) for c in blocks[0].commands()] == [True, True, False]


def test_output_markers_on_a_hand_written_readme():
    text = ("## Tour\n\n```bash\ntool a --x 1\ntool b\n```\n\n<!-- readme-output: tool a -->\n```text\nA\n```\n\n"
            "<!-- readme-output: tool b -->\nprose in between\n\n```text\nnot an output\n```\n")
    blocks = parse_blocks(text)
    assert [b.shows for b in blocks] == ["", "tool a", ""]
    assert [(b.line, c) for b, c in output_blocks(blocks)] == [(9, "tool a --x 1")]
    assert output_differences(blocks, {"tool a --x 1": "A\n"}) == []
    assert output_differences(blocks, {}) == []  # a command that did not run is not judged
    [diff] = output_differences(blocks, {"tool a --x 1": "B\n"})
    assert "line 1" in diff and "README:  A" in diff and "printed: B" in diff
    with pytest.raises(AssertionError, match="names 2 README commands"):
        output_blocks(parse_blocks(text.replace("tool b\n", "tool a --y\n")))
    # what a terminal leaves: a bar redrawn with \r, tqdm lines and trailing blank lines go
    printed = ("\nLoading weights: 100%|###| 137/137\n\nstep 1\rstep 2  \n| a | b |\n 50%|#####     | 1/2\n\n\n"
               "| c |\n\n")
    assert shown_output(printed) == ["step 2", "| a | b |", "", "| c |"]


def test_readme_outputs_script_rewrites_only_the_blocks_that_changed():
    """scripts/readme_outputs.py on a hand-written README: the shown commands' blocks are replaced (a longer or
    shorter output moves nothing else), the rest of the text stays byte for byte, and only commands up to the last
    one shown would run."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("readme_outputs_script", ROOT / "scripts" / "readme_outputs.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    me = sys.modules[__name__]
    text = ("## Tour\n\n```bash\ntool a\ntool b && tool c\ntool d\n```\n\n<!-- readme-output: tool a -->\n"
            "```text\nold 1\nold 2\n```\n\ntext between\n\n<!-- readme-output: tool c -->\n```text\nsame\n```\n"
            "\n```bash\ntool e\n```\n")
    blocks = parse_blocks(text)
    ran = [c for b in script.up_to_last_shown(me, [b for b in blocks if b.section == "Tour"]) for c in b.commands()]
    assert ran == ["tool a", "tool b", "tool c"]
    new, changed = script.rewrite(text, blocks, {b.line: lines for b, lines in
                                                 zip([b for b in blocks if b.shows], (["new"], ["same"]))})
    assert new == text.replace("old 1\nold 2\n", "new\n") and changed == ["README.md:10 (Tour)"]
    new, changed = script.rewrite(text, blocks, {10: ["n1", "n2", "n3"], 18: ["s2"]})
    assert new == text.replace("old 1\nold 2\n", "n1\nn2\nn3\n").replace("same\n", "s2\n") and len(changed) == 2


def test_readme_output_blocks_name_commands_that_run_unchanged():
    """Every output block names one command of its section, and no command of that section up to the last one
    shown runs substituted, so each block is what the README's own command prints (with its inputs)."""
    blocks = readme_blocks()
    shown = [(b, c) for sec in dict.fromkeys(b.section for b in blocks)
             for b, c in output_blocks([x for x in blocks if x.section == sec])]
    assert len(shown) >= 4, "README.md lost its example outputs?"
    for section in {b.section for b, _ in shown}:
        cmds = [c for b in bash_blocks() if b.section == section for c in b.commands() if not is_setup(c)]
        last = max(cmds.index(c) for b, c in shown if b.section == section)
        changed = [c for c in cmds[: last + 1] if substitute(c, {}) != c]
        assert not changed, f"section {section!r} shows outputs but runs substituted commands: {changed}"


def test_substitutions_on_hand_written_commands():
    v = {"llm": "http://127.0.0.1:1234/v1", "port": "4321"}
    assert substitute("accelerate launch --multi_gpu --num_processes 8 -m tclap.cli train --preset paper --out r", v) \
        == "tclap train --preset paper --out r --steps 2 --batch-size 4"
    assert substitute("tclap mixup --bank b.csv --n 50000 --seconds 10 --sr 48000 --out d", v) \
        == "tclap mixup --bank b.csv --n 6 --seconds 4 --sr 16000 --out d"
    assert substitute("tclap negatives c.csv --backend llm --endpoint http://localhost:8000/v1 --out o", v) \
        == "tclap negatives c.csv --backend llm --endpoint http://127.0.0.1:1234/v1 --out o"
    assert substitute("mos serve S.yaml --port 7860 --db s.sqlite", v) == "mos serve S.yaml --port 4321 --db s.sqlite"
    assert substitute("tclap mixup --n 500 --seconds 100 --out d", v) == "tclap mixup --n 500 --seconds 100 --out d"
    assert needs_shipped_models('audioldm-cond generate "a beep" --out out/')
    assert not needs_shipped_models('audioldm-cond generate "a beep" --model m/ --out out/')
    assert needs_shipped_models("eval-gen score --gen g --ref r --backend tclap --out s")
    assert needs_shipped_models("eval-gen score --gen g --ref r --metrics fad,order --out s")
    assert not needs_shipped_models("eval-gen score --gen g --ref r --metrics fad,kad --out s")
    assert not needs_shipped_models("tclap export --model runs/my-tiny-tclap-run --out x")


def test_readme_has_commands_to_run():
    blocks = bash_blocks()
    assert len(blocks) >= 8, "README.md lost its command blocks?"
    runnable = [c for b in blocks for c in b.commands() if not is_setup(c)]
    assert len(runnable) >= 20
    for cmd in runnable:
        assert shlex.split(cmd)[0] in {"tclap", "audioldm-cond", "eval-gen", "mos", "accelerate", "printf"}, (
            f"README command `{cmd}` starts with a program this doc test does not provide; add it to the test")


def test_setup_commands_are_what_ci_runs():
    ci = ci_commands()
    readme = [c for b in bash_blocks() for c in b.commands() if is_setup(c)]
    assert readme, "README.md has no set-up commands"
    ci_pip = [c for c in ci if c.startswith("pip install")]
    for cmd in readme:
        if cmd.startswith("pip install"):
            continue
        assert cmd in ci, f"README set-up command `{cmd}` is not what .ci/run runs ({ci})"
    # The README installs in two steps (the project, then its test extra); CI in one. Same requirements either way.
    r_reqs, r_extras = set(), set()
    for cmd in readme:
        if cmd.startswith("pip install"):
            reqs, extras = pip_requirements(cmd)
            r_reqs |= reqs
            r_extras |= extras
    c_reqs, c_extras = set(), set()
    for cmd in ci_pip:
        reqs, extras = pip_requirements(cmd)
        c_reqs |= reqs
        c_extras |= extras
    assert (r_reqs, r_extras) == (c_reqs, c_extras), f"README installs {r_reqs} + .{sorted(r_extras)}, CI {c_reqs} + .{sorted(c_extras)}"


def test_every_substitution_still_matches_a_readme_command():
    cmds = [c for b in bash_blocks() for c in b.commands() if not is_setup(c)]
    for sub in SUBSTITUTIONS:
        assert any(re.search(sub.pattern, c) for c in cmds), (
            f"substitution {sub.pattern!r} ({sub.why}) matches no README command: the README changed; update the "
            "table so no command runs at real scale")
    for name in STANDIN_NAMES:
        assert any(re.search(_standin_pattern(name), c) for c in cmds), (
            f"stand-in {name} is named by no README command any more; drop it from STANDIN_NAMES and standins()")


def _standin_pattern(name: str) -> str:
    """``name`` as a whole path argument (``data/auto-acd.jsonl``, not ``mydata/auto-acd.jsonl.bak``)."""
    end = "" if name.endswith("/") else r"(?![\w.-])"  # a folder may be followed by a path inside it
    return rf"(?<![\w/.-]){re.escape(name)}{end}"


def _uses_standins(blocks: list[Block]) -> bool:
    return any(re.search(_standin_pattern(name), c) for b in blocks for c in b.commands() for name in STANDIN_NAMES)


@pytest.mark.parametrize("section", _sections(), ids=_slug)
def test_readme_section_runs(section, request, tmp_path):
    """Every command of one README section, in order, in one working directory (holding the stand-ins it names)."""
    blocks = [b for b in bash_blocks() if b.section == section]
    if _uses_standins(blocks):
        standins = request.getfixturevalue("standins")
        for entry in standins.iterdir():
            if entry.is_dir():  # copied: commands write beside them (data/esc-mixed-up, runs/tclap-paper, ...)
                shutil.copytree(entry, tmp_path / entry.name)
            else:
                (tmp_path / entry.name).symlink_to(entry)
    if any("STUDY.yaml" in c for b in blocks for c in b.commands()):
        write_study(tmp_path)
    values = {"port": str(free_port())}
    with FakeLLM(AUDIOCAPS_CAPTIONS) as llm:
        values["llm"] = llm.url
        outputs: dict[str, str] = {}
        failures, skipped = run_blocks(blocks, tmp_path, values, outputs)
        llm_cmds = [c for b in blocks for c in b.commands() if re.search(r"--backend llm\b", c)]
        if llm_cmds and not any("--backend llm" in f for f in failures):
            assert llm.requests >= len(AUDIOCAPS_CAPTIONS), f"`{llm_cmds[0]}` never asked the fake endpoint"
    if failures:
        pytest.fail(f"{len(failures)} README command(s) failed in {tmp_path}:\n\n" + "\n\n".join(failures),
                    pytrace=False)
    section_blocks = [b for b in readme_blocks() if b.section == section]
    diffs = output_differences(section_blocks, outputs)
    if diffs:
        pytest.fail(f"{len(diffs)} README output block(s) are not what their command prints now (refresh them with "
                    "`python scripts/readme_outputs.py`):\n\n" + "\n\n".join(diffs), pytrace=False)
    if skipped:
        pytest.skip(f"the shipped models are not in the checkout yet (missing {', '.join(missing_assets())}); "
                    f"skipped {len(skipped)} command(s) that need them (the others ran):\n" + "\n".join(skipped))


def test_output_blocks_are_not_placeholders():
    text = README.read_text(encoding="utf-8")
    found = [f"{b.where}: {line.strip()}" for b in parse_blocks(text) if b.lang == "text"
             for line in b.lines if _PLACEHOLDER.match(line.strip())]
    in_fence = False
    for n, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and _PLACEHOLDER.match(line.strip()):
            found.append(f"README.md:{n}: {line.strip()}")
    assert not found, "placeholders instead of real output:\n" + "\n".join(found)
