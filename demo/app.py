"""The Gradio app of a listening study: consent → training → ACR clips → A/B pages → MUSHRA pages → thank you.

Pages and API share :class:`demo.service.MosService`, so the browser and an API client obey the same rules.
The app is a FastAPI application with Gradio mounted at ``/`` and one extra route, ``/mos/clip/<opaque id>``,
that serves re-encoded WAV bytes at the study's loudness: Gradio's own file routes (which keep original file
names) are never used. The page shows no footer links (no "Use via API"): raters have no reason to see the
endpoints, though the endpoints themselves stay, behind rater tokens, for load tests and tools.

Every player is a ``gr.HTML`` holding plain ``<audio data-clip=ID>`` elements; its ``js_on_load`` listens
(capture phase, since media events do not bubble) for ``play``, ``ended`` and ``seeking`` and reports them
with the clip id through the component's ``play`` event. The page refuses forward seeks past the furthest
point heard (and reports each); the server times the events and unlocks a clip's scale only after a complete
listen (:mod:`demo.listening`), and the API refuses a rating without one, so the rule cannot be bypassed.

Access (:mod:`demo.access`): the page reads the link's query parameters. ``open``: ``?rater=ID``; ``signed``:
``?rater=ID&sig=S``; ``crowd``: the platform's ``PROLIFIC_PID`` / ``workerId`` parameters, and the session token
is kept in the browser (``gr.BrowserState``, localStorage) so a reload resumes there and nowhere else.

API endpoints (``gradio_client``: ``Client(url).predict(..., api_name="/rate")``): ``/start(rater_id, password,
consent, sig)``, ``/enter(link, consent, password, token)``, ``/state(token)``, ``/finish_training(token)``,
``/played(token, item_id, event)``, ``/rate(token, item_id, ratings)``, ``/admin_status(password)``.
Refusals raise ``gr.Error`` with one line.
"""

# No `from __future__ import annotations` here: Gradio reads the `gr.Request` hint of `on_load` at runtime.
import html
import logging
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from basekit.errors import UserError
from demo.service import CLIP_ROUTE, MosService
from demo.study import CMOS_LABELS

# Reports play / ended / refused forward seeks of any <audio data-clip> inside the component; one clip plays at
# a time. `furthest` is the furthest point heard per clip: seeking beyond it (plus a little slack for the
# player's own rounding) jumps back, until the clip has been heard to the end once.
PLAYER_JS = """
const furthest = {};
const report = (a, ev) => trigger('play', {clip: a.dataset.clip, event: ev});
const audio = (e) => (e.target && e.target.tagName === 'AUDIO' && e.target.dataset.clip) ? e.target : null;
element.addEventListener('play', function (e) {
  const a = audio(e); if (!a) return;
  document.querySelectorAll('audio').forEach(function (o) { if (o !== a && !o.paused) o.pause(); });
  report(a, 'play');
}, true);
element.addEventListener('ended', function (e) {
  const a = audio(e); if (!a) return;
  furthest[a.dataset.clip] = Infinity;
  report(a, 'ended');
}, true);
element.addEventListener('timeupdate', function (e) {
  const a = audio(e); if (!a || a.seeking) return;
  furthest[a.dataset.clip] = Math.max(furthest[a.dataset.clip] || 0, a.currentTime);
}, true);
element.addEventListener('seeking', function (e) {
  const a = audio(e); if (!a) return;
  const m = furthest[a.dataset.clip] || 0;
  if (a.currentTime > m + 0.5) { a.currentTime = m; report(a, 'seek'); }
}, true);
"""

MUSHRA_HELP = ("Listen to the reference and to every sound (each to the end; its slider unlocks then). "
               "Scores: 80-100 excellent, 60-80 good, 40-60 fair, 20-40 poor, 0-20 bad.")


@dataclass
class AppConfig:
    """How the app runs. ``concurrency`` bounds the events handled at once (SQLite serialises the writes)."""

    host: str = "127.0.0.1"
    port: int = 7860
    concurrency: int = 32
    title: str = "Listening test"


