"""Streaming training data (tclap.data.stream): shards, on-the-fly mix-ups, the data plan, resume, processes, bad input.

Expected item sets come from reading the tars with webdataset's own loader (not our reader), mix-ups from calling
the mix-up builder directly, held-out clips from the bank's public reader.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from tclap.cli import main as tclap_main
from tclap.data.stream import CountCache, build_plan, shuffle_order, split_rows
from tclap.data.stream.readers import BankReader, FiniteReader
from tclap.train.config import preset

pytest.importorskip("webdataset")

N_ITEMS, PER_TAR, SEED = 16, 4, 7


def _wds_ids(urls) -> list[str]:
    import webdataset as wds

    return [json.loads(s["json"])["id"] for s in wds.WebDataset([str(u) for u in urls], shardshuffle=False)]


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """16 ordered mix-ups (every one has a negative) in 4 tars of 4, as `tclap mixup --format webdataset` writes them."""
    out = tmp_path_factory.mktemp("wds")
    assert tclap_main(["mixup", "--n", str(N_ITEMS), "--seconds", "4", "--overlap-prob", "0", "--seed", str(SEED),
                       "--format", "webdataset", "--shard-items", str(PER_TAR), "--out", str(out), "--quiet"]) == 0
    return out


def _cfg(batch=8, workers=2, **data):
    cfg = preset("tiny")
    cfg.steps, cfg.data.batch_size, cfg.data.workers = 6, batch, workers
    for k, v in data.items():
        setattr(cfg.data, k, v)
    return cfg


def _plan(cfg, train, positive=(), world=1):
    return build_plan(cfg, list(train), list(positive), world, 16000, 4.0, CountCache(None), quiet=True)


def _take(readers, micro):
    return [i.id for r in readers for i in r.take(micro)]


# ---------------------------------------------------------------------------------------------------- the plan (pure)
def test_rows_are_spread_evenly_and_the_shuffle_buffer_is_bounded():
    rows = split_rows([13, 51], 4)  # the paper's 1:4 share of a batch of 64 over 4 readers
    assert [sum(r) for r in rows] == [13, 51]
    assert [rows[0][g] + rows[1][g] for g in range(4)] == [16] * 4
    assert all(r in (3, 4) for r in rows[0]) and all(r in (12, 13) for r in rows[1])
    rng = np.random.default_rng(0)
    for n, buf in ((50, 8), (7, 100), (10, 1)):
        order = shuffle_order(n, buf, rng)
        assert sorted(order) == list(range(n))
        assert all(p <= t + max(buf, 1) - 1 for t, p in enumerate(order))  # never more than buf - 1 ahead
    assert shuffle_order(10, 1, rng) == list(range(10))
    assert shuffle_order(50, 8, np.random.default_rng(0)) != list(range(50))


def test_each_epoch_reads_every_item_once_and_a_resumed_reader_continues_exactly(shards):
    everything = sorted(_wds_ids(sorted(shards.glob("*.tar"))))
    assert len(everything) == N_ITEMS
    plan = _plan(_cfg(shuffle_buffer=3), [str(shards)])
    assert plan.readers == 2 and plan.epoch(0, 0).steps == 2 and plan.epoch(0, 0).remainder == 0
    readers = [FiniteReader(plan, 0, g, lambda t: None) for g in range(2)]
    per_micro = [_take(readers, m) for m in range(6)]  # three epochs of two micro-steps
    for e in range(3):
        assert sorted(per_micro[2 * e] + per_micro[2 * e + 1]) == everything, f"epoch {e}"
    assert per_micro[0] + per_micro[1] != per_micro[2] + per_micro[3]  # a new shard order each epoch
    fresh = [FiniteReader(plan, 0, g, lambda t: None) for g in range(2)]
    assert [_take(fresh, m) for m in (3, 4, 5)] == per_micro[3:]  # resume in mid-epoch 1
    assert _take([FiniteReader(plan, 0, g, lambda t: None) for g in range(2)], 5) == per_micro[5]
    # --resampled: endless draws with replacement, and a resumed reader continues the same way
    rplan = _plan(_cfg(shuffle_buffer=3, resampled=True), [str(shards)])
    rs = [FiniteReader(rplan, 0, g, lambda t: None) for g in range(2)]
    seq = [_take(rs, m) for m in range(8)]
    assert all(len(ids) == 8 and set(ids) <= set(everything) for ids in seq)
    assert [_take([FiniteReader(rplan, 0, g, lambda t: None) for g in range(2)], 6)] == seq[6:7]


def _tone_bank(root: Path) -> Path:
    sr = 16000
    for c, label in enumerate(("bell", "drum", "horn")):
        (root / label).mkdir(parents=True)
        for i in range(10):
            t = np.arange(int((0.5 + 0.05 * i) * sr)) / sr
            sf.write(root / label / f"{label}_{i}.wav", 0.5 * np.sin(2 * np.pi * (300 + 150 * c + 10 * i) * t), sr)
    return root


def test_bank_items_depend_only_on_seed_and_index_and_use_the_training_split(tmp_path):
    from tclap.data.banks import BuiltinBank, open_bank
    from tclap.data.mixup import build_item, item_id

    by_layout = {}
    for workers in (0, 2):  # one reader, then two readers: the same global rows
        plan = _plan(_cfg(batch=4, workers=workers), ["bank:builtin"])
        readers = [BankReader(plan, 0, g, lambda t: None) for g in range(plan.readers)]
        by_layout[workers] = [[it for r in readers for it in r.take(m)] for m in range(3)]
    mix = plan.streams[0].mix
    for m in range(3):
        assert [it.id for it in by_layout[0][m]] == [it.id for it in by_layout[2][m]] == [item_id(mix, 4 * m + j) for j in range(4)]
    ref_item, ref_audio, ref_neg = build_item(BuiltinBank(), mix, 9)
    got = by_layout[2][2][1]  # global index 2 * 4 + 1
    assert got.meta["captions"] == ref_item["captions"] and np.array_equal(got.audio, ref_audio)
    assert (got.negative_audio is None) == (ref_neg is None)
    clips = [c for rows in by_layout[0] for it in rows for c in it.meta["clips"]]
    assert clips and all(int(c.rsplit("#", 1)[1]) % 5 != 4 for c in clips)  # built-in held-out instances: 4, 9, 14, ...
    # a folder bank: mix-ups draw only from its training split (the bank's own reader names the held-out files)
    bank_dir = _tone_bank(tmp_path / "bank")
    listed = [f"{label}/{label}_{i}.wav" for label in ("bell", "drum", "horn") for i in (0, 3, 7)]
    (bank_dir / "heldout.txt").write_text("\n".join(listed) + "\n")  # the bank's own hold-out list
    heldout = {c for keys in open_bank(str(bank_dir)).clips["heldout"].values() for c in keys}
    assert {str(Path(c).relative_to(bank_dir)) for c in heldout} == set(listed)
    plan = _plan(_cfg(batch=8, workers=0, bank_seconds=3.0), [f"bank:{bank_dir}"])
    reader = BankReader(plan, 0, 0, lambda t: None)
    used = {c for m in range(6) for it in reader.take(m) for c in it.meta["clips"]}
    assert used and not used & heldout


# ---------------------------------------------------------------------------------------------------- writers
def test_mixup_writes_webdataset_tars_per_machine_and_resumes(tmp_path):
    args = ["mixup", "--n", "6", "--seconds", "3", "--seed", "3", "--quiet", "--shard-items", "2"]
    assert tclap_main(args + ["--out", str(tmp_path / "m")]) == 0  # --format manifest, the default: unchanged
    assert (tmp_path / "m" / "manifest.jsonl").is_file() and not list((tmp_path / "m").glob("*.tar"))
    w = tmp_path / "w"
    for i in range(2):
        assert tclap_main(args + ["--out", str(w), "--format", "webdataset", "--shard", f"{i}/2"]) == 0
    names = sorted(p.name for p in w.glob("*.tar"))
    assert names == ["mixup-00000of00002-000000.tar", "mixup-00000of00002-000001.tar",
                     "mixup-00001of00002-000000.tar", "mixup-00001of00002-000001.tar"]
    assert not (w / "manifest.jsonl").exists() and not (w / "audio").exists()
    from tclap.data.manifest import read_manifest

    items = {it["id"]: it for it in read_manifest(tmp_path / "m" / "manifest.jsonl")}
    import webdataset as wds

    seen = []
    for s in wds.WebDataset(sorted(str(p) for p in w.glob("*.tar")), shardshuffle=False):
        meta = json.loads(s["json"])
        seen.append(meta["id"])
        it = items[meta["id"]]
        ref, _ = sf.read(it["audio"], dtype="int16")
        got, _ = sf.read(__import__("io").BytesIO(s["wav"]), dtype="int16")
        assert np.array_equal(ref, got) and meta["captions"] == it["captions"]
        assert ("neg.wav" in s) == bool(it.get("negative_audio"))
    assert sorted(seen) == sorted(items)
    # the alias writes the same tars; a lost tar is rebuilt, byte for byte, and the others are kept
    a = tmp_path / "alias"
    assert tclap_main(args + ["--out", str(a), "--shards-webdataset", "--shard", "1/2"]) == 0
    for p in a.glob("*.tar"):
        assert p.read_bytes() == (w / p.name).read_bytes()
    lost = w / "mixup-00001of00002-000001.tar"
    before = lost.read_bytes()
    lost.unlink()
    assert tclap_main(args[:-2] + ["--out", str(w), "--format", "webdataset", "--shard", "1/2", "--shard-items", "2"]) == 0
    assert lost.read_bytes() == before
    idx = json.loads((w / "mixup-00001of00002.index.json").read_text())
    assert idx["items"] == [2, 1] and idx["total"] == 3  # items 1, 3 | 5


# ---------------------------------------------------------------------------------------------------- tclap train
def test_dry_run_prints_the_plan_without_building_the_model(shards, tmp_path, monkeypatch, capsys):
    import tclap.models.factory as factory

    monkeypatch.setattr(factory, "from_config", lambda *a, **k: pytest.fail("--dry-run built the model"))
    out = tmp_path / "never"
    rc = tclap_main(["train", "--train", str(shards), "--positive", "bank:builtin", "--mix-ratio", "1:1",
                     "--batch-size", "8", "--workers", "2", "--steps", "5", "--out", str(out), "--dry-run"])
    text = capsys.readouterr().out
    assert rc == 0 and not out.exists()
    assert "rank 0 worker 0: 2 shard(s), 8 item(s), 2 row(s)/step" in text  # 4 temporal rows over 2 readers
    assert "rank 0 worker 1: 2 shard(s), 8 item(s), 2 row(s)/step" in text
    assert "4 shard(s), 16 usable item(s)" in text and "4/8 rows (50%)" in text
    assert "4 micro-step(s) per epoch = 16 samples; remainder 0" in text
    assert "positive: bank:builtin" in text and "endless on-the-fly mix-ups" in text
    assert "5 optimizer step(s)" in text


def test_remote_shards_are_counted_from_their_index_without_reading_them(shards, capsys):
    # `false` fails whatever it is given: the plan must not run these commands
    source = "pipe:false " + str(shards / "mixup-00000of00001-{000000..000003}.tar")
    args = ["train", "--train", source, "--batch-size", "8", "--workers", "2", "--out", "x", "--dry-run"]
    assert tclap_main(args) == 2 and "exit status 1" in capsys.readouterr().err
    index = shards / "mixup-00000of00001.index.json"
    assert tclap_main(args + ["--shard-index", str(index)]) == 0
    assert "4 shard(s), 16 usable item(s)" in capsys.readouterr().out


def test_positive_sources_fill_their_share_of_every_batch(shards, tmp_path):
    out = tmp_path / "run"
    assert tclap_main(["train", "--train", "bank:builtin", "--positive", str(shards), "--mix-ratio", "1:3",
                       "--batch-size", "8", "--steps", "2", "--workers", "0", "--log-sample-ids", "--quiet",
                       "--no-export", "--out", str(out)]) == 0
    lines = [json.loads(ln) for ln in (out / "sample_ids.rank0.jsonl").read_text().splitlines()]
    assert [ln["micro"] for ln in lines] == [0, 1]
    for ln in lines:
        kinds = collections.Counter(i.split("-")[1] for i in ln["ids"])  # bank mix-ups: run seed 0; shards: seed 7
        assert kinds == {"s0": 2, f"s{SEED}": 6}
    cfg = json.loads((out / "train_config.json").read_text())
    assert cfg["batch"] == {"temporal": 2, "positive": 6} and cfg["pools"]["temporal"] == "endless"


def _train_args(shards, out, *extra):
    return ["train", "--train", str(shards), "--batch-size", "4", "--steps", "7", "--checkpoint-every", "3",
            "--log-every", "1", "--log-sample-ids", "--workers", "2", "--quiet", "--no-export", "--out", str(out), *extra]


def _ids(run, rank=0):
    return [json.loads(ln) for ln in (Path(run) / f"sample_ids.rank{rank}.jsonl").read_text().splitlines()]


# The real CLI in a subprocess whose train() gets a step callback that SIGKILLs the process (no cleanup runs) right
# after step 4 is logged: one step past the step-3 checkpoint, before the step-6 one. The kill lands at that point
# on every run; a test process polling the log and sending the signal could be kept off the CPU past the end of
# the 7 short steps on a loaded machine.
_KILLED_AT_STEP_4 = """
import os, signal, sys
from functools import partial
import tclap.commands.train as command

