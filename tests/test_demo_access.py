"""Access modes: signed links (`mos links`), crowd-platform links, open studies and their warning, the completion
code; every refusal writes nothing and tells nothing about which rater ids exist."""

import hashlib
import hmac
import os
import sqlite3
import stat
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from basekit.errors import UserError
from demo.access import BAD_LINK, study_secret
from demo.cli import main
from demo.service import MosService
from demo.study import check_study, load_study
from demo.synthetic import write_synthetic_study

TABLES = ("raters", "assignments", "page_assignments", "ratings", "play_events", "listens")


def _snapshot(db):
    con = sqlite3.connect(db)
    try:
        return {t: sorted(map(tuple, con.execute(f"SELECT * FROM {t}").fetchall()), key=repr) for t in TABLES}
    finally:
        con.close()


def _study(tmp_path, **extra):
    return write_synthetic_study(tmp_path, n_prompts=3, clips_per_rater=2, n_training=0, extra=extra)


def _links(capsys, *argv):
    assert main(["links", *argv]) == 0
    return capsys.readouterr().out.strip().splitlines()


def test_signed_links_secret_file_and_signature(tmp_path, capsys):
    p = _study(tmp_path, access="signed")
    urls = _links(capsys, str(p), "--raters", "3", "--base-url", "https://mos.example.org/study")
    assert len(urls) == 3
    secret_file = tmp_path / "study.yaml.secret"
    assert stat.S_IMODE(os.stat(secret_file).st_mode) == 0o600
    secret = secret_file.read_text().strip().encode()
    for i, u in enumerate(urls, 1):
        parts = urlsplit(u)
        assert (parts.scheme, parts.netloc, parts.path) == ("https", "mos.example.org", "/study")
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        assert q["rater"] == f"r{i:03d}"
        # the signature is HMAC-SHA256 of the rater id under the secret file's text (computed here independently)
        want = hmac.new(secret, b"rater-link\x00" + q["rater"].encode(), hashlib.sha256).hexdigest()[:32]
        assert q["sig"] == want
    # the secret is created once: the same links again, and from a file of ids
    assert _links(capsys, str(p), "--raters", "3", "--base-url", "https://mos.example.org/study") == urls
    ids = tmp_path / "ids.txt"
    ids.write_text("# panel\nalice\nbob\n")
    two = _links(capsys, str(p), "--raters", str(ids), "--base-url", "http://lab:7860/?lang=en")
    assert [parse_qs(urlsplit(u).query)["rater"][0] for u in two] == ["alice", "bob"]
    assert all(u.startswith("http://lab:7860/?lang=en&rater=") for u in two)


