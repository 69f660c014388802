"""Negative captions: hand-written rule cases, validation, and the LLM backend against a fake local server."""

import csv
import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tclap.cli import main as tclap_main
from tclap.negatives.llm import clean_response
from tclap.negatives.rule import base_from_gerund, gerund, rule_negative
from tclap.negatives.runner import NegativesConfig, read_captions, run_negatives
from tclap.negatives.validate import validate_negative

# caption -> expected negative, written by hand
RULE_CASES = [
    ("A man speaks followed by a dog barking.", "A dog barks followed by a man speaking."),
    ("After a door closes, a woman laughs", "After a woman laughs, a door closes"),
    ("Before a train passes, a bell rings.", "Before a bell rings, a train passes."),
    ("A woman laughs after a baby cries", "A baby cries after a woman laughs"),
    ("Footsteps are heard and then a door opens", "A door opens and then footsteps are heard"),
    ("First a man speaks, then a car starts", "First a car starts, then a man speaks"),
    ("A bell rings before people talk", "People talk before a bell rings"),
    ("A man is speaking followed by water splashing", "Water splashes followed by a man speaking"),
    ("Wind blows, then rain falls, then thunder rumbles", "Thunder rumbles, then rain falls, then wind blows"),
    ("Someone types on a keyboard followed by a phone ringing", "A phone rings followed by someone typing on a keyboard"),
    ("Water runs followed by a toilet flushing", "A toilet flushes followed by water running"),
    ("A crowd cheers as fireworks explode, then a man shouts", "A man shouts, then a crowd cheers as fireworks explode"),
    ("Rain falls on a roof, after that thunder roars", "Thunder roars, after that rain falls on a roof"),
    ("a motor hums and subsequently a horn honks", "A horn honks and subsequently a motor hums"),
]

NO_NEGATIVE = [
    ("A dog barks loudly", "single event"),
    ("Birds chirp while a car passes", "simultaneous"),
    ("A dog barks and a man speaks", "no temporal order"),
    ("While a man talks, music plays", "simultaneous"),
    ("A dog barks after a while", "single event"),
    ("A car engine idles and subsequently revs up", "shares the subject"),
    ("", "empty"),
]


@pytest.mark.parametrize("caption, expected", RULE_CASES)
def test_rule_reorders_clauses_with_grammar_fixups(caption, expected):
    r = rule_negative(caption)
    assert r.negative == expected and r.reason == ""
    assert validate_negative(caption, r.negative) is None


@pytest.mark.parametrize("caption, why", NO_NEGATIVE)
def test_rule_reports_why_there_is_no_negative(caption, why):
    r = rule_negative(caption)
    assert r.negative is None and why in r.reason


@pytest.mark.parametrize(
    "verb, ing", [("barks", "barking"), ("closes", "closing"), ("hums", "humming"), ("passes", "passing"),
                  ("flies", "flying"), ("speak", "speaking"), ("rings", "ringing"), ("opens", "opening")]
)
def test_verb_forms(verb, ing):
    assert gerund(verb) == ing
    base = verb[:-1] if verb.endswith("s") and not verb.endswith("ses") and not verb.endswith("ies") else verb
    expected_base = {"closes": "close", "passes": "pass", "flies": "fly"}.get(verb, base)
    if verb != "flies":  # "flying" -> "fly" would need a y-rule the captions never needed
        assert base_from_gerund(ing) == expected_base


@pytest.mark.parametrize(
    "caption, negative, reason",
    [
        ("A dog barks followed by a man speaking", "A man speaks followed by a dog barking", None),
        ("A dog barks followed by a man speaking", "a dog barks followed by a man speaking!", "copy"),
        ("A dog barks followed by a man speaking", "A cat meows followed by a man speaking", "different event words"),
        ("A dog barks followed by a man speaking", "A man speaks after a dog barks", "same event order"),
        ("A dog barks before a man speaks", "A dog barks after a man speaks", None),  # the order did change
        ("A dog barks followed by a man speaking", "", "empty"),
        ("A dog barks followed by a man speaking", "First, a man speaks, then a dog barks", None),
    ],
)
def test_validation(caption, negative, reason):
    got = validate_negative(caption, negative)
    if reason is None:
        assert got is None
    else:
        assert got is not None and reason in got


