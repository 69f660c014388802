"""The study logic behind both the browser UI and the API: raters, orders, play events, ratings.

Everything a rater or an API client can do goes through :class:`MosService`, so the rules hold for both:

- a rater id is validated (letters, digits, ``-_.``; <= 64) and, when the study says so, must be on its list and
  give the rater password;
- every later call carries a token (rater id + HMAC with the study secret), so nobody rates as someone else;
- a rating is refused unless the clip is assigned to that rater, its end of playback was recorded, and every
  scale has an integer 1–5; a refusal raises :class:`UserError` and writes nothing;
- a rating is written with ``INSERT ... ON CONFLICT DO NOTHING``: a repeat is answered ``already_rated``.

Blinding: clips are known to the outside only by opaque ids (HMAC of the study secret and the clip's identity);
:meth:`MosService.clip_wav` re-encodes the audio to a plain WAV, so no file name or metadata tag leaves either.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import io
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demo.assign import latin_window, rater_order
from demo.fmt import short_value
from basekit.errors import UserError
from demo.store import Store
from demo.study import Study, validate_rater_id

CLIP_ROUTE = "/mos/clip/"


@dataclass(frozen=True)
class Clip:
    clip_id: str
    kind: str  # main | gold | attention | training
    system: str | None
    prompt_id: str | None
    text: str
    path: Path
    expect: dict | None = None


class MosService:
    """A running study: the checked :class:`Study` plus its SQLite :class:`Store`.

    Args:
        study: from :func:`demo.study.load_study`.
        db_path: the SQLite file; created when missing, reused (resumed) otherwise.
    """

    def __init__(self, study: Study, db_path: str | Path):
        self.study = study
        self.store = Store(db_path)
        # The secret lives in the database so opaque ids and tokens stay the same across restarts.
        self.secret = self.store.set_meta_default("secret", secrets.token_hex(32)).encode()
        self.store.set_meta("study", study.to_json())
        self.scale_names = [s.name for s in study.scales]
        self.clips: dict[str, Clip] = {}
        self.main_ids: dict[tuple[int, int], str] = {}
        self.check_ids: list[str] = []
        self._sync_clips()

    # ---- identities -----------------------------------------------------------------------------------
    def _mac(self, *parts: str) -> str:
        return hmac.new(self.secret, "\x00".join(parts).encode(), hashlib.sha256).hexdigest()

    def opaque_id(self, *parts: str) -> str:
        return "c" + self._mac("clip", *parts)[:20]

    def token(self, rater_id: str) -> str:
        return f"{rater_id}.{self._mac('token', rater_id)[:32]}"

    def rater_from_token(self, token: Any) -> str:
        """The rater id a token was issued to; :class:`UserError` for a forged token or an unknown rater."""
        if not isinstance(token, str) or "." not in token:
            raise UserError("session token is missing or malformed; start again with your rater id")
        rater_id, mac = token.rsplit(".", 1)
        validate_rater_id(rater_id)
        if not hmac.compare_digest(mac, self._mac("token", rater_id)[:32]):
            raise UserError("session token is not valid for this study; start again with your rater id")
        if not self.store.query("SELECT 1 FROM raters WHERE rater_id = ?", (rater_id,)):
            raise UserError(f"unknown rater {rater_id!r}: start a session first (open the study page with ?rater=ID)")
        return rater_id

    def _sync_clips(self) -> None:
        s = self.study
        rows: list[Clip] = []
        for si, system in enumerate(s.systems):
            for pi, prompt in enumerate(s.prompts):
                path = s.clip_path(system, prompt)
                if path is None:
                    raise UserError(f"clip for system {system.name!r}, prompt {prompt.id!r} is missing in "
                                    f"{system.dir}; run `mos validate {s.path}`")
                cid = self.opaque_id("main", system.name, prompt.id)
                self.main_ids[(si, pi)] = cid
                rows.append(Clip(cid, "main", system.name, prompt.id, prompt.text, path))
        for kind, items in (("gold", s.gold), ("attention", s.attention_checks)):
            for c in items:
                cid = self.opaque_id(kind, c.id)
                self.check_ids.append(cid)
                rows.append(Clip(cid, kind, None, c.id, c.text, c.file, {k: list(v) for k, v in c.expect.items()}))
        for i, t in enumerate(s.training):
            rows.append(Clip(self.opaque_id("training", str(i), str(t.file)), "training", None, None, t.text, t.file))
        with self.store.transaction() as con:
            for c in rows:
                expect = json.dumps(c.expect) if c.expect is not None else None
                con.execute(
                    "INSERT INTO clips (clip_id, kind, system, prompt_id, text, path, expect) VALUES (?,?,?,?,?,?,?)"
                    " ON CONFLICT(clip_id) DO UPDATE SET path = excluded.path, text = excluded.text,"
                    " expect = excluded.expect",
                    (c.clip_id, c.kind, c.system, c.prompt_id, c.text, str(c.path), expect),
                )
        self.clips = {c.clip_id: c for c in rows}
        self.training_ids = [c.clip_id for c in rows if c.kind == "training"]

    # ---- raters ---------------------------------------------------------------------------------------
    def rater_exists(self, rater_id: str) -> bool:
        return bool(self.store.query("SELECT 1 FROM raters WHERE rater_id = ?", (rater_id,)))

    def start(self, rater_id: Any, password: str | None = None, consent: bool = False) -> dict:
        """Start (new rater, needs ``consent``) or resume (known rater) a session. Returns :meth:`state`."""
        rater_id = validate_rater_id(rater_id)
        s = self.study
        if s.rater_password is not None and not hmac.compare_digest(str(password or ""), s.rater_password):
            raise UserError("wrong or missing rater password; use the password given in the study invitation")
        if s.allowed_raters is not None and rater_id not in s.allowed_raters:
            raise UserError(f"unknown rater {rater_id!r}: this study only admits the rater ids on its list; "
                            "check the link you were given")
        now = self.store.now()
        with self.store.transaction() as con:
            row = con.execute("SELECT consent_at FROM raters WHERE rater_id = ?", (rater_id,)).fetchone()
            if row is None:
                if not consent:
                    raise UserError(f"rater {rater_id!r} has not agreed to take part; tick 'I agree' to start")
                idx = con.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM raters").fetchone()[0]
                order = self._order_for(rater_id, idx)
                con.execute("INSERT INTO raters (rater_id, idx, created_at, consent_at, training_done_at)"
                            " VALUES (?, ?, ?, ?, ?)", (rater_id, idx, now, now, None if self.training_ids else now))
                con.executemany("INSERT INTO assignments (rater_id, position, item_id) VALUES (?, ?, ?)",
                                [(rater_id, i, item) for i, item in enumerate(order)])
        return self.state(self.token(rater_id))

    def _order_for(self, rater_id: str, idx: int) -> list[str]:
        s = self.study
        cells = latin_window(len(s.systems), len(s.prompts), s.clips_per_rater, idx, s.seed)
        return rater_order([self.main_ids[c] for c in cells], self.check_ids, rater_id, s.seed)

    def finish_training(self, token: str) -> dict:
        rater_id = self.rater_from_token(token)
        with self.store.transaction() as con:
            con.execute("UPDATE raters SET training_done_at = ? WHERE rater_id = ? AND training_done_at IS NULL",
                        (self.store.now(), rater_id))
        return self.state(token)

    def _public(self, clip_id: str) -> dict:
        """What a page or API client may know about a clip: the opaque id, its URL and the text. Nothing else."""
        c = self.clips[clip_id]
        return {"item_id": clip_id, "audio_url": CLIP_ROUTE + clip_id, "text": c.text}

    def state(self, token: str) -> dict:
        """Where a rater stands: ``phase`` training | rating | done, the current item and whether it was played.

        Showing an item records a page view (first and last time shown) for the time-on-page statistics.
        """
        rater_id = self.rater_from_token(token)
        rater = self.store.query("SELECT training_done_at FROM raters WHERE rater_id = ?", (rater_id,))[0]
        base = {"token": token, "rater_id": rater_id,
                "scales": [{"name": sc.name, "question": sc.question, "labels": {str(k): v for k, v in
                                                                                  sorted(sc.labels.items(), reverse=True)}}
                           for sc in self.study.scales]}
        total = self.store.query("SELECT COUNT(*) AS n FROM assignments WHERE rater_id = ?", (rater_id,))[0]["n"]
        if rater["training_done_at"] is None:
            examples = [dict(self._public(cid), note=t.note) for cid, t in zip(self.training_ids, self.study.training)]
            return dict(base, phase="training", training=examples, position=0, total=total)
        row = self.store.query(
            "SELECT a.position, a.item_id FROM assignments a WHERE a.rater_id = ? AND "
            "(SELECT COUNT(*) FROM ratings r WHERE r.rater_id = a.rater_id AND r.item_id = a.item_id) < ? "
            "ORDER BY a.position LIMIT 1", (rater_id, len(self.scale_names)))
        done = self.store.query("SELECT COUNT(DISTINCT item_id) AS n FROM ratings WHERE rater_id = ?",
                                (rater_id,))[0]["n"]
        if not row:
            with self.store.transaction() as con:
                con.execute("UPDATE raters SET completed_at = ? WHERE rater_id = ? AND completed_at IS NULL",
                            (self.store.now(), rater_id))
            return dict(base, phase="done", position=total, total=total, done=done)
        item_id = row[0]["item_id"]
        now = self.store.now()
        with self.store.transaction() as con:
            con.execute("INSERT INTO page_times (rater_id, item_id, first_shown_at, last_shown_at) VALUES (?,?,?,?)"
                        " ON CONFLICT(rater_id, item_id) DO UPDATE SET views = views + 1, last_shown_at = ?",
                        (rater_id, item_id, now, now, now))
        return dict(base, phase="rating", position=done + 1, total=total, done=done, item=self._public(item_id),
                    played=self._played(rater_id, item_id))

    def _played(self, rater_id: str, item_id: str, con=None) -> bool:
        q = "SELECT 1 FROM play_events WHERE rater_id = ? AND item_id = ? AND event = 'ended' LIMIT 1"
        return bool((con or self.store.connection()).execute(q, (rater_id, item_id)).fetchone())

    def _check_assigned(self, rater_id: str, item_id: Any, con=None) -> str:
        if not isinstance(item_id, str) or item_id not in self.clips or not (con or self.store.connection()).execute(
                "SELECT 1 FROM assignments WHERE rater_id = ? AND item_id = ?", (rater_id, item_id)).fetchone():
            raise UserError(f"clip {str(item_id)[:40]!r} is not one of rater {rater_id!r}'s clips; "
                            "reload the page to get the current clip")
        return item_id

    # ---- events ---------------------------------------------------------------------------------------
    def played(self, token: str, item_id: str, event: str = "ended") -> dict:
        """Record a ``play`` or ``ended`` event of a clip; ``ended`` unlocks its rating."""
        if event not in ("play", "ended"):
            raise UserError(f"play event {str(event)[:20]!r} is unknown; send 'play' or 'ended'")
        rater_id = self.rater_from_token(token)
        self._check_assigned(rater_id, item_id)
        with self.store.transaction() as con:
            con.execute("INSERT INTO play_events (rater_id, item_id, event, created_at) VALUES (?, ?, ?, ?)",
                        (rater_id, item_id, event, self.store.now()))
        return {"item_id": item_id, "event": event, "played": self._played(rater_id, item_id)}

    def _check_ratings(self, ratings: Any) -> dict[str, int]:
        if not isinstance(ratings, dict):
            raise UserError("ratings must map each scale to a value 1-5, e.g. {'mos_r': 4, 'mos_t': 5}")
        missing = [s for s in self.scale_names if ratings.get(s) is None]
        if missing:
            raise UserError(f"no rating for scale(s) {', '.join(missing)}; choose a value 1-5 on every scale")
        extra = sorted(set(ratings) - set(self.scale_names))
        if extra:
            raise UserError(f"unknown scale(s) {extra}; this study's scales are {self.scale_names}")
        out = {}
        for s in self.scale_names:
            v = ratings[s]
            if isinstance(v, float) and v.is_integer() and 1 <= v <= 5:
                v = int(v)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 5:
                raise UserError(f"rating {short_value(v)} on scale {s} is outside 1-5; send an integer from 1 to 5")
            out[s] = v
        return out

    def rate(self, token: str, item_id: str, ratings: dict[str, Any]) -> dict:
        """Store one rating per scale for ``item_id``. Returns ``{"status": "saved" | "already_rated", "state"}``.

        Refused (:class:`UserError`, nothing written) for a bad token, a clip not assigned to the rater, a clip
        whose end of playback was not recorded, or a missing / non-integer / out-of-range value.
        """
        rater_id = self.rater_from_token(token)
        values = self._check_ratings(ratings)
        now = self.store.now()
        with self.store.transaction() as con:
            self._check_assigned(rater_id, item_id, con)
            if not self._played(rater_id, item_id, con):
                raise UserError(f"clip {item_id!r} has not been played to the end yet; listen to the whole clip "
                                "before rating it")
            inserted = 0
            for scale, v in values.items():
                cur = con.execute("INSERT INTO ratings (rater_id, item_id, scale, value, created_at) VALUES (?,?,?,?,?)"
                                  " ON CONFLICT(rater_id, item_id, scale) DO NOTHING",
                                  (rater_id, item_id, scale, v, now))
                inserted += cur.rowcount
            if inserted:
                con.execute("UPDATE page_times SET submitted_at = ? WHERE rater_id = ? AND item_id = ?"
                            " AND submitted_at IS NULL", (now, rater_id, item_id))
        return {"status": "saved" if inserted else "already_rated", "state": self.state(token)}

    # ---- admin and audio --------------------------------------------------------------------------------
    def admin_status(self, password: str) -> dict:
        """Progress counts (no system names) for the study owner; needs the study's admin password."""
        if self.study.admin_password is None:
            raise UserError("this study has no admin_password; set one in the study file to use the admin view")
        if not hmac.compare_digest(str(password or ""), self.study.admin_password):
            raise UserError("wrong admin password")
        q = self.store.query
        per_clip = q("SELECT c.clip_id, (SELECT COUNT(DISTINCT r.rater_id) FROM ratings r WHERE r.item_id = c.clip_id)"
                     " AS n FROM clips c WHERE c.kind = 'main'")
        return {
            "raters": q("SELECT COUNT(*) AS n FROM raters")[0]["n"],
            "completed": q("SELECT COUNT(*) AS n FROM raters WHERE completed_at IS NOT NULL")[0]["n"],
            "ratings": q("SELECT COUNT(*) AS n FROM ratings")[0]["n"],
            "min_ratings_per_clip": self.study.min_ratings_per_clip,
            "clips_below_min": sum(1 for r in per_clip if r["n"] < self.study.min_ratings_per_clip),
            "clips": len(per_clip),
        }

    def clip_wav(self, clip_id: str) -> bytes:
        """The clip as 16-bit PCM WAV bytes; :class:`UserError` for an unknown id."""
        if not isinstance(clip_id, str) or clip_id not in self.clips:
            raise UserError("unknown clip")
        return _encode_wav(str(self.clips[clip_id].path))


@functools.lru_cache(maxsize=512)
def _encode_wav(path: str) -> bytes:
    # Re-encode instead of sending the file: the bytes then carry no original name, tag or container hint.
    import soundfile as sf

    data, sr = sf.read(path, dtype="float32", always_2d=True)
    buf = io.BytesIO()
    sf.write(buf, data, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()