@pytest.mark.parametrize("argv,msg", [
    (["--raters", "2", "--base-url", "mos.example.org"], "is not an http(s) URL"),
    (["--raters", "nofile.txt", "--base-url", "https://x.org/"], "neither a number nor a file"),
    (["--raters", "0", "--base-url", "https://x.org/"], "must be 1-100000"),
])
def test_links_bad_input(tmp_path, capsys, argv, msg):
    p = _study(tmp_path, access="signed")
    assert main(["links", str(p), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and len(err.splitlines()) == 1


def test_links_need_a_signed_study(tmp_path, capsys):
    p = _study(tmp_path, access="open")
    assert main(["links", str(p), "--raters", "2", "--base-url", "https://x.org/"]) == 2
    assert "set `access: signed`" in capsys.readouterr().err


def test_signed_study_refuses_without_a_valid_signature(tmp_path, capsys):
    p = _study(tmp_path, access="signed")
    url = _links(capsys, str(p), "--raters", "2", "--base-url", "https://x.org/")[0]
    link = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    other = {k: v[0] for k, v in parse_qs(urlsplit(_links(capsys, str(p), "--raters", "2", "--base-url",
                                                          "https://x.org/")[1]).query).items()}
    db = tmp_path / "db.sqlite"
    svc = MosService(load_study(p), db)
    s = svc.enter(link, consent=True)  # r001 starts with its link
    assert s["rater_id"] == "r001" and s["phase"] == "rating"
    before = _snapshot(db)
    attempts = [
        ("r001", None), ("r001", ""), ("r001", "0" * 32), ("r001", other["sig"]),  # known id, bad signatures
        ("r002", None), ("r002", link["sig"]),  # an id that has not started yet
        ("nobody", link["sig"]), ("nobody", None),  # an id that never will
    ]
    messages = set()
    for rater, sig in attempts:
        for call in (lambda: svc.start(rater, consent=True, sig=sig),
                     lambda: svc.enter({"rater": rater, "sig": sig}, consent=True),
                     lambda: svc.resume({"rater": rater, "sig": sig})):
            with pytest.raises(UserError) as ei:
                call()
            messages.add(str(ei.value))
    assert messages == {BAD_LINK}  # the same answer whether the id exists or not
    assert _snapshot(db) == before
    # with the link, the rater resumes (page reload) and gets the same session
    assert svc.resume(link)["token"] == s["token"]
    assert svc.enter(other, consent=True)["rater_id"] == "r002"
    svc.store.close()


def test_secret_beside_study_file_survives_and_is_not_in_the_database(tmp_path):
    p = _study(tmp_path, access="signed")
    st = load_study(p)
    a = study_secret(st.secret_path)
    svc = MosService(st, tmp_path / "db.sqlite")
    assert svc.link_secret == a == study_secret(st.secret_path)
    con = sqlite3.connect(tmp_path / "db.sqlite")
    dump = "\n".join(con.iterdump())
    con.close()
    assert a.decode() not in dump
    st.secret_path.write_text("not a secret\n")
    with pytest.raises(UserError, match="is damaged"):
        study_secret(st.secret_path)
    svc.store.close()


PROLIFIC = {"PROLIFIC_PID": "5f0a1b2c3d4e5f6a7b8c9d0e", "STUDY_ID": "st1", "SESSION_ID": "se1"}


def test_crowd_token_is_issued_once(tmp_path):
    p = _study(tmp_path, access="crowd", completion={"code": "C0DE42", "url": "https://app.example.org/done?cc=C0DE42"})
    db = tmp_path / "db.sqlite"
    now = [1000.0]
    svc = MosService(load_study(p), db, clock=lambda: now[0])
    assert svc.resume(PROLIFIC) is None  # first visit: the page asks for consent
    s = svc.enter(PROLIFIC, consent=True)
    token = s["token"]
    row = svc.store.rater(PROLIFIC["PROLIFIC_PID"])
    assert row["access"] == "crowd"
    assert yaml.safe_load(row["platform"]) == {"platform": "prolific", **PROLIFIC}
    # the same browser (its saved token) resumes
    assert svc.resume(PROLIFIC, saved_token=token)["token"] == token
    assert svc.enter(PROLIFIC, saved_token=token)["token"] == token
    before = _snapshot(db)
    # from elsewhere: every route with the same id is refused, and no answer holds the token
    for call in (lambda: svc.resume(PROLIFIC), lambda: svc.enter(PROLIFIC, consent=True),
                 lambda: svc.enter(dict(PROLIFIC, SESSION_ID="other"), consent=True),
                 lambda: svc.enter(PROLIFIC, consent=True, saved_token="x." + "0" * 32),
                 lambda: svc.start(PROLIFIC["PROLIFIC_PID"], consent=True)):
        with pytest.raises(UserError, match="already started this study in another browser") as ei:
            call()
        assert token not in str(ei.value)
    assert _snapshot(db) == before
    # the end shows the completion code and link
    assert "completion" not in s
    while s["phase"] == "rating":
        item = s["item"]["item_id"]
        svc.played(token, item, "play")
        now[0] += 1
        svc.played(token, item, "ended")
        s = svc.rate(token, item, {"mos_r": 3, "mos_t": 3})["state"]
    assert s["completion"] == {"code": "C0DE42", "url": "https://app.example.org/done?cc=C0DE42"}
    svc.store.close()


def test_crowd_links_mturk_preview_and_missing_ids(tmp_path):
    p = _study(tmp_path, access="crowd")
    db = tmp_path / "db.sqlite"
    svc = MosService(load_study(p), db)
    with pytest.raises(UserError, match="preview of the HIT"):
        svc.enter({"workerId": "A1B2C3", "assignmentId": "ASSIGNMENT_ID_NOT_AVAILABLE", "hitId": "H1"}, consent=True)
    with pytest.raises(UserError, match="open it from the Prolific or MTurk page"):
        svc.enter({"rater": "someone"}, consent=True)
    with pytest.raises(UserError, match="STUDY_ID is malformed"):
        svc.enter(dict(PROLIFIC, STUDY_ID="a b"), consent=True)
    assert _snapshot(db)["raters"] == []
    s = svc.enter({"workerId": "A1B2C3", "assignmentId": "AS9", "hitId": "H1", "turkSubmitTo": "https://x"},
                  consent=True)
    assert s["rater_id"] == "A1B2C3"
    assert yaml.safe_load(svc.store.rater("A1B2C3")["platform"]) == {
        "platform": "mturk", "workerId": "A1B2C3", "assignmentId": "AS9", "hitId": "H1"}
    svc.store.close()


def test_open_study_without_mode_warns_and_keeps_rater_links(tmp_path, capsys):
    p = write_synthetic_study(tmp_path)  # names no access mode
    st = load_study(p)
    assert st.access == "open" and len(st.warnings) == 1 and "access: open" in st.warnings[0]
    assert main(["validate", str(p)]) == 0
    cap = capsys.readouterr()
    assert "mos: warning:" in cap.err and "access open" in cap.out
    svc = MosService(st, tmp_path / "db.sqlite")
    s = svc.enter({"rater": "lab-1"}, consent=True)
    assert svc.resume({"rater": "lab-1"})["token"] == s["token"]
    raw = yaml.safe_load(p.read_text())
    raw["access"] = "open"
    p.write_text(yaml.safe_dump(raw))
    assert load_study(p).warnings == ()
    svc.store.close()


@pytest.mark.parametrize("extra,msg", [
    ({"access": "public"}, "`access` must be one of open, signed, crowd"),
    ({"access": "crowd", "allowed_raters": ["a"]}, "cannot be used with `access: crowd`"),
    ({"completion": {"code": ""}}, "`completion.code` must be a non-empty text"),
    ({"completion": {"url": "javascript:alert(1)"}}, "`completion.url` must be an http(s) URL"),
    ({"completion": {}}, "`completion` needs a `code`, a `url` or both"),
    ({"completion": {"code": "X", "redirect": "y"}}, "unknown key `completion.redirect`"),
])
def test_access_keys_validated(tmp_path, extra, msg):
    study, problems = check_study(_study(tmp_path, **extra))
    assert study is None and any(msg in x for x in problems), problems


def test_validate_study_file_not_utf8(tmp_path, capsys):
    p = tmp_path / "study.yaml"
    p.write_bytes("name: caf\xe9\n".encode("latin-1"))
    assert main(["validate", str(p)]) == 2
    err = capsys.readouterr().err.strip()
    assert "is not UTF-8 text (byte 0xe9 at offset 9)" in err and len(err.splitlines()) == 1
