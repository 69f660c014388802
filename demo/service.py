"""The study logic behind both the browser UI and the API: raters, orders, listening, ratings, comparison pages.

Everything a rater or an API client can do goes through :class:`MosService`, so the rules hold for both:

- who may start or resume follows the study's access mode (:mod:`demo.access`): ``open`` (``?rater=ID``, with an
  optional rater password and id list), ``signed`` (a link signature under the study secret) or ``crowd`` (the
  participant id of Prolific / MTurk; a token is issued once, on the first visit);
- every later call carries a token: the rater id and an HMAC under the database secret of the id and a random
  per-rater nonce, so a token cannot be made from an id; a bad token is refused with one message whatever the id;
- a clip's scales unlock only after a complete listen that the server timed (:mod:`demo.listening`);
- a rating is refused unless the clip or page is the rater's and every clip on it was heard, and every value is in
  range; a refusal raises :class:`UserError` and writes nothing. Ratings are written with ``ON CONFLICT DO
  NOTHING``: a repeat is answered ``already_rated``.

Blinding: clips and pages are known to the outside only by opaque ids (HMAC of the database secret and their
identity; each test has its own ids, so a clip heard on an ACR page is not recognisable on a MUSHRA page);
:meth:`MosService.clip_wav` re-encodes the audio to a plain WAV at the common loudness (:mod:`demo.clipaudio`).
All SQL lives in :class:`demo.store.Store`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping

from basekit.errors import UserError
from demo.access import BAD_LINK, crowd_ids, signature_ok, study_secret
from demo.assign import latin_window, page_layout, page_order, rater_order
from demo.clipaudio import file_sig, measure, wav_bytes
from demo.fmt import short_value
from demo.listening import EVENTS, apply_event
from demo.store import Store
from demo.study import CMOS_LABELS, RATER_ID_RE, Study, find_clip, validate_rater_id

CLIP_ROUTE = "/mos/clip/"
BAD_TOKEN = "session token is missing or not valid for this study; open your study link again"


@dataclass(frozen=True)
class Clip:
    clip_id: str
    kind: str  # main | gold | attention | training | reference | hidden_reference | anchor
    system: str | None
    prompt_id: str | None
    text: str
    path: Path
    expect: dict | None = None
    test: str | None = None  # acr | cmos | ab | mushra
    process: str | None = None  # "lowpass:HZ" for a MUSHRA anchor made from the reference


@dataclass(frozen=True)
class Page:
    """A comparison page: ``clips`` in canonical order (CMOS: the pair's systems as listed in the study)."""

    page_id: str
    test: str  # cmos | ab | mushra
    prompt_id: str
    text: str
    clips: tuple[str, ...]
    reference_id: str | None = None


class MosService:
    """A running study: the checked :class:`Study` plus its SQLite :class:`Store`.

    Args:
        study: from :func:`demo.study.load_study`.
        db_path: the SQLite file; created when missing, reused (resumed) otherwise.
        clock: seconds since the epoch; the listening rule times events with it (tests pass a fake one).
    """

    def __init__(self, study: Study, db_path: str | Path, clock: Callable[[], float] = time.time):
        self.study = study
        self.clock = clock
        self.store = Store(db_path)
        # The secret lives in the database so opaque ids and tokens stay the same across restarts.
        self.secret = self.store.set_meta_default("secret", secrets.token_hex(32)).encode()
        self.store.set_meta("study", study.to_json())
        self.link_secret = study_secret(study.secret_path) if study.access == "signed" else None
        self.scale_names = [s.name for s in study.scales]
        self.clips: dict[str, Clip] = {}
        self.pages: dict[str, Page] = {}
        self.levels: dict[str, dict] = {}
        self.main_ids: dict[tuple[int, int], str] = {}
        self.check_ids: list[str] = []
        self.training_ids: list[str] = []
        self._sync()

    # ---- identities -----------------------------------------------------------------------------------
    def _mac(self, *parts: str) -> str:
        return hmac.new(self.secret, "\x00".join(parts).encode(), hashlib.sha256).hexdigest()

    def derived_secret(self, label: str) -> str:
        """A secret for ``label`` derived from the database secret (stable across restarts, 64 hex digits)."""
        return self._mac("derived", label)

    def opaque_id(self, *parts: str) -> str:
        return "c" + self._mac("clip", *parts)[:20]

    def _page_id(self, *parts: str) -> str:
        return "g" + self._mac("page", *parts)[:20]

    def _token(self, rater_id: str, nonce: str | None) -> str:
        # Raters of the first schema have no nonce; their tokens stay valid.
        mac = self._mac("token", rater_id) if nonce is None else self._mac("token", rater_id, nonce)
        return f"{rater_id}.{mac[:32]}"

    def token(self, rater_id: str) -> str:
        """The token of an existing rater (for tools and tests; raters get theirs from :meth:`start`)."""
        row = self.store.rater(rater_id)
        if row is None:
            raise UserError(BAD_TOKEN)
        return self._token(rater_id, row["token_nonce"])

    def rater_from_token(self, token: Any) -> str:
        """The rater id a token was issued to; one :class:`UserError` for every kind of bad token."""
        if not isinstance(token, str) or "." not in token or len(token) > 200:
            raise UserError(BAD_TOKEN)
        rater_id = token.rsplit(".", 1)[0]
        row = self.store.rater(rater_id) if RATER_ID_RE.match(rater_id) else None
        expected = self._token(rater_id, row["token_nonce"] if row else "-")
        if not hmac.compare_digest(token.encode(), expected.encode()) or row is None:
            raise UserError(BAD_TOKEN)
        return rater_id

    # ---- clips and pages ------------------------------------------------------------------------------
    def _acr_clips(self) -> list[Clip]:
        s = self.study
        rows: list[Clip] = []
        for si, system in enumerate(s.systems):
            for pi, prompt in enumerate(s.prompts):
                path = s.clip_path(system, prompt)
                if path is None:
                    raise UserError(f"clip for system {system.name!r}, prompt {prompt.id!r} is missing in "
                                    f"{system.dir}; run `mos validate {s.path}`")
                if "acr" in s.tests:
                    cid = self.opaque_id("main", system.name, prompt.id)
                    self.main_ids[(si, pi)] = cid
                    rows.append(Clip(cid, "main", system.name, prompt.id, prompt.text, path, test="acr"))
        for kind, items in (("gold", s.gold), ("attention", s.attention_checks)):
            for c in items:
                cid = self.opaque_id(kind, c.id)
                self.check_ids.append(cid)
                rows.append(Clip(cid, kind, None, c.id, c.text, c.file, {k: list(v) for k, v in c.expect.items()}))
        for i, t in enumerate(s.training):
            rows.append(Clip(self.opaque_id("training", str(i), str(t.file)), "training", None, None, t.text, t.file))
        self.training_ids = [c.clip_id for c in rows if c.kind == "training"]
        return rows

    def _cmos_pages(self) -> tuple[list[Clip], list[Page]]:
        s, cm = self.study, self.study.cmos
        clips, pages = [], []
        systems = {x.name: x for x in s.systems}
        for a, b in cm.pairs:
            for p in s.prompts:
                ids = []
                for name in (a, b):
                    cid = self.opaque_id(cm.type, a, b, p.id, name)
                    clips.append(Clip(cid, "main", name, p.id, p.text, s.clip_path(systems[name], p), test=cm.type))
                    ids.append(cid)
                pages.append(Page(self._page_id(cm.type, a, b, p.id), cm.type, p.id, p.text, tuple(ids)))
        return clips, pages

    def _mushra_pages(self) -> tuple[list[Clip], list[Page]]:
        s, mu = self.study, self.study.mushra
        clips, pages = [], []
        systems = {x.name: x for x in s.systems}
        for p in s.prompts:
            ref = mu.reference_path(p.id)
            open_ref = Clip(self.opaque_id("mushra-reference", p.id), "reference", None, p.id, p.text, ref,
                            test="mushra")
            rated = [Clip(self.opaque_id("mushra", name, p.id), "main", name, p.id, p.text,
                          s.clip_path(systems[name], p), test="mushra") for name in mu.systems]
            rated.append(Clip(self.opaque_id("mushra-hidden-reference", p.id), "hidden_reference", "reference",
                              p.id, p.text, ref, test="mushra"))
            for an in mu.anchors:
                path = ref if an.lowpass_hz else find_clip(an.dir, p.id)
                rated.append(Clip(self.opaque_id("mushra-anchor", an.name, p.id), "anchor", an.name, p.id, p.text,
                                  path, test="mushra", process=f"lowpass:{an.lowpass_hz}" if an.lowpass_hz else None))
            clips += [open_ref, *rated]
            pages.append(Page(self._page_id("mushra", p.id), "mushra", p.id, p.text,
                              tuple(c.clip_id for c in rated), open_ref.clip_id))
        return clips, pages

    def _measure_all(self, clips: list[Clip]) -> None:
        """Duration, loudness and serving gain of every clip, reusing stored values for unchanged files."""
        ld = self.study.loudness
        policy = json.dumps(None if ld is None else [ld.target_lufs, ld.ceiling_dbfs, ld.max_gain_db])
        same_policy = self.store.get_meta("loudness") == policy
        stored = self.store.clip_measurements()
        by_file: dict[tuple[str, str | None], dict] = {}
        for c in clips:
            key = (str(c.path), c.process)
            old = stored.get(c.clip_id)
            if key not in by_file and same_policy and old and (old["path"], old["process"]) == key \
                    and old["file_sig"] == file_sig(c.path) and old["duration_s"] is not None:
                by_file[key] = {k: old[k] for k in ("file_sig", "duration_s", "loudness_lufs", "gain_db",
                                                      "served_lufs")}
            if key not in by_file:
                by_file[key] = measure(c.path, c.process, None if ld is None else ld.target_lufs,
                                       *(() if ld is None else (ld.ceiling_dbfs, ld.max_gain_db)))
            self.levels[c.clip_id] = by_file[key]
        self.store.set_meta("loudness", policy)

    def _sync(self) -> None:
        clips = self._acr_clips()
        pages: list[Page] = []
        if self.study.cmos is not None:
            more, pg = self._cmos_pages()
            clips, pages = clips + more, pages + pg
        if self.study.mushra is not None:
            more, pg = self._mushra_pages()
            clips, pages = clips + more, pages + pg
        self._measure_all(clips)
        self.store.upsert_clips([
            {"clip_id": c.clip_id, "kind": c.kind, "system": c.system, "prompt_id": c.prompt_id, "text": c.text,
             "path": str(c.path), "expect": json.dumps(c.expect) if c.expect is not None else None, "test": c.test,
             "process": c.process, **self.levels[c.clip_id]} for c in clips])
        self.store.upsert_pages([{"page_id": p.page_id, "test": p.test, "prompt_id": p.prompt_id,
                                  "reference_id": p.reference_id, "clips": list(p.clips)} for p in pages])
        self.clips = {c.clip_id: c for c in clips}
        self.pages = {p.page_id: p for p in pages}

    # ---- raters ---------------------------------------------------------------------------------------
    def rater_exists(self, rater_id: str) -> bool:
        return self.store.rater(rater_id) is not None

    def _check_password(self, password: str | None) -> None:
        pw = self.study.rater_password
        if pw is not None and not hmac.compare_digest(str(password or "").encode(), pw.encode()):
            raise UserError("wrong or missing rater password; use the password given in the study invitation")

    def start(self, rater_id: Any, password: str | None = None, consent: bool = False, *, sig: str | None = None,
              platform: dict | None = None) -> dict:
        """Start (new rater, needs ``consent``) or resume (known rater) a session. Returns :meth:`state`.

        ``access: signed`` needs ``sig`` (the link's signature) for both; ``access: crowd`` only ever starts:
        a known id is refused, so its token never leaves the server a second time.
        """
        s = self.study
        if s.access == "signed" and not signature_ok(self.link_secret, rater_id, sig):
            raise UserError(BAD_LINK)  # before anything else: the answer is the same for every id
        rater_id = validate_rater_id(rater_id)
        self._check_password(password)
        if s.allowed_raters is not None and rater_id not in s.allowed_raters:
            raise UserError(f"unknown rater {rater_id!r}: this study only admits the rater ids on its list; "
                            "check the link you were given")
        row = self.store.rater(rater_id)
        if row is None:
            if not consent:
                raise UserError(f"rater {rater_id!r} has not agreed to take part; tick 'I agree' to start")
            if self.store.create_rater(rater_id, self.clock(), partial(self._plan, rater_id),
                                       training_done=not self.training_ids, nonce=secrets.token_hex(16),
                                       access=s.access, platform=platform):
                return self.state(self.token(rater_id))
            row = self.store.rater(rater_id)  # registered by a concurrent call a moment ago
        if s.access == "crowd":
            self._crowd_taken(rater_id)
        return self.state(self._token(rater_id, row["token_nonce"]))

    @staticmethod
    def _crowd_taken(rater_id: str) -> None:
        raise UserError(f"participant {rater_id} has already started this study in another browser; go on there "
                        "(this page cannot take over that session), or contact the researcher")

    def enter(self, link: Mapping[str, Any], consent: bool = False, password: str | None = None,
              saved_token: str | None = None) -> dict:
        """Start or resume from the study link's query parameters (``rater``, ``sig`` / the platform's ids).

        In ``crowd`` studies ``saved_token`` (kept by the rater's browser) resumes that browser's session.
        """
        if self.study.access == "crowd":
            rater_id, platform = crowd_ids(link)
            resumed = self._resume_saved(rater_id, saved_token)
            if resumed is not None:
                return resumed
            return self.start(rater_id, password, consent, platform=platform)
        return self.start(link.get("rater"), password, consent, sig=link.get("sig"))

    def resume(self, link: Mapping[str, Any], saved_token: str | None = None) -> dict | None:
        """The state to show when the study page opens: the session the link (and browser) resumes without
        asking anything, or None when the rater still has to agree (or type the password). :class:`UserError`
        for a link that cannot start at all."""
        s = self.study
        if s.access == "crowd":
            rater_id, _ = crowd_ids(link)
            resumed = self._resume_saved(rater_id, saved_token)
            if resumed is None and self.rater_exists(rater_id):
                self._crowd_taken(rater_id)
            return resumed
        rater = link.get("rater")
        if s.access == "signed" and not signature_ok(self.link_secret, rater, link.get("sig")):
            raise UserError(BAD_LINK)
        if not rater:
            return None
        rater = validate_rater_id(rater)
        if s.rater_password is None and self.rater_exists(rater):
            return self.start(rater, sig=link.get("sig"))
        return None

    def _resume_saved(self, rater_id: str, saved_token: Any) -> dict | None:
        if not saved_token:
            return None
        try:
            if self.rater_from_token(saved_token) == rater_id:
                return self.state(saved_token)
        except UserError:
            pass  # a token of another study or an old database: start afresh
        return None

    def _plan(self, rater_id: str, idx: int) -> tuple[list[str], list[tuple[str, list[str]]]]:
        """The rater's ACR items and comparison pages (with their layouts), from the registration index."""
        s = self.study
        items: list[str] = []
        pages: list[tuple[str, list[str]]] = []
        if "acr" in s.tests:
            cells = latin_window(len(s.systems), len(s.prompts), s.clips_per_rater, idx, s.seed)
            items = rater_order([self.main_ids[c] for c in cells], self.check_ids, rater_id, s.seed)
        for test in s.tests:
            if test == "cmos":
                by_cell = [p for p in self.pages.values() if p.test == s.cmos.type]
                n_prompts = len(s.prompts)
                cells = latin_window(len(s.cmos.pairs), n_prompts, s.cmos.pages_per_rater, idx, s.seed)
                chosen = [by_cell[pair * n_prompts + prompt] for pair, prompt in cells]
            elif test == "mushra":
                by_prompt = [p for p in self.pages.values() if p.test == "mushra"]
                chosen = [by_prompt[prompt] for _, prompt in
                          latin_window(1, len(s.prompts), s.mushra.pages_per_rater, idx, s.seed)]
            else:
                continue
            pages += [(p.page_id, page_layout(list(p.clips), rater_id, p.page_id, s.seed))
                      for p in page_order(chosen, rater_id, s.seed, test)]
        return items, pages

    def finish_training(self, token: str) -> dict:
        rater_id = self.rater_from_token(token)
        self.store.finish_training(rater_id, self.clock())
        return self.state(token)

    # ---- what a page shows ----------------------------------------------------------------------------
    def _public(self, clip_id: str) -> dict:
        """What a page or API client may know about a clip: the opaque id, its URL and the text. Nothing else."""
        c = self.clips[clip_id]
        return {"type": "acr", "item_id": clip_id, "audio_url": CLIP_ROUTE + clip_id, "text": c.text}

    def _public_page(self, page_id: str, layout: list[str]) -> dict:
        """A comparison page as the rater sees it: sounds labelled by position only (A/B, 1..N)."""
        p = self.pages[page_id]
        sounds = [{"item_id": cid, "audio_url": CLIP_ROUTE + cid} for cid in layout]
        out = {"type": p.test, "item_id": page_id, "text": p.text}
        if p.test == "mushra":
            out.update(question=self.study.mushra.question,
                       reference={"item_id": p.reference_id, "audio_url": CLIP_ROUTE + p.reference_id},
                       clips=[dict(x, label=str(i + 1)) for i, x in enumerate(sounds)])
        else:
            choices = ([[f"{v:+d}: {CMOS_LABELS[v]}" if v else f"0: {CMOS_LABELS[0]}", v] for v in range(3, -4, -1)]
                       if p.test == "cmos" else [["A", "A"], ["B", "B"]])
            out.update(question=self.study.cmos.question, choices=choices,
                       clips=[dict(x, label=lab) for lab, x in zip("AB", sounds)])
        return out

    def _locate(self, rater_id: str) -> tuple[str, list[str]] | None:
        """The rater's current item and the clips on it: ``(clip_id, [clip_id])`` for an ACR clip,
        ``(page_id, layout + [reference])`` for a page; None when everything is answered. No side effects."""
        item_id = self.store.next_item(rater_id, len(self.scale_names))
        if item_id is not None:
            return item_id, [item_id]
        page = self.store.next_page(rater_id)
        if page is None:
            return None
        page_id, layout = page
        ref = self.pages[page_id].reference_id
        return page_id, layout + ([ref] if ref else [])

    def _public_item(self, rater_id: str, item_id: str, sounds: list[str]) -> dict:
        if item_id in self.pages:
            ref = self.pages[item_id].reference_id
            return self._public_page(item_id, [c for c in sounds if c != ref])
        return self._public(item_id)

    def current(self, token: str) -> dict | None:
        """The current item as :meth:`state` shows it, with ``listened``; no page view is recorded."""
        rater_id = self.rater_from_token(token)
        found = self._locate(rater_id)
        if found is None:
            return None
        item_id, sounds = found
        return dict(self._public_item(rater_id, item_id, sounds),
                    listened=sorted(self.store.listened(rater_id, sounds)))

    def state(self, token: str) -> dict:
        """Where a rater stands: ``phase`` training | rating | done, the current item (an ACR clip or a page,
        ``item["type"]`` acr | cmos | ab | mushra), whether all of it was ``played`` and which of its clips were
        heard (``listened``). Showing an item records a page view for the time-on-page statistics."""
        rater_id = self.rater_from_token(token)
        rater = self.store.rater(rater_id)
        base = {"token": token, "rater_id": rater_id,
                "scales": [{"name": sc.name, "question": sc.question,
                            "labels": {str(k): v for k, v in sorted(sc.labels.items(), reverse=True)}}
                           for sc in self.study.scales]}
        prog = self.store.progress(rater_id, len(self.scale_names))
        if rater["training_done_at"] is None:
            examples = [dict(self._public(cid), note=t.note) for cid, t in zip(self.training_ids, self.study.training)]
            return dict(base, phase="training", training=examples, position=0, total=prog["total"])
        now = self.clock()
        found = self._locate(rater_id)
        if found is None:
            self.store.mark_completed(rater_id, now)
            done = dict(base, phase="done", position=prog["total"], total=prog["total"], done=prog["done"])
            if self.study.completion is not None:
                done["completion"] = {"code": self.study.completion.code, "url": self.study.completion.url}
            return done
        item_id, sounds = found
        if item_id in self.pages:
            self.store.record_page_view(rater_id, item_id, now)
        else:
            self.store.record_item_view(rater_id, item_id, now)
        heard = self.store.listened(rater_id, sounds)
        return dict(base, phase="rating", item=self._public_item(rater_id, item_id, sounds),
                    played=heard >= set(sounds), listened=sorted(heard), position=prog["done"] + 1,
                    total=prog["total"], done=prog["done"])

    # ---- events ---------------------------------------------------------------------------------------
    def _own_clip(self, rater_id: str, item_id: Any) -> str:
        if not isinstance(item_id, str) or item_id not in self.clips or not self.store.clip_belongs_to(rater_id,
                                                                                                      item_id):
            raise UserError(f"clip {short_value(item_id)} is not one of rater {rater_id!r}'s clips; "
                            "reload the page to get the current clip")
        return item_id

    def played(self, token: str, item_id: str, event: str = "ended") -> dict:
        """Record a player event (``play``, ``ended``, ``seek``) of one of the rater's clips.

        An ``ended`` counts only as the end of a listen the server timed (:func:`demo.listening.apply_event`);
        otherwise it is refused and nothing is written. Returns ``{"item_id", "event", "played"}``, ``played``
        telling whether the clip has been heard completely.
        """
        if event not in EVENTS:
            raise UserError(f"player event {short_value(event)} is unknown; send one of {', '.join(EVENTS)}")
        rater_id = self.rater_from_token(token)
        self._own_clip(rater_id, item_id)
        now = self.clock()
        rule = partial(apply_event, event=event, now=now, duration_s=self.levels[item_id]["duration_s"])
        rec = self.store.listen_event(rater_id, item_id, event, now, rule)
        return {"item_id": item_id, "event": event, "played": rec["completed"] > 0}

    # ---- answers --------------------------------------------------------------------------------------
    @staticmethod
    def _int_in(v: Any, lo: int, hi: int, what: str) -> int:
        if isinstance(v, float) and v.is_integer() and lo <= v <= hi:
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise UserError(f"{what} {short_value(v)} is outside {lo}-{hi}; send an integer from {lo} to {hi}")
        return v

    def _check_ratings(self, ratings: Any) -> dict[str, int]:
        if not isinstance(ratings, dict):
            raise UserError("ratings must map each scale to a value 1-5, e.g. {'mos_r': 4, 'mos_t': 5}")
        missing = [s for s in self.scale_names if ratings.get(s) is None]
        if missing:
            raise UserError(f"no rating for scale(s) {', '.join(missing)}; choose a value 1-5 on every scale")
        extra = sorted(set(ratings) - set(self.scale_names), key=str)
        if extra:
            raise UserError(f"unknown scale(s) {[short_value(x) for x in extra[:5]]}; this study's scales are "
                            f"{self.scale_names}")
        return {s: self._int_in(ratings[s], 1, 5, f"rating on scale {s}:") for s in self.scale_names}

    def _check_page_answer(self, page: Page, layout: list[str], ratings: Any) -> int | dict[str, int]:
        if page.test == "cmos":
            if not isinstance(ratings, dict) or set(ratings) != {"cmos"}:
                raise UserError("a CMOS page takes {'cmos': v}, v an integer from -3 (B much worse) to +3")
            return self._int_in(ratings["cmos"], -3, 3, "CMOS answer")
        if page.test == "ab":
            if not isinstance(ratings, dict) or set(ratings) != {"prefer"} or ratings["prefer"] not in ("A", "B"):
                raise UserError("an A/B page takes {'prefer': 'A'} or {'prefer': 'B'}")
            return -1 if ratings["prefer"] == "A" else 1
        if not isinstance(ratings, dict) or set(ratings) != set(layout):
            raise UserError("a MUSHRA page takes a score 0-100 for each of its sounds, keyed by the sounds' item ids")
        return {c: self._int_in(ratings[c], 0, 100, "MUSHRA score") for c in layout}

    def _raise_for(self, status: str, rater_id: str, item_id: str) -> None:
        if status == "not_assigned":
            raise UserError(f"clip {short_value(item_id)} is not one of rater {rater_id!r}'s clips; "
                            "reload the page to get the current clip")
        if status == "not_listened":
            raise UserError(f"clip {item_id!r} has not been played to the end yet; listen to the whole clip "
                            "before rating it" if item_id in self.clips else
                            "not every sound on this page has been played to the end yet; listen to each one "
                            "(and to the reference) before rating")

    def rate(self, token: str, item_id: str, ratings: Any) -> dict:
        """Answer the current item: an ACR clip (``{scale: 1-5}``), a CMOS page (``{"cmos": -3..3}``), an A/B
        page (``{"prefer": "A"|"B"}``) or a MUSHRA page (``{clip_id: 0-100}``). Returns ``{"status": "saved" |
        "already_rated", "state"}``.

        Refused (:class:`UserError`, nothing written) for a bad token, an item that is not the rater's, a clip
        not heard to the end, or a missing / non-integer / out-of-range value.
        """
        rater_id = self.rater_from_token(token)
        now = self.clock()
        if isinstance(item_id, str) and item_id in self.pages:
            page = self.pages[item_id]
            layout = self.store.page_layout(rater_id, item_id)
            if layout is None:
                self._raise_for("not_assigned", rater_id, item_id)
            answer = self._check_page_answer(page, layout, ratings)
            if page.test == "mushra":
                status = self.store.save_mushra(rater_id, item_id, answer, now, page.reference_id)
            else:
                status = self.store.save_comparison(rater_id, item_id, answer, now)
        else:
            values = self._check_ratings(ratings)
            status = self.store.save_ratings(rater_id, item_id if isinstance(item_id, str) else "", values, now)
        self._raise_for(status, rater_id, item_id)
        return {"status": status, "state": self.state(token)}

    # ---- admin and audio --------------------------------------------------------------------------------
    def admin_status(self, password: str) -> dict:
        """Progress counts (no system names) for the study owner; needs the study's admin password."""
        if self.study.admin_password is None:
            raise UserError("this study has no admin_password; set one in the study file to use the admin view")
        if not hmac.compare_digest(str(password or "").encode(), self.study.admin_password.encode()):
            raise UserError("wrong admin password")
        c = self.store.admin_counts()
        need = self.study.min_ratings_per_clip
        return {"raters": c["raters"], "completed": c["completed"], "ratings": c["ratings"],
                "pages_answered": c["pages_answered"], "min_ratings_per_clip": need,
                "clips_below_min": sum(1 for n in c["per_clip"] if n < need), "clips": len(c["per_clip"])}

    def clip_wav(self, clip_id: str) -> bytes:
        """The clip as served (its process, then its loudness gain) as 16-bit PCM WAV bytes; :class:`UserError`
        for an unknown id."""
        if not isinstance(clip_id, str) or clip_id not in self.clips:
            raise UserError("unknown clip")
        c, lv = self.clips[clip_id], self.levels[clip_id]
        return wav_bytes(str(c.path), c.process, lv["gain_db"], lv["file_sig"])
