"""LLM backends for negative captions: an OpenAI-compatible chat endpoint or a local transformers model.

The prompt is a text file with a ``{caption}`` placeholder (default: ``default_prompt.txt`` next to this
module); users replace it with ``--prompt-file``. The model's answer is cleaned (first line, quotes and
"Rewritten:" labels removed) and then validated by the caller; ``NONE`` means the model found no order.

Nothing here opens a connection unless the user named an endpoint; the local model is loaded with
``local_files_only=True``.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path

from basekit.errors import UserError


class LLMError(RuntimeError):
    """One call failed (HTTP error, malformed reply); the caller may retry."""


class LLMUnavailable(LLMError):
    """The endpoint cannot be reached at all (connection refused, unknown host, timeout)."""


def default_prompt() -> str:
    return resources.files("tclap.negatives").joinpath("default_prompt.txt").read_text(encoding="utf-8")


def load_prompt(path: str | os.PathLike | None) -> str:
    """The prompt template (default or the user's file); it must contain ``{caption}``."""
    if path is None:
        return default_prompt()
    p = Path(path)
    if not p.is_file():
        raise UserError(f"prompt file not found: {p}")
    text = p.read_text(encoding="utf-8")
    if "{caption}" not in text:
        raise UserError(f"prompt file {p} has no {{caption}} placeholder; add one where the caption goes")
    return text


def render_prompt(template: str, caption: str) -> str:
    # str.replace, not str.format: prompts may hold other braces (JSON examples).
    return template.replace("{caption}", caption)


def clean_response(text: str) -> str:
    """The rewritten caption from a model's answer ("" for NONE or nothing usable)."""
    for line in text.strip().splitlines():
        line = line.strip()
        if not line:
            continue
        line = re.sub(r"^(?:rewritten|negative|output|answer|caption)\s*:\s*", "", line, flags=re.IGNORECASE)
        line = re.sub(r"^[-*\d.)\s]+(?=[A-Za-z])", "", line)  # list markers
        line = line.strip().strip("\"'`“”‘’").strip()
        if line.upper().rstrip(".") == "NONE":
            return ""
        return line
    return ""


class OpenAIChatBackend:
    """Any OpenAI-compatible ``/chat/completions`` endpoint, over plain urllib.

    Args:
        endpoint: base URL (``http://host:8000/v1``) or the full ``.../chat/completions`` URL.
        model: model name sent in the request.
        api_key: bearer token (``None`` for local servers).
        timeout: seconds per request.
        temperature: sampling temperature of retries (the first try uses 0 for a stable answer).
    """

    def __init__(self, endpoint: str, model: str, api_key: str | None = None, timeout: float = 30.0, temperature: float = 0.7):
        if not re.match(r"^https?://", endpoint or ""):
            raise UserError(f"--endpoint {endpoint!r}: give an http(s) URL such as http://localhost:8000/v1")
        self.url = endpoint.rstrip("/")
        if not self.url.endswith("/chat/completions"):
            self.url += "/chat/completions"
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.temperature = temperature
        self.name = f"llm:{model}"

    def complete(self, prompt: str, attempt: int = 0) -> str:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": 0.0 if attempt == 0 else self.temperature,
            "max_tokens": 120,
        }
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.url, data=json.dumps(body).encode("utf-8"), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise LLMError(f"HTTP {exc.code} from {self.url}") from None
        except urllib.error.URLError as exc:
            raise LLMUnavailable(f"cannot reach {self.url} ({exc.reason})") from None
        except (socket.timeout, TimeoutError):
            raise LLMUnavailable(f"no answer from {self.url} within {self.timeout:g} s") from None
        except (ConnectionError, http.client.HTTPException) as exc:
            raise LLMUnavailable(f"connection to {self.url} failed ({type(exc).__name__})") from None
        try:
            data = json.loads(raw)
            content = data["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise LLMError(f"malformed reply from {self.url} (not an OpenAI chat completion)") from None
        if not isinstance(content, str):
            raise LLMError(f"malformed reply from {self.url} (content is not text)")
        return content


class HFTextGenBackend:
    """A local transformers causal LM directory (loaded lazily, offline)."""

    def __init__(self, path: str | os.PathLike, max_new_tokens: int = 60, seed: int = 0):
        p = Path(path)
        if not p.is_dir():
            raise UserError(f"--hf-model {p}: not a folder (give a local transformers text-generation model)")
        self.path = p
        self.max_new_tokens = max_new_tokens
        self.seed = seed
        self.name = f"hf:{p.name}"
        self._model = None
        self._tok = None

    def _load(self):
        if self._model is None:
            from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: PLC0415 (transformers is heavy; loaded only when this path runs)

            try:
                self._tok = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
                self._model = AutoModelForCausalLM.from_pretrained(self.path, local_files_only=True).eval()
            except (OSError, ValueError) as exc:
                raise UserError(f"--hf-model {self.path}: cannot load it ({str(exc).splitlines()[0][:120]})") from None

    def complete(self, prompt: str, attempt: int = 0) -> str:
        import torch  # noqa: PLC0415 (torch is heavy; loaded only when this path runs)

        self._load()
        enc = self._tok(prompt, return_tensors="pt")
        kwargs = dict(max_new_tokens=self.max_new_tokens, pad_token_id=self._tok.pad_token_id or self._tok.eos_token_id)
        if attempt == 0:
            kwargs["do_sample"] = False
        else:  # retries sample, seeded per attempt so reruns are reproducible
            torch.manual_seed(self.seed + attempt)
            kwargs.update(do_sample=True, temperature=0.8, top_p=0.95)
        with torch.no_grad():
            out = self._model.generate(**enc, **kwargs)
        return self._tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