def test_clean_response():
    assert clean_response('Rewritten: "A man speaks followed by a dog barking."\nExplanation: ...') == (
        "A man speaks followed by a dog barking."
    )
    assert clean_response("NONE") == ""
    assert clean_response("\n\n- A then B") == "A then B"


def test_read_captions_layouts(tmp_path):
    ac = tmp_path / "ac.csv"
    ac.write_text("audiocap_id,youtube_id,start_time,caption\n91139,r1ZJgK,30,A dog barks then a man speaks\n")
    assert read_captions(ac) == [("91139", "A dog barks then a man speaks")]
    clotho = tmp_path / "clotho.csv"
    with clotho.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file_name"] + [f"caption_{k}" for k in range(1, 6)])
        w.writerow(["x.wav"] + [f"cap {k}" for k in range(1, 6)])
    assert read_captions(clotho) == [(f"x.wav#{k}", f"cap {k}") for k in range(1, 6)]
    jl = tmp_path / "c.jsonl"
    jl.write_text(json.dumps({"id": "a", "caption": "one"}) + "\n" + json.dumps({"captions": ["p", "q"]}) + "\n")
    assert read_captions(jl) == [("a", "one"), ("2#1", "p"), ("2#2", "q")]
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n1,2\n")
    with pytest.raises(Exception, match="no caption column"):
        read_captions(bad)


def _captions_file(tmp_path, captions):
    p = tmp_path / "caps.jsonl"
    p.write_text("".join(json.dumps({"id": f"c{i}", "caption": c}) + "\n" for i, c in enumerate(captions)))
    return p


