"""The ``tclap negatives`` job: read captions, make validated negatives, cache, write, report.

Input layouts: AudioCaps CSV (``audiocap_id,youtube_id,start_time,caption``), Clotho CSV
(``file_name,caption_1..caption_5``; one row per caption, id ``<file_name>#<k>``), or JSON Lines with
``"caption"`` or ``"captions"`` (and an optional ``"id"``).

Output: ``OUT/negatives.jsonl`` and ``OUT/negatives.csv`` with ``id, caption, negative, backend, reason``
(``negative`` empty and ``reason`` saying why when none was made; ``reason == "ok"`` otherwise), written
atomically at the end. Every finished caption is appended to ``OUT/.cache.jsonl`` keyed by
``sha256(caption, backend, model, prompt)``, so an interrupted run resumes, and a change of model or
prompt recomputes. Transient endpoint failures are not cached (a rerun tries again).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from basekit.atomic import atomic_write_text
from basekit.errors import UserError
from tclap.negatives.llm import HFTextGenBackend, LLMError, LLMUnavailable, OpenAIChatBackend, clean_response, load_prompt, render_prompt
from tclap.negatives.rule import rule_negative
from tclap.negatives.validate import validate_negative

RULE_VERSION = "rule-v1"
#: consecutive unreachable-endpoint failures, with no success yet, after which the run stops.
MAX_UNREACHABLE = 3


@dataclass
class NegativesConfig:
    """Settings of a ``tclap negatives`` run."""

    backend: str = "rule"  # "rule" or "llm"
    endpoint: str | None = None
    model: str | None = None
    api_key_env: str | None = None
    hf_model: str | None = None
    prompt_file: str | None = None
    retries: int = 2
    timeout: float = 30.0


@dataclass
class NegativesReport:
    total: int = 0
    made: Counter = field(default_factory=Counter)  # backend -> count
    reasons: Counter = field(default_factory=Counter)  # reason -> count (captions without a negative)
    cached: int = 0
    jsonl: Path | None = None
    csv: Path | None = None

    def summary(self) -> str:
        n_made = sum(self.made.values())
        by = ", ".join(f"{b}: {c}" for b, c in self.made.most_common()) or "none"
        lines = [f"negatives: {n_made}/{self.total} caption(s) got a negative ({by}); {self.cached} from the cache"]
        if self.reasons:
            lines.append(f"  no negative for {sum(self.reasons.values())}:")
            for reason, c in self.reasons.most_common():
                lines.append(f"    {c} x {reason}")
        if self.jsonl:
            lines.append(f"  wrote {self.jsonl} and {self.csv}")
        return "\n".join(lines)


def read_captions(path: str | os.PathLike) -> list[tuple[str, str]]:
    """``(id, caption)`` pairs from an AudioCaps/Clotho CSV or a JSONL file."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"captions file not found: {p}")
    out: list[tuple[str, str]] = []
    if p.suffix.lower() in (".jsonl", ".json"):
        with p.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise UserError(f"{p}:{lineno}: not valid JSON ({exc.msg})") from None
                if not isinstance(row, dict) or not ("caption" in row or "captions" in row):
                    raise UserError(f"{p}:{lineno}: each line needs a 'caption' or 'captions' field")
                base = str(row.get("id", lineno))
                caps = row.get("captions", row.get("caption"))
                caps = [caps] if isinstance(caps, str) else caps
                if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
                    raise UserError(f"{p}:{lineno}: 'caption' must be text, 'captions' a list of text")
                for k, c in enumerate(caps, 1):
                    out.append((base if len(caps) == 1 else f"{base}#{k}", c))
    elif p.suffix.lower() == ".csv":
        with p.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            cols = reader.fieldnames or []
            clotho = [c for c in cols if c.startswith("caption_")]
            if "caption" in cols:
                id_col = next((c for c in ("audiocap_id", "id", "youtube_id", "file_name") if c in cols), None)
                for k, row in enumerate(reader, 2):
                    out.append((row[id_col] if id_col else str(k), row["caption"] or ""))
            elif clotho:
                if "file_name" not in cols:
                    raise UserError(f"{p}: a Clotho CSV needs a file_name column next to caption_1..caption_5")
                for row in reader:
                    for c in clotho:
                        out.append((f"{row['file_name']}#{c.split('_', 1)[1]}", row[c] or ""))
            else:
                raise UserError(
                    f"{p}: no caption column; expected AudioCaps (audiocap_id,...,caption) or Clotho (file_name,caption_1..5)"
                )
    else:
        raise UserError(f"captions file {p}: use a .csv (AudioCaps/Clotho layout) or .jsonl file")
    if not out:
        raise UserError(f"captions file {p} holds no captions")
    return out


def _cache_key(caption: str, backend: str, model: str, prompt: str) -> str:
    return hashlib.sha256(json.dumps([caption, backend, model, prompt], ensure_ascii=False).encode("utf-8")).hexdigest()


