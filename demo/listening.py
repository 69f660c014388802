"""The listening rule the server enforces: a clip counts as heard only after a ``play`` and an ``ended`` whose wall
time covers most of it.

The page reports three player events per clip (``play``, ``ended``, ``seek``); the server timestamps each on
arrival and keeps, per rater and clip, a record ``{plays, completed, listen_s, seeks, open_since}``:

- ``play`` opens a listen (``open_since`` = now) unless one is open already: a pause and a resume, or a replay
  from the start, keep the first start, so pausing never costs the rater anything;
- ``ended`` closes the open listen and counts it as complete when ``now - open_since`` is at least
  ``MIN_FRACTION`` of the clip's duration; ``ended`` without an open listen, or too soon, is refused (and nothing
  is written), whatever the page claims. A forward seek to the end (``a.currentTime = a.duration - 0.01``) thus
  cannot unlock the scales: the page refuses the seek itself and reports it, and the server's clock refuses the
  early ``ended`` of a page that does not;
- ``seek`` counts a forward seek that the page refused (exported with the listening record).

A client can still wait out the clip's duration without playing it; what the rule guarantees is that nobody
rates a clip sooner than they could have heard it, through the page or the API. Event delivery can delay a
``play`` more than the ``ended`` that follows it; the 10% margin absorbs that, and a refused ``ended`` leaves
the listen open, so playing the clip again always unlocks it.
"""

from __future__ import annotations

from basekit.errors import UserError

MIN_FRACTION = 0.9
EVENTS = ("play", "ended", "seek")


def apply_event(record: dict, event: str, now: float, duration_s: float, min_fraction: float = MIN_FRACTION) -> dict:
    """The listening record after ``event`` at ``now`` (seconds) for a clip of ``duration_s`` seconds.

    Raises :class:`UserError` (and the caller writes nothing) for an ``ended`` with no ``play`` before it or one
    that comes sooner than ``min_fraction * duration_s`` after the listen's first ``play``.
    """
    rec = dict(record)
    if event == "play":
        rec["plays"] += 1
        if rec["open_since"] is None:
            rec["open_since"] = now
    elif event == "seek":
        rec["seeks"] += 1
    elif event == "ended":
        if rec["open_since"] is None:
            raise UserError("the end of this clip came without its start: press play and listen to the whole clip")
        elapsed = now - rec["open_since"]
        need = min_fraction * duration_s
        if elapsed < need:
            raise UserError(f"the clip ended {elapsed:.1f} s after it started but lasts {duration_s:.1f} s; "
                            "listen to the whole clip (pausing is fine, skipping ahead is not), then rate it")
        rec["completed"] += 1
        rec["listen_s"] += elapsed
        rec["open_since"] = None
    else:
        raise UserError(f"player event {str(event)[:20]!r} is unknown; send one of {', '.join(EVENTS)}")
    return rec