def _audio(sound: dict, elem_id: str, label: str = "") -> str:
    src = html.escape(sound["audio_url"], quote=True)
    cid = html.escape(sound["item_id"], quote=True)
    tag = f'<audio id="{elem_id}" data-clip="{cid}" controls preload="auto" src="{src}"></audio>'
    return f'<div class="mos-sound"><b>{html.escape(label)}</b> {tag}</div>' if label else tag


def _training_html(examples: list[dict]) -> str:
    parts = []
    for i, ex in enumerate(examples, 1):
        parts.append(
            f'<div class="mos-train"><p><b>Example {i}.</b> Text: <i>{html.escape(ex["text"])}</i></p>'
            f'<audio controls preload="none" src="{html.escape(ex["audio_url"], quote=True)}"></audio>'
            f'<p>{html.escape(ex.get("note") or "")}</p></div>')
    return "\n".join(parts)


def _done_html(state: dict) -> str:
    c = state.get("completion") or {}
    parts = []
    if c.get("code"):
        parts.append(f'<p>Your completion code: <b id="mos-completion-code">{html.escape(c["code"])}</b></p>')
    if c.get("url"):
        parts.append(f'<p><a id="mos-completion-link" href="{html.escape(c["url"], quote=True)}">'
                     "Return to the study platform to finish</a></p>")
    return "\n".join(parts)


