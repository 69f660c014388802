"""The Gradio app of a listening study: consent → training → one clip at a time → thank you.

Pages and API share :class:`demo.service.MosService`, so the browser and an API client obey the same rules.
The app is a FastAPI application with Gradio mounted at ``/`` and one extra route, ``/mos/clip/<opaque id>``,
that serves re-encoded WAV bytes: Gradio's own file routes (which keep original file names) are never used.

The audio player is a ``gr.HTML`` holding a plain ``<audio>`` element; its ``js_on_load`` listens (capture
phase, since media events do not bubble) for ``play`` and ``ended`` and fires the component's ``play`` /
``stop`` events. The server records them, and only a recorded ``ended`` unlocks the scales (and the API
refuses a rating without one, so the rule cannot be bypassed).

API endpoints (``gradio_client``: ``Client(url).predict(..., api_name="/rate")``): ``/start(rater_id, password,
consent)``, ``/state(token)``, ``/finish_training(token)``, ``/played(token, item_id, event)``,
``/rate(token, item_id, ratings)``, ``/admin_status(password)``. Refusals raise ``gr.Error`` with one line.
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

PLAYER_JS = """
element.addEventListener('play', function (e) {
  if (e.target && e.target.tagName === 'AUDIO') { trigger('play'); }
}, true);
element.addEventListener('ended', function (e) {
  if (e.target && e.target.tagName === 'AUDIO') { trigger('stop'); }
}, true);
"""


@dataclass
class AppConfig:
    """How the app runs. ``concurrency`` bounds the events handled at once (SQLite serialises the writes)."""

    host: str = "127.0.0.1"
    port: int = 7860
    concurrency: int = 32
    title: str = "Listening test"


def _player_html(item: dict) -> str:
    src = html.escape(item["audio_url"], quote=True)
    return f'<audio id="mos-player" controls preload="auto" src="{src}"></audio>'


def _training_html(examples: list[dict]) -> str:
    parts = []
    for i, ex in enumerate(examples, 1):
        parts.append(
            f'<div class="mos-train"><p><b>Example {i}.</b> Text: <i>{html.escape(ex["text"])}</i></p>'
            f'<audio controls preload="none" src="{html.escape(ex["audio_url"], quote=True)}"></audio>'
            f'<p>{html.escape(ex.get("note") or "")}</p></div>')
    return "\n".join(parts)


def build_blocks(service: MosService, config: AppConfig | None = None):
    """The ``gr.Blocks`` UI and API of one study (not launched)."""
    import gradio as gr

    config = config or AppConfig()
    study = service.study

    with gr.Blocks(title=config.title, analytics_enabled=False) as blocks:
        st = gr.State({})
        with gr.Column(visible=True) as consent_col:
            gr.Markdown(f"## {html.escape(config.title)}\n\n{html.escape(study.consent_text)}")
            rater_box = gr.Textbox(label="Rater id", max_lines=1, elem_id="mos-rater")
            pw_box = gr.Textbox(label="Password", type="password", max_lines=1, elem_id="mos-password",
                                visible=study.rater_password is not None)
            agree = gr.Checkbox(label="I agree to take part", value=False, elem_id="mos-agree")
            start_btn = gr.Button("Start", variant="primary", elem_id="mos-start")
        with gr.Column(visible=False) as training_col:
            gr.Markdown("## Training\nListen to these examples; they show what the ends of the scales mean. "
                        "They are not rated.")
            training_html = gr.HTML(js_on_load=None, elem_id="mos-training")
            train_btn = gr.Button("Start rating", variant="primary", elem_id="mos-train-done")
        with gr.Column(visible=False) as rating_col:
            progress_md = gr.Markdown(elem_id="mos-progress")
            prompt_md = gr.Markdown(elem_id="mos-prompt")
            player = gr.HTML(js_on_load=PLAYER_JS, elem_id="mos-player-box")
            gr.Markdown("Listen to the whole clip; the scales unlock when it has played to the end.")
            radios = [
                gr.Radio(choices=[(f"{k}: {lab}", k) for k, lab in sorted(sc.labels.items(), reverse=True)],
                         value=None, label=sc.question, interactive=False, elem_id=f"mos-scale-{sc.name}")
                for sc in study.scales
            ]
            submit_btn = gr.Button("Submit and next", variant="primary", interactive=False, elem_id="mos-submit")
        with gr.Column(visible=False) as done_col:
            gr.Markdown("## Thank you!\nAll your ratings are saved. You can close this page.", elem_id="mos-done")
        msg = gr.Markdown(elem_id="mos-message")

        page_outputs = [st, consent_col, training_col, rating_col, done_col, training_html, progress_md, prompt_md,
                        player, *radios, submit_btn, msg]

        def render(state: dict, message: str = "") -> list:
            phase = state["phase"]
            item = state.get("item")
            played = bool(state.get("played"))
            ui_state = {"token": state["token"], "item": item["item_id"] if item else None}
            return [
                ui_state,
                gr.update(visible=False),
                gr.update(visible=phase == "training"),
                gr.update(visible=phase == "rating"),
                gr.update(visible=phase == "done"),
                _training_html(state.get("training", [])) if phase == "training" else gr.update(),
                f"Clip {state['position']} of {state['total']}" if phase == "rating" else "",
                f"**Text:** {html.escape(item['text'])}" if item else "",
                _player_html(item) if item else "",
                *[gr.update(value=None, interactive=played) for _ in radios],
                gr.update(interactive=played),
                message,
            ]

        def unchanged(message: str) -> list:
            return [gr.update() for _ in page_outputs[:-1]] + [f"**{html.escape(message)}**"]

        def on_load(request: gr.Request):
            rater = request.query_params.get("rater") if request else None
            if not rater:
                return unchanged("") + [gr.update()]
            try:
                from demo.study import validate_rater_id

                rater = validate_rater_id(rater)
                if service.rater_exists(rater) and study.rater_password is None:
                    return render(service.start(rater)) + [rater]
            except UserError as exc:
                return unchanged(str(exc)) + [gr.update()]
            return unchanged("") + [rater]

        def on_start(rater_id: str, password: str, consent: bool):
            try:
                return render(service.start(rater_id, password or None, consent=bool(consent)))
            except UserError as exc:
                return unchanged(str(exc))

        def on_train_done(ui: dict):
            try:
                return render(service.finish_training(ui.get("token")))
            except UserError as exc:
                return unchanged(str(exc))

        def on_play(ui: dict):
            try:
                if ui.get("item"):
                    service.played(ui.get("token"), ui["item"], "play")
            except UserError:
                pass  # a stale page's play event: nothing to unlock, the next render shows the current clip
            return None

        def on_ended(ui: dict):
            try:
                if not ui.get("item"):
                    raise UserError("no clip on this page; reload it")
                res = service.played(ui.get("token"), ui["item"], "ended")
            except UserError as exc:
                return [gr.update() for _ in radios] + [gr.update(), f"**{html.escape(str(exc))}**"]
            return [gr.update(interactive=res["played"]) for _ in radios] + [gr.update(interactive=res["played"]), ""]

        def on_submit(ui: dict, *values):
            try:
                if not ui.get("item"):
                    raise UserError("no clip on this page; reload it")
                res = service.rate(ui.get("token"), ui["item"], dict(zip(service.scale_names, values)))
            except UserError as exc:
                return unchanged(str(exc))
            note = "" if res["status"] == "saved" else "That clip was already rated; here is the next one."
            return render(res["state"], note)

        blocks.load(on_load, inputs=None, outputs=page_outputs + [rater_box], api_visibility="private")
        start_btn.click(on_start, [rater_box, pw_box, agree], page_outputs, api_visibility="private")
        train_btn.click(on_train_done, [st], page_outputs, api_visibility="private")
        player.play(on_play, [st], None, api_visibility="private", show_progress="hidden")
        player.stop(on_ended, [st], [*radios, submit_btn, msg], api_visibility="private", show_progress="hidden")
        submit_btn.click(on_submit, [st, *radios], page_outputs, api_visibility="private")

        _api(service)

    blocks.queue(default_concurrency_limit=config.concurrency)
    return blocks


def _api(service: MosService) -> None:
    """Typed API endpoints for programmatic raters (load tests, crowd platforms)."""
    import gradio as gr

    def guard(fn, *args):
        try:
            return fn(*args)
        except UserError as exc:
            raise gr.Error(str(exc), print_exception=False) from None

    def start(rater_id: str, password: str = "", consent: bool = False) -> dict:
        """Start or resume a rater's session; returns the state with its `token`."""
        return guard(service.start, rater_id, password or None, consent)

    def state(token: str) -> dict:
        """The rater's phase, current clip (opaque id, audio URL, text) and whether it was played."""
        return guard(service.state, token)

    def finish_training(token: str) -> dict:
        """Mark the training page as done."""
        return guard(service.finish_training, token)

    def played(token: str, item_id: str, event: str = "ended") -> dict:
        """Record a 'play' or 'ended' event; 'ended' unlocks the rating of that clip."""
        return guard(service.played, token, item_id, event)

    def rate(token: str, item_id: str, ratings: dict) -> dict:
        """Rate a clip on every scale (integers 1-5); returns status saved | already_rated and the next state."""
        return guard(service.rate, token, item_id, ratings)

    def admin_status(password: str) -> dict:
        """Progress counts for the study owner (admin password)."""
        return guard(service.admin_status, password)

    for fn in (start, state, finish_training, played, rate, admin_status):
        gr.api(fn, api_name=fn.__name__)


def build_app(service: MosService, config: AppConfig | None = None):
    """A FastAPI app: the opaque clip route plus the Gradio UI mounted at ``/``."""
    import gradio as gr
    from fastapi import FastAPI, HTTPException, Response

    config = config or AppConfig()
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.get(CLIP_ROUTE + "{clip_id}")
    def clip(clip_id: str) -> Response:
        try:
            data = service.clip_wav(clip_id)
        except UserError:
            raise HTTPException(status_code=404, detail="unknown clip") from None
        return Response(content=data, media_type="audio/wav", headers={"Cache-Control": "private, max-age=3600"})

    blocks = build_blocks(service, config)
    return gr.mount_gradio_app(app, blocks, path="/", server_name=config.host, server_port=config.port,
                               footer_links=["api"], run_history=False, ssr_mode=False, show_error=True)


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