def die(step, rec):
    if step == 4:
        os.kill(os.getpid(), signal.SIGKILL)

command.train = partial(command.train, step_callback=die)
from tclap.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.timeout(240)
def test_kill_9_in_mid_epoch_then_resume_equals_an_uninterrupted_run(shards, tmp_path):
    # batch 4 over 2 readers: an epoch is 16 / 4 = 4 micro-steps; checkpoints after steps 3 and 6 fall inside epochs.
    assert tclap_main(_train_args(shards, tmp_path / "full")) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    err = tmp_path / "killed.stderr"
    with open(err, "wb") as fh:  # a file, not a pipe: the orphaned DataLoader workers would hold a pipe open
        proc = subprocess.run([sys.executable, "-c", _KILLED_AT_STEP_4, *_train_args(shards, tmp_path / "killed")],
                              env=env, stdout=subprocess.DEVNULL, stderr=fh, timeout=180, check=False)
    assert proc.returncode == -signal.SIGKILL, err.read_text()[-2000:]
    done = [p.name for p in (tmp_path / "killed" / "checkpoints").iterdir() if p.name.startswith("step-")]
    assert done == ["step-00000003"], done
    steps = [json.loads(ln)["step"] for ln in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]  # killed after step 4, not at some later step
    assert tclap_main(_train_args(shards, tmp_path / "killed", "--resume")) == 0
    assert _ids(tmp_path / "killed") == _ids(tmp_path / "full")  # the items after the resume are the same ones
    assert [r["micro"] for r in _ids(tmp_path / "full")] == list(range(7))
    wa = load_file(tmp_path / "full" / "checkpoints" / "step-00000007" / "model.safetensors")
    wb = load_file(tmp_path / "killed" / "checkpoints" / "step-00000007" / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=1e-6)
    # another number of readers would read other items: refused
    assert tclap_main(_train_args(shards, tmp_path / "killed", "--resume", "--workers", "1")) == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(300)