class _Page:
    """The components of the page and how a service state maps onto them."""

    def __init__(self, service: MosService, config: AppConfig):
        import gradio as gr  # noqa: PLC0415 (gradio is heavy; loaded only when this path runs)

        self.service, self.study = service, service.study
        study = self.study
        self.st = gr.State({})
        # The crowd token lives in this browser only (encrypted localStorage); key and secret are stable
        # across restarts so a reload after a restart still resumes.
        self.saved = gr.BrowserState(None, storage_key="mos-" + service.derived_secret("browser-key")[:12],
                                     secret=service.derived_secret("browser-state")[:32])
        fixed_id = study.access != "open"
        with gr.Column(visible=True) as self.consent_col:
            gr.Markdown(f"## {html.escape(config.title)}\n\n{html.escape(study.consent_text)}")
            self.rater_box = gr.Textbox(label="Rater id", max_lines=1, elem_id="mos-rater", interactive=not fixed_id)
            self.pw_box = gr.Textbox(label="Password", type="password", max_lines=1, elem_id="mos-password",
                                     visible=study.rater_password is not None)
            self.agree = gr.Checkbox(label="I agree to take part", value=False, elem_id="mos-agree")
            self.start_btn = gr.Button("Start", variant="primary", elem_id="mos-start")
        with gr.Column(visible=False) as self.training_col:
            gr.Markdown("## Training\nListen to these examples; they show what the ends of the scales mean. "
                        "They are not rated.")
            self.training_html = gr.HTML(js_on_load=None, elem_id="mos-training")
            self.train_btn = gr.Button("Start rating", variant="primary", elem_id="mos-train-done")
        self.progress_md = gr.Markdown(elem_id="mos-progress")
        self._build_acr()
        self._build_ab()
        self._build_mushra()
        with gr.Column(visible=False) as self.done_col:
            gr.Markdown("## Thank you!\nAll your ratings are saved.", elem_id="mos-done")
            self.done_html = gr.HTML(elem_id="mos-done-text")
        self.msg = gr.Markdown(elem_id="mos-message")

    def _build_acr(self) -> None:
        import gradio as gr  # noqa: PLC0415 (gradio is heavy; loaded only when this path runs)

        with gr.Column(visible=False) as self.acr_col:
            self.prompt_md = gr.Markdown(elem_id="mos-prompt")
            self.player = gr.HTML(js_on_load=PLAYER_JS, elem_id="mos-player-box")
            gr.Markdown("Listen to the whole clip; the scales unlock when it has played to the end.")
            self.radios = [
                gr.Radio(choices=[(f"{k}: {lab}", k) for k, lab in sorted(sc.labels.items(), reverse=True)],
                         value=None, label=sc.question, interactive=False, elem_id=f"mos-scale-{sc.name}")
                for sc in self.study.scales]
            self.submit_btn = gr.Button("Submit and next", variant="primary", interactive=False, elem_id="mos-submit")

    def _build_ab(self) -> None:
        import gradio as gr  # noqa: PLC0415 (gradio is heavy; loaded only when this path runs)

        self.ab_col = self.ab_player = self.ab_radio = self.ab_submit = self.ab_md = None
        cm = self.study.cmos
        if cm is None:
            return
        with gr.Column(visible=False) as self.ab_col:
            self.ab_md = gr.Markdown(elem_id="mos-ab-prompt")
            self.ab_player = gr.HTML(js_on_load=PLAYER_JS, elem_id="mos-ab-players")
            gr.Markdown("Listen to A and to B, each to the end; then answer.")
            choices = ([(lab, v) for v, lab in sorted(self._cmos_labels().items(), reverse=True)]
                       if cm.type == "cmos" else [("A", "A"), ("B", "B")])
            self.ab_radio = gr.Radio(choices=choices, value=None, label=cm.question, interactive=False,
                                     elem_id="mos-ab-scale")
            self.ab_submit = gr.Button("Submit and next", variant="primary", interactive=False,
                                       elem_id="mos-ab-submit")

    @staticmethod
    def _cmos_labels() -> dict[int, str]:

        return {v: (f"{v:+d}: {lab}" if v else f"0: {lab}") for v, lab in CMOS_LABELS.items()}

    def _build_mushra(self) -> None:
        import gradio as gr  # noqa: PLC0415 (gradio is heavy; loaded only when this path runs)

        self.mu_col = self.mu_md = self.mu_ref = self.mu_submit = None
        self.mu_players, self.mu_sliders = [], []
        mu = self.study.mushra
        if mu is None:
            return
        n = len(mu.systems) + 1 + len(mu.anchors)
        with gr.Column(visible=False) as self.mu_col:
            self.mu_md = gr.Markdown(elem_id="mos-mushra-prompt")
            gr.Markdown(MUSHRA_HELP)
            self.mu_ref = gr.HTML(js_on_load=PLAYER_JS, elem_id="mos-mushra-ref")
            for i in range(n):
                with gr.Row(equal_height=True):
                    self.mu_players.append(gr.HTML(js_on_load=PLAYER_JS, elem_id=f"mos-mushra-player-{i + 1}"))
                    self.mu_sliders.append(gr.Slider(0, 100, value=0, step=1, label=f"Sound {i + 1}",
                                                     interactive=False, elem_id=f"mos-mushra-{i + 1}", scale=3))
            self.mu_submit = gr.Button("Submit and next", variant="primary", interactive=False,
                                       elem_id="mos-mushra-submit")

    # ---- outputs ------------------------------------------------------------------------------------------
    def locks(self) -> list:
        """Every component that a complete listen unlocks, in a fixed order."""
        out = [*self.radios, self.submit_btn]
        if self.ab_col is not None:
            out += [self.ab_radio, self.ab_submit]
        if self.mu_col is not None:
            out += [*self.mu_sliders, self.mu_submit]
        return out

    def outputs(self) -> list:
        out = [self.st, self.saved, self.consent_col, self.training_col, self.acr_col, self.done_col,
               self.training_html, self.progress_md, self.prompt_md, self.player, self.done_html]
        if self.ab_col is not None:
            out += [self.ab_col, self.ab_md, self.ab_player]
        if self.mu_col is not None:
            out += [self.mu_col, self.mu_md, self.mu_ref, *self.mu_players]
        return out + self.locks() + [self.msg]

    def lock_updates(self, item: dict | None, heard: set[str], reset: bool) -> list:
        """Interactivity (and, on a new page, cleared values) of :meth:`locks` for ``item``."""
        import gradio as gr  # noqa: PLC0415 (gradio is heavy; loaded only when this path runs)

        kind = item["type"] if item else None

        def upd(active: bool, value: Any = None, own: bool = True):
            if not own:
                return gr.update(interactive=False) if reset else gr.update()
            return gr.update(interactive=active, value=value) if reset else gr.update(interactive=active)

        acr_ok = kind == "acr" and item["item_id"] in heard
        out = [upd(acr_ok, own=kind == "acr") for _ in self.radios] + [upd(acr_ok, own=kind == "acr")]
        if self.ab_col is not None:
            own = kind in ("cmos", "ab")
            ab_ok = own and {c["item_id"] for c in item["clips"]} <= heard
            out += [upd(ab_ok, own=own), upd(ab_ok, own=own)]
        if self.mu_col is not None:
            own = kind == "mushra"
            sounds = item["clips"] if own else []
            out += [upd(own and i < len(sounds) and sounds[i]["item_id"] in heard, 0, own)
                    for i in range(len(self.mu_sliders))]
            all_ok = own and {c["item_id"] for c in sounds} | {item["reference"]["item_id"]} <= heard
            out.append(upd(all_ok, own=own))
        return out

    def render(self, state: dict, message: str = "") -> list:
        import gradio as gr  # noqa: PLC0415 (gradio is heavy; loaded only when this path runs)

        phase, item = state["phase"], state.get("item")
        kind = item["type"] if item and phase == "rating" else None
        layout = [c["item_id"] for c in item.get("clips", [])] if kind else []
        ui = {"token": state["token"], "item": item["item_id"] if kind else None, "type": kind, "layout": layout}
        saved = {"token": state["token"], "rater": state["rater_id"]} if self.study.access == "crowd" else gr.update()
        out = [ui, saved, gr.update(visible=False), gr.update(visible=phase == "training"),
               gr.update(visible=kind == "acr"), gr.update(visible=phase == "done"),
               _training_html(state.get("training", [])) if phase == "training" else gr.update(),
               f"Page {state['position']} of {state['total']}" if phase == "rating" else "",
               f"**Text:** {html.escape(item['text'])}" if kind == "acr" else "",
               _audio(item, "mos-player") if kind == "acr" else "",
               _done_html(state) if phase == "done" else ""]
        if self.ab_col is not None:
            own = kind in ("cmos", "ab")
            out += [gr.update(visible=own),
                    f"**Text:** {html.escape(item['text'])}" if own else "",
                    "".join(_audio(c, f"mos-{c['label'].lower()}", c["label"]) for c in item["clips"]) if own else ""]
        if self.mu_col is not None:
            own = kind == "mushra"
            sounds = item["clips"] if own else []
            out += [gr.update(visible=own), f"**Text:** {html.escape(item['text'])}" if own else "",
                    _audio(item["reference"], "mos-ref", "Reference") if own else ""]
            out += [_audio(sounds[i], f"mos-m{i + 1}", f"Sound {i + 1}") if i < len(sounds) else ""
                    for i in range(len(self.mu_players))]
        heard = set(state.get("listened") or [])
        return out + self.lock_updates(item if kind else None, heard, reset=True) + [message]

    def unchanged(self, message: str) -> list:
        import gradio as gr  # noqa: PLC0415 (gradio is heavy; loaded only when this path runs)

        return [gr.update() for _ in self.outputs()[:-1]] + [f"**{html.escape(message)}**" if message else ""]