def _read_cache(path: Path) -> dict[str, dict]:
    cache: dict[str, dict] = {}
    if path.is_file():
        with path.open(encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                    cache[row["key"]] = row
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a line torn by a kill: that caption is simply recomputed
    return cache


def _make_backend(cfg: NegativesConfig):
    if cfg.backend == "rule":
        return None, RULE_VERSION, ""
    if cfg.backend != "llm":
        raise UserError(f"--backend {cfg.backend!r}: use rule or llm")
    prompt = load_prompt(cfg.prompt_file)
    if cfg.hf_model:

        be = HFTextGenBackend(cfg.hf_model)
        return be, be.name, prompt
    if not cfg.endpoint or not cfg.model:
        raise UserError("--backend llm needs --endpoint URL and --model NAME (or --hf-model PATH)")
    key = None
    if cfg.api_key_env:
        key = os.environ.get(cfg.api_key_env)
        if not key:
            raise UserError(f"--api-key-env {cfg.api_key_env}: that environment variable is not set")

    be = OpenAIChatBackend(cfg.endpoint, cfg.model, api_key=key, timeout=cfg.timeout)
    return be, be.name, prompt


def _llm_negative(be, prompt: str, caption: str, retries: int) -> tuple[str | None, str]:
    """Try the model up to ``1 + retries`` times; returns ``(negative, "")`` or ``(None, reason)``."""
    last = "no answer"
    for attempt in range(1 + retries):
        answer = clean_response(be.complete(render_prompt(prompt, caption), attempt))
        if not answer:
            last = "model found no order (answered NONE or nothing)"
            continue
        bad = validate_negative(caption, answer)
        if bad is None:
            return answer, ""
        last = bad
    return None, f"invalid model output after {1 + retries} tries: {last}"


def run_negatives(captions_path: str | os.PathLike, out_dir: str | os.PathLike, cfg: NegativesConfig, quiet: bool = False) -> NegativesReport:
    """Make a negative per caption; see the module docstring for files and caching."""
    if cfg.retries < 0:
        raise UserError(f"--retries {cfg.retries}: use 0 or more")
    captions = read_captions(captions_path)
    be, model_name, prompt = _make_backend(cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache_path = out / ".cache.jsonl"
    cache = _read_cache(cache_path)
    report = NegativesReport(total=len(captions))
    rows = []
    unreachable = 0
    any_success = False
    with cache_path.open("a", encoding="utf-8") as cache_f:
        for cid, caption in tqdm(captions, desc="negatives", unit="caption", disable=quiet or not sys.stderr.isatty()):
            key = _cache_key(caption, cfg.backend, model_name, prompt)
            row = cache.get(key)
            if row is not None:
                report.cached += 1
            else:
                if not caption.strip():
                    neg, reason = None, "empty caption"
                elif be is None:
                    r = rule_negative(caption)
                    neg, reason = r.negative, r.reason
                    if neg is not None:
                        bad = validate_negative(caption, neg)
                        if bad is not None:  # the rules' own output is checked like a model's
                            neg, reason = None, f"rule output rejected: {bad}"
                else:
                    try:
                        neg, reason = _llm_negative(be, prompt, caption, cfg.retries)
                        unreachable = 0
                        any_success = True
                    except LLMUnavailable as exc:
                        unreachable += 1
                        if unreachable >= MAX_UNREACHABLE and not any_success:
                            raise UserError(
                                f"LLM endpoint unreachable: {exc}; start the server or fix --endpoint "
                                "(finished captions are cached; re-run to resume)"
                            ) from None
                        report.reasons[f"endpoint error: {exc}"] += 1
                        rows.append({"id": cid, "caption": caption, "negative": "", "backend": model_name, "reason": f"endpoint error: {exc}"})
                        continue  # not cached: a re-run tries again
                    except LLMError as exc:
                        report.reasons[f"endpoint error: {exc}"] += 1
                        rows.append({"id": cid, "caption": caption, "negative": "", "backend": model_name, "reason": f"endpoint error: {exc}"})
                        continue
                row = {"key": key, "caption": caption, "negative": neg or "", "backend": model_name,
                       "reason": "ok" if neg else reason}
                cache[key] = row
                cache_f.write(json.dumps(row, ensure_ascii=False) + "\n")
                cache_f.flush()
            if row["negative"]:
                report.made[row["backend"]] += 1
            else:
                report.reasons[row["reason"]] += 1
            rows.append({"id": cid, "caption": caption, "negative": row["negative"], "backend": row["backend"], "reason": row["reason"]})
    report.jsonl = atomic_write_text(out / "negatives.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["id", "caption", "negative", "backend", "reason"])
    w.writeheader()
    w.writerows(rows)
    report.csv = atomic_write_text(out / "negatives.csv", buf.getvalue())
    return report
