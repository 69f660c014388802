"""``tclap shards captions``: captioned sets (Clotho / AudioCaps / JSONL) as WebDataset shards the trainers stream.

The tars are read back with webdataset's own loader and ``tarfile``, the captions and negatives compared with the
table and with ``tclap negatives``' output read as plain JSON; the trainers' data plan then counts them.
"""

from __future__ import annotations

import csv
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from basekit.audio import save_audio
from tclap.cli import main as tclap_main

pytest.importorskip("webdataset")

SR = 16000
CAPS = [
    ["a dog barks followed by a man speaks", "a man speaks after a dog barks"],
    ["a bell rings and then water runs", "water runs after a bell rings"],
    ["a car passes followed by a horn", "a horn sounds after a car passes"],
    ["birds sing then a door slams", "a door slams after birds sing"],
    ["rain falls followed by thunder", "thunder after rain falls"],
]


@pytest.fixture()
def clotho(tmp_path) -> dict:
    """A Clotho-style CSV of 5 clips (c3.wav missing) plus a row without a file name; WAVs; rule negatives."""
    audio = tmp_path / "audio"
    audio.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        if i != 3:
            save_audio(audio / f"c{i}.wav", (0.1 * rng.standard_normal(SR // 4)).astype(np.float32), SR)
    (audio / "bad.wav").write_bytes(b"RIFF this is not audio")
    table = tmp_path / "clotho.csv"
    with table.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file_name", "caption_1", "caption_2"])
        for i, caps in enumerate(CAPS):
            w.writerow([f"c{i}.wav", *caps])
        w.writerow(["", "a caption whose clip has no name", "x"])
        w.writerow(["bad.wav", "a cat meows followed by a dog barks", ""])
    negs = tmp_path / "neg"
    assert tclap_main(["negatives", str(table), "--out", str(negs), "--quiet"]) == 0
    return {"audio": audio, "table": table, "negatives": negs / "negatives.jsonl"}


def _items(tars) -> dict[str, dict]:
    import webdataset as wds

    out = {}
    for s in wds.WebDataset([str(t) for t in tars], shardshuffle=False):
        meta = json.loads(s["json"])
        assert s["__key__"] not in out
        out[s["__key__"]] = {"meta": meta, "wav": s["wav"]}
    return out


def test_clotho_csv_with_negatives_two_machines(clotho, tmp_path, capsys):
    out = tmp_path / "shards"
    common = ["shards", "captions", "--csv", str(clotho["table"]), "--audio-dir", str(clotho["audio"]),
              "--negatives", str(clotho["negatives"]), "--out", str(out), "--shard-items", "1"]
    for i in (0, 1):
        assert tclap_main([*common, "--shard", f"{i}/2"]) == 0
    err = capsys.readouterr().err
    # the missing clip and the non-audio file (items 3 and 5: machine 1), the nameless row (both machines read it)
    assert err.count("c3.wav not found") == 1 and err.count("without an audio file name") == 2
    assert err.count("bad.wav is not readable audio") == 1
    tars = sorted(out.glob("captions-*.tar"))
    # items in table order c0 c1 c2 c3 c4 bad: machine 0 takes c0 c2 c4, machine 1 c1 (c3 missing, bad unreadable)
    assert [t.name for t in tars] == ["captions-00000of00002-000000.tar", "captions-00000of00002-000001.tar",
                                      "captions-00000of00002-000002.tar", "captions-00001of00002-000000.tar"]
    got = _items(tars)
    assert sorted(got) == ["c0", "c1", "c2", "c4"]
    negatives = {}
    for line in clotho["negatives"].read_text().splitlines():
        r = json.loads(line)
        if r["negative"]:
            negatives.setdefault(r["caption"], r["negative"])
    for k, it in got.items():
        i = int(k[1:])
        assert it["meta"]["captions"] == CAPS[i] and it["meta"]["id"] == k and it["meta"]["source"] == "clotho"
        assert it["meta"]["negative_captions"] == [negatives[c] for c in CAPS[i] if c in negatives]
        assert it["wav"] == (clotho["audio"] / f"{k}.wav").read_bytes()  # the file's bytes, not re-encoded
    assert any(it["meta"]["negative_captions"] for it in got.values())
    # what the trainers plan from: the indexes count every item
    from tclap.data.stream import CountCache, build_plan
    from tclap.train.config import preset

    cfg = preset("tiny")
    cfg.data.batch_size, cfg.data.workers, cfg.loss.lambda_t = 1, 0, 0.0
    plan = build_plan(cfg, [], [str(out)], 1, 16000, 1.0, CountCache(None), quiet=True)
    assert plan.streams[0].total_items() == 4 and len(plan.streams[0].units) == 4
    index = json.loads((out / "captions-00000of00002.index.json").read_text())
    assert index["items"] == [1, 1, 1] and index["total"] == 3


def test_rerun_keeps_finished_tars_and_rebuilds_the_rest(clotho, tmp_path, capsys):
    out = tmp_path / "s"
    args = ["shards", "captions", "--csv", str(clotho["table"]), "--audio-dir", str(clotho["audio"]), "--out", str(out),
            "--shard-items", "2", "--quiet"]
    assert tclap_main(args) == 0
    first, second = sorted(out.glob("captions-00000of00001-*.tar"))
    before = second.read_bytes()
    first_ns = first.stat().st_mtime_ns
    second.unlink()
    (out / ".captions-00000of00001-000001.tar.tmp").write_bytes(b"left by a killed run")  # ignored
    capsys.readouterr()
    assert tclap_main(args) == 0
    assert "2 written, 2 kept" in capsys.readouterr().out
    assert first.stat().st_mtime_ns == first_ns and second.read_bytes() == before
    with tarfile.open(first) as t:
        assert t.getnames() == ["c0.wav", "c0.json", "c1.wav", "c1.json"]
    first_bytes = first.read_bytes()
    first.write_bytes(before)  # a tar holding other items than its share (the table changed): written again
    assert tclap_main(args) == 0
    assert "2 written, 2 kept" in capsys.readouterr().out and first.read_bytes() == first_bytes
    assert tclap_main([*args[:-1], "--shard", "0/2"]) == 2  # another split in the same folder: refused
    assert "another --shard split" in capsys.readouterr().err


def test_audiocaps_rows_grouped_by_clip_and_jsonl(tmp_path, capsys):
    audio = tmp_path / "a"
    audio.mkdir()
    for name in ("yt1_30", "yt2_0"):
        save_audio(audio / f"{name}.flac", np.zeros(800, dtype=np.float32) + 0.1, SR)
    table = tmp_path / "audiocaps.csv"
    table.write_text("audiocap_id,youtube_id,start_time,caption\n1,yt1,30,a dog barks followed by a man speaks\n"
                     "2,yt2,0,rain falls\n3,yt1,30,a man speaks after a dog barks\n4,yt1,30,a dog barks followed by a man speaks\n"
                     "5,yt9,10,no such clip\n")
    out = tmp_path / "o"
    assert tclap_main(["shards", "captions", "--csv", str(table), "--audio-dir", str(audio), "--out", str(out),
                       "--audio-name", "{youtube_id}_{start_time}"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "yt9_10" in err[0] and "audiocaps.csv:6" in err[0]
    import webdataset as wds

    got = {s["__key__"]: (json.loads(s["json"]), s["flac"]) for s in wds.WebDataset([str(p) for p in out.glob("*.tar")],
                                                                                   shardshuffle=False)}
    assert got["yt1_30"][0]["captions"] == ["a dog barks followed by a man speaks", "a man speaks after a dog barks"]
    assert got["yt2_0"][0]["captions"] == ["rain falls"] and got["yt2_0"][0]["negative_captions"] == []
    assert got["yt2_0"][1] == (audio / "yt2_0.flac").read_bytes()

    jl = tmp_path / "autoacd.jsonl"
    jl.write_text(json.dumps({"audio": "yt2_0.flac", "captions": ["rain", "rain falls"]}) + "\n{broken\n"
                  + json.dumps({"audio": "yt1_30.flac", "caption": ""}) + "\n")
    out2 = tmp_path / "o2"
    assert tclap_main(["shards", "captions", "--jsonl", str(jl), "--audio-dir", str(audio), "--out", str(out2)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "autoacd.jsonl:2: not valid JSON" in err[0] and "no caption for yt1_30.flac" in err[1]
    assert len(list(out2.glob("*.tar"))) == 1


@pytest.mark.parametrize("content, words", [
    ("file_name,label\nc0.wav,dog\n", "no caption column"),
    ("clip,caption\nc0.wav,a dog\n", "no audio column"),
    (b"\xff\xfe\x00bad", "not UTF-8"),
])
def test_unreadable_table_is_one_line_and_exit_2(tmp_path, capsys, content, words):
    table = tmp_path / "t.csv"
    table.write_bytes(content if isinstance(content, bytes) else content.encode())
    (tmp_path / "a").mkdir()
    assert tclap_main(["shards", "captions", "--csv", str(table), "--audio-dir", str(tmp_path / "a"),
                       "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0]