def build_blocks(service: MosService, config: AppConfig | None = None):
    """The ``gr.Blocks`` UI and API of one study (not launched)."""
    import gradio as gr  # noqa: PLC0415 (gradio is heavy; loaded only when this path runs)

    config = config or AppConfig()
    study = service.study

    with gr.Blocks(title=config.title, analytics_enabled=False) as blocks:
        pg = _Page(service, config)
        outputs = pg.outputs()

        def saved_token(saved: Any) -> str | None:
            return saved.get("token") if isinstance(saved, dict) else None

        def on_load(saved: Any, request: gr.Request):
            link = dict(request.query_params) if request else {}
            shown = link.get("rater") or link.get("PROLIFIC_PID") or link.get("workerId")
            box = gr.update(value=shown) if shown else gr.update()
            if not link:
                return pg.unchanged("") + [box]
            try:
                state = service.resume(link, saved_token(saved))
            except UserError as exc:
                return pg.unchanged(str(exc)) + [box]
            return (pg.render(state) if state else pg.unchanged("")) + [box]

        def on_start(rater_id: str, password: str, consent: bool, saved: Any, request: gr.Request):
            link = dict(request.query_params) if request else {}
            if study.access == "open":
                link["rater"] = rater_id
            try:
                return pg.render(service.enter(link, bool(consent), password or None, saved_token(saved)))
            except UserError as exc:
                return pg.unchanged(str(exc))

        def on_train_done(ui: dict):
            try:
                return pg.render(service.finish_training(ui.get("token")))
            except UserError as exc:
                return pg.unchanged(str(exc))

        def on_listen(ui: dict, evt: gr.EventData):
            data = evt._data if isinstance(getattr(evt, "_data", None), dict) else {}
            keep = [gr.update() for _ in pg.locks()]
            try:
                service.played(ui.get("token"), data.get("clip"), data.get("event"))
                if data.get("event") != "ended" or not ui.get("item"):
                    return keep + [gr.update()]
                item = service.current(ui["token"])
            except UserError as exc:
                if data.get("event") != "ended":
                    return keep + [gr.update()]  # a stale page's play or seek: nothing to unlock
                return keep + [f"**{html.escape(str(exc))}**"]
            if not item or item["item_id"] != ui["item"]:
                return keep + [""]
            return pg.lock_updates(item, set(item["listened"]), reset=False) + [""]

        def submit(ui: dict, ratings: Any):
            try:
                if not ui.get("item"):
                    raise UserError("no clip on this page; reload it")
                res = service.rate(ui.get("token"), ui["item"], ratings)
            except UserError as exc:
                return pg.unchanged(str(exc))
            note = "" if res["status"] == "saved" else "That page was already answered; here is the next one."
            return pg.render(res["state"], note)

        def on_submit(ui: dict, *values):
            return submit(ui, dict(zip(service.scale_names, values)))

        def on_ab_submit(ui: dict, value: Any):
            key = "cmos" if study.cmos.type == "cmos" else "prefer"
            return submit(ui, {key: value})

        def on_mushra_submit(ui: dict, *values):
            return submit(ui, dict(zip(ui.get("layout") or [], values)))

        hidden = dict(api_visibility="private")
        quiet = dict(api_visibility="private", show_progress="hidden")
        blocks.load(on_load, inputs=[pg.saved], outputs=outputs + [pg.rater_box], **hidden)
        pg.start_btn.click(on_start, [pg.rater_box, pg.pw_box, pg.agree, pg.saved], outputs, **hidden)
        pg.train_btn.click(on_train_done, [pg.st], outputs, **hidden)
        for player in [pg.player, pg.ab_player, pg.mu_ref, *pg.mu_players]:
            if player is not None:
                # "multiple": a play, a seek and an end in quick succession must each reach the server (the
                # default "once" drops an event while the previous one of the same listener is pending)
                player.play(on_listen, [pg.st], pg.locks() + [pg.msg], trigger_mode="multiple", **quiet)
        pg.submit_btn.click(on_submit, [pg.st, *pg.radios], outputs, **hidden)
        if pg.ab_submit is not None:
            pg.ab_submit.click(on_ab_submit, [pg.st, pg.ab_radio], outputs, **hidden)
        if pg.mu_submit is not None:
            pg.mu_submit.click(on_mushra_submit, [pg.st, *pg.mu_sliders], outputs, **hidden)

        _api(service)

    blocks.queue(default_concurrency_limit=config.concurrency)
    return blocks