def test_two_processes_read_each_item_once_per_epoch_and_match_one_process(shards, tmp_path):
    """Two gloo processes (the environment torchrun / `accelerate launch` give each), one reader each, against one
    process with two DataLoader workers: the same two readers, so the same global batches."""
    common = ["train", "--train", str(shards), "--batch-size", "8", "--steps", "2", "--dropout", "0",
              "--log-sample-ids", "--quiet", "--no-export"]
    assert tclap_main(common + ["--workers", "2", "--out", str(tmp_path / "one")]) == 0
    port = _free_port()
    procs = []
    for rank in range(2):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true", "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port), "WORLD_SIZE": "2", "RANK": str(rank), "LOCAL_RANK": str(rank)}
        procs.append(subprocess.Popen([sys.executable, "-m", "tclap.cli", *common, "--workers", "0", "--out",
                                       str(tmp_path / "two")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    for p in procs:
        p.wait(timeout=280)
        assert p.returncode == 0, p.stderr.read().decode()[-2000:]
    # one epoch = 16 items / 8 per micro-step = micro-steps 0 and 1: every id exactly once across the two ranks
    got = [i for rank in range(2) for rec in _ids(tmp_path / "two", rank) for i in rec["ids"]]
    assert sorted(got) == sorted(_wds_ids(sorted(shards.glob("*.tar"))))
    one = [json.loads(ln) for ln in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    two = [json.loads(ln) for ln in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert two[0]["world"] == 2 and one[0]["world"] == 1
    for k in ("loss", "contrastive_loss", "temporal_loss"):
        assert two[0][k] == pytest.approx(one[0][k], abs=1e-5)


# ---------------------------------------------------------------------------------------------------- bad input
def _rewrite(src: Path, dst: Path, edit) -> None:
    """Copy a tar member by member, letting ``edit(name, data)`` change (or drop, with None) a member."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w", format=tarfile.USTAR_FORMAT) as tout:
        for m in tin:
            data = edit(m.name, tin.extractfile(m).read())
            if data is not None:
                info = tarfile.TarInfo(m.name)
                info.size = len(data)
                tout.addfile(info, __import__("io").BytesIO(data))


@pytest.mark.timeout(180)
def test_truncated_tar_member_without_audio_and_corrupt_clip_are_named_counted_skips(shards, tmp_path, capsys):
    tars = sorted(shards.glob("*.tar"))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.tar").write_bytes(tars[0].read_bytes())
    data = tars[1].read_bytes()
    with tarfile.open(tars[1]) as t:
        third = [m for m in t.getmembers()][6]  # the third item's first member (3 members per item)
    (bad / "b.tar").write_bytes(data[: third.offset_data + 100])  # cut inside it: 2 complete items remain
    keys1 = sorted({n.split(".")[0] for n in tarfile.open(tars[2]).getnames()})
    keys3 = sorted({n.split(".")[0] for n in tarfile.open(tars[3]).getnames()})
    _rewrite(tars[2], bad / "c.tar", lambda n, d: None if n == f"{keys1[1]}.wav" else d)  # an item without audio
    _rewrite(tars[3], bad / "d.tar", lambda n, d: b"RIFF" + bytes(60) if n == f"{keys3[2]}.wav" else d)  # corrupt clip
    # usable: 4 + 2 + 3 + 4 = 13, one micro-step of 13 rows reads them all
    rc = tclap_main(["train", "--train", str(bad), "--batch-size", "13", "--steps", "1", "--workers", "0",
                     "--no-export", "--quiet", "--out", str(tmp_path / "run")])
    out, err = capsys.readouterr()
    assert rc == 0, err
    text = out + err
    assert f"shard {bad / 'b.tar'}: truncated" in text
    assert f"shard {bad / 'c.tar'} member {keys1[1]}: no audio member" in text
    assert f"skipped shard {bad / 'd.tar'} member {keys3[2]}: cannot decode its audio" in text
    assert "13 usable item(s)" in text and "1 unreadable item (named on stderr)" in text
    saved = json.loads((tmp_path / "run" / "train_config.json").read_text())["skipped"]
    assert saved == {"unusable item: no audio, caption or readable JSON (named above)": 1,
                     "truncated shard: items past the cut are lost (named above)": 1,
                     "unreadable item (named on stderr)": 1}  # the run's end adds what reading skipped
    for line in text.splitlines():  # every problem is one line
        assert "Traceback" not in line


def test_patterns_that_match_nothing_and_failing_commands_are_one_line_errors(shards, tmp_path, capsys):
    cases = [
        (str(tmp_path / "none" / "*.tar"), "matches no file"),
        (str(tmp_path / "x-{000..002}.tar"), "3 of 3 shard(s) do not exist"),
        ("pipe:exit 3", "the command failed (exit status 3)"),
        (f"pipe:cat {tmp_path / 'missing.tar'}", "the command failed (exit status 1)"),
    ]
    for source, words in cases:
        rc = tclap_main(["train", "--train", source, "--steps", "1", "--batch-size", "4", "--quiet",
                         "--out", str(tmp_path / "r")])
        err = capsys.readouterr().err.strip().splitlines()
        err = [ln for ln in err if not ln.startswith("cat:") and not ln.startswith("tclap train: counting")]
        assert rc == 2 and len(err) == 1 and words in err[0], (source, err)


@pytest.mark.timeout(120)
def test_a_data_worker_that_dies_is_one_line_naming_what_it_read(shards, tmp_path, monkeypatch):
    from torch.utils.data import get_worker_info

    import tclap.data.stream.readers as readers
    from basekit.errors import UserError
    from tclap.train.trainer import train

    real = readers.decode

    def dies_in_a_worker(*a, **k):
        if get_worker_info() is not None:
            os._exit(9)  # as a worker killed by the OOM killer or a crash in a decoder library
        return real(*a, **k)

    monkeypatch.setattr(readers, "decode", dies_in_a_worker)
    cfg = _cfg(batch=4, workers=1)
    cfg.steps = 2
    with pytest.raises(UserError) as info:
        train(cfg, [str(shards)], tmp_path / "run", quiet=True, export=False)
    msg = str(info.value)
    assert len(msg.splitlines()) == 1 and "data worker died" in msg and "shard " in msg and " member " in msg


@pytest.mark.timeout(120)
def test_a_source_that_sends_nothing_stops_the_run_after_the_timeout(shards, tmp_path):
    from basekit.errors import UserError
    from tclap.train.trainer import train

    tar = sorted(shards.glob("*.tar"))[0]
    url = f"pipe:sleep 20; cat {tar}"
    run = tmp_path / "run"
    run.mkdir()
    # its counts as a first run would have kept them (counting reads a pipe: through once)
    (run / "stream_counts.json").write_text(json.dumps({url: {"stamp": None, "items": 4, "with_negative": 4}}))
    cfg = _cfg(batch=4, workers=1, data_timeout=3.0)
    cfg.steps, cfg.init = 1, "tiny-tclap"  # a trained model: no BatchNorm statistics read from the data first
    t0 = time.time()
    with pytest.raises(UserError, match="sent nothing for 3 s while reading") as info:
        train(cfg, [url], run, quiet=True, export=False)
    assert time.time() - t0 < 60 and len(str(info.value).splitlines()) == 1