def test_rule_cli_writes_jsonl_csv_and_counts(tmp_path, capsys):
    caps = _captions_file(tmp_path, ["A man speaks followed by a dog barking.", "A dog barks loudly", "Birds chirp while a car passes"])
    assert tclap_main(["negatives", str(caps), "--backend", "rule", "--out", str(tmp_path / "o"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "1/3 caption(s) got a negative (rule-v1: 1)" in out
    assert "1 x single event" in out and "simultaneous" in out
    rows = [json.loads(x) for x in (tmp_path / "o" / "negatives.jsonl").read_text().splitlines()]
    assert [r["negative"] for r in rows] == ["A dog barks followed by a man speaking.", "", ""]
    assert [r["reason"] for r in rows][:2] == ["ok", "single event"]
    with (tmp_path / "o" / "negatives.csv").open() as f:
        assert [r["negative"] for r in csv.DictReader(f)] == [r["negative"] for r in rows]
    # rerun: everything from the cache
    assert tclap_main(["negatives", str(caps), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    assert "3 from the cache" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------------------
# The LLM backend against a fake OpenAI-compatible server on loopback.

GOOD = "A man speaks followed by a dog barking."
JUNK_THEN_GOOD = "Rain falls, then thunder rumbles"
COPY = "A bell rings before a door slams"
ALWAYS_JUNK = "A car passes and then a horn honks"


class _Handler(BaseHTTPRequestHandler):
    calls: list = []

    def log_message(self, *args):  # keep the test output clean
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert self.path == "/v1/chat/completions"
        prompt = body["messages"][-1]["content"]
        caption = re.findall(r"Caption: (.*)", prompt)[-1]
        type(self).calls.append((caption, body["temperature"], self.headers.get("Authorization")))
        attempt = sum(1 for c, *_ in type(self).calls if c == caption)
        if caption == GOOD:
            answer = "Rewritten: A dog barks followed by a man speaking."
        elif caption == JUNK_THEN_GOOD:
            answer = "Sure! Here is a caption about weather." if attempt == 1 else "Thunder rumbles, then rain falls"
        elif caption == COPY:
            answer = caption
        elif caption == ALWAYS_JUNK:
            answer = "I cannot help with that."
        else:
            answer = "NONE"
        if caption == "MALFORMED":
            payload = b"{not json"
        else:
            payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": answer}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def fake_llm():
    _Handler.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", _Handler.calls
    server.shutdown()
    server.server_close()


def test_llm_backend_validates_retries_and_counts(tmp_path, fake_llm, monkeypatch, capsys):
    url, calls = fake_llm
    monkeypatch.setenv("FAKE_KEY", "sekrit")
    caps = _captions_file(tmp_path, [GOOD, JUNK_THEN_GOOD, COPY, ALWAYS_JUNK, "A dog barks loudly", "MALFORMED"])
    args = ["negatives", str(caps), "--backend", "llm", "--endpoint", url, "--model", "fake", "--api-key-env", "FAKE_KEY",
            "--retries", "2", "--out", str(tmp_path / "o"), "--quiet"]
    assert tclap_main(args) == 0
    out = capsys.readouterr().out
    rows = {r["caption"]: r for r in map(json.loads, (tmp_path / "o" / "negatives.jsonl").read_text().splitlines())}
    assert rows[GOOD]["negative"] == "A dog barks followed by a man speaking."
    assert rows[JUNK_THEN_GOOD]["negative"] == "Thunder rumbles, then rain falls"  # second try
    assert rows[COPY]["negative"] == "" and "copy of the caption" in rows[COPY]["reason"]
    assert rows[ALWAYS_JUNK]["negative"] == "" and "different event words" in rows[ALWAYS_JUNK]["reason"]
    assert rows["A dog barks loudly"]["negative"] == "" and "NONE" in rows["A dog barks loudly"]["reason"]
    assert rows["MALFORMED"]["negative"] == "" and "malformed reply" in rows["MALFORMED"]["reason"]
    assert "2/6 caption(s) got a negative (llm:fake: 2)" in out
    # 1 + 2 retries for captions that never validate; the first try is greedy, retries sample
    assert sum(1 for c, *_ in calls if c == COPY) == 3
    assert [t for c, t, _ in calls if c == COPY] == [0.0, 0.7, 0.7]
    assert all(auth == "Bearer sekrit" for *_, auth in calls)
    # a rerun uses the cache for the finished captions; only the malformed (not cached) one is retried
    n_calls = len(calls)
    assert tclap_main(args) == 0
    assert len(calls) == n_calls + 1
    # another prompt is another cache key: recomputed
    prompt = tmp_path / "p.txt"
    prompt.write_text("Swap the order.\nCaption: {caption}\n")
    assert tclap_main(args + ["--prompt-file", str(prompt)]) == 0
    assert len(calls) > n_calls + 1 + 5


def test_llm_endpoint_down_is_a_clear_failure(tmp_path, capsys):
    # Bound but not listening: connections are refused, and while the socket is held no other process (say a server
    # of a test in the other xdist worker) can take the port, as it could once a released port was reused.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    caps = _captions_file(tmp_path, [GOOD, COPY, JUNK_THEN_GOOD, ALWAYS_JUNK])
    try:
        rc = tclap_main(["negatives", str(caps), "--backend", "llm", "--endpoint", f"http://127.0.0.1:{port}/v1",
                         "--model", "m", "--out", str(tmp_path / "o"), "--timeout", "5"])
    finally:
        s.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "unreachable" in err[0] and "--endpoint" in err[0]


def test_llm_needs_endpoint_and_model(tmp_path, capsys):
    caps = _captions_file(tmp_path, [GOOD])
    assert tclap_main(["negatives", str(caps), "--backend", "llm", "--out", str(tmp_path / "o")]) == 2
    assert "--endpoint" in capsys.readouterr().err
    assert tclap_main(["negatives", str(caps), "--backend", "llm", "--endpoint", "http://127.0.0.1:1/v1", "--model", "m",
                       "--api-key-env", "SURELY_NOT_SET_X", "--out", str(tmp_path / "o")]) == 2
    assert "SURELY_NOT_SET_X" in capsys.readouterr().err
    bad_prompt = tmp_path / "p.txt"
    bad_prompt.write_text("no placeholder")
    assert tclap_main(["negatives", str(caps), "--backend", "llm", "--endpoint", "http://127.0.0.1:1/v1", "--model", "m",
                       "--prompt-file", str(bad_prompt), "--out", str(tmp_path / "o")]) == 2
    assert "{caption}" in capsys.readouterr().err


def test_run_negatives_in_process(tmp_path):
    caps = _captions_file(tmp_path, ["A knock followed by a beep"])
    report = run_negatives(caps, tmp_path / "o", NegativesConfig(backend="rule"), quiet=True)
    assert report.total == 1 and sum(report.made.values()) == 1