def _api(service: MosService) -> None:
    """Typed API endpoints for programmatic raters (load tests, tools); every rating call needs a rater token."""
    import gradio as gr  # noqa: PLC0415 (gradio is heavy; loaded only when this path runs)

    def guard(fn, *args):
        try:
            return fn(*args)
        except UserError as exc:
            raise gr.Error(str(exc), print_exception=False) from None

    def start(rater_id: str, password: str = "", consent: bool = False, sig: str = "") -> dict:
        """Start or resume a rater's session (`sig`: the signed link's signature); returns the state with its
        `token`."""
        return guard(lambda: service.start(rater_id, password or None, consent, sig=sig or None))

    def enter(link: dict, consent: bool = False, password: str = "", token: str = "") -> dict:
        """Start from a study link's query parameters (rater/sig, or a crowd platform's ids)."""
        return guard(service.enter, link, consent, password or None, token or None)

    def state(token: str) -> dict:
        """The rater's phase, current clip or page (opaque ids, audio URLs, text) and what was heard."""
        return guard(service.state, token)

    def finish_training(token: str) -> dict:
        """Mark the training page as done."""
        return guard(service.finish_training, token)

    def played(token: str, item_id: str, event: str = "ended") -> dict:
        """Record a player event: 'play', 'ended' (counted only as the end of a timed listen) or 'seek'."""
        return guard(service.played, token, item_id, event)

    def rate(token: str, item_id: str, ratings: dict) -> dict:
        """Answer a clip or page; returns status saved | already_rated and the next state."""
        return guard(service.rate, token, item_id, ratings)

    def admin_status(password: str) -> dict:
        """Progress counts for the study owner (admin password)."""
        return guard(service.admin_status, password)

    for fn in (start, enter, state, finish_training, played, rate, admin_status):
        gr.api(fn, api_name=fn.__name__)


def build_app(service: MosService, config: AppConfig | None = None):
    """A FastAPI app: the opaque clip route plus the Gradio UI mounted at ``/`` (no footer links)."""
    import gradio as gr  # noqa: PLC0415 (gradio is heavy; loaded only when this path runs)
    from fastapi import FastAPI, HTTPException, Request, Response

    config = config or AppConfig()
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.get(CLIP_ROUTE + "{clip_id}")
    def clip(clip_id: str, request: Request) -> Response:
        try:
            data = service.clip_wav(clip_id)
        except UserError:
            raise HTTPException(status_code=404, detail="unknown clip") from None
        headers = {"Cache-Control": "private, max-age=3600", "Accept-Ranges": "bytes"}
        span = byte_range(request.headers.get("range"), len(data))
        if span is None:
            return Response(content=data, media_type="audio/wav", headers=headers)
        if span == "unsatisfiable":
            return Response(status_code=416, headers={"Content-Range": f"bytes */{len(data)}"})
        a, b = span
        headers["Content-Range"] = f"bytes {a}-{b}/{len(data)}"
        return Response(content=data[a:b + 1], status_code=206, media_type="audio/wav", headers=headers)

    blocks = build_blocks(service, config)
    return gr.mount_gradio_app(app, blocks, path="/", server_name=config.host, server_port=config.port,
                               footer_links=[], run_history=False, ssr_mode=False, show_error=True)


def byte_range(header: str | None, size: int):
    """The ``(first, last)`` byte positions of a single-range ``Range: bytes=...`` header, None to send the whole
    body (no header, or a form we do not serve: several ranges), or ``"unsatisfiable"``.

    Browsers ask for ranges to seek in audio (Safari will not play audio without range support), so the clip
    route answers them with 206 Partial Content.
    """
    import re

    m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header or "")
    if not m or (not m.group(1) and not m.group(2)):
        return None
    if not m.group(1):  # "bytes=-N": the last N bytes
        n = int(m.group(2))
        return (max(0, size - n), size - 1) if n > 0 and size > 0 else "unsatisfiable"
    first = int(m.group(1))
    last = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
    if first >= size or last < first:
        return "unsatisfiable"
    return first, last


class Server:
    """Run the app with uvicorn in a background thread (``port=0`` picks a free port). Use as a context manager."""

    def __init__(self, service: MosService, config: AppConfig | None = None):
        import uvicorn

        self.config = config or AppConfig()
        self.app = build_app(service, self.config)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((self.config.host, self.config.port))
        except OSError as exc:
            self._sock.close()
            raise UserError(f"cannot listen on {self.config.host}:{self.config.port} ({exc.strerror}); "
                            "choose another --port") from None
        self.port = self._sock.getsockname()[1]
        self.url = f"http://{self.config.host}:{self.port}/"
        self._server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="on",
                                                     timeout_graceful_shutdown=2))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def start(self, timeout: float = 60.0) -> "Server":
        self._thread.start()
        t0 = time.monotonic()
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() - t0 > timeout:
                raise RuntimeError("the MOS server did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        # Open SSE streams of clients that never disconnected are cancelled after the grace period; uvicorn
        # logs each as an ERROR traceback, which is noise at a deliberate shutdown.
        logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self._sock.close()

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
