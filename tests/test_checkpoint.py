"""``basekit.checkpoint``: atomic step folders, a kill mid-write keeps the previous one latest, rotation, step order."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from basekit import checkpoint as C
from basekit.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def _writer(payload: str):
    """A ``write(folder)`` that stores ``payload`` in ``weights.txt``, as ``save_state`` would store tensors."""

    def write(d: Path) -> None:
        d.mkdir(parents=True, exist_ok=True)
        (d / "weights.txt").write_text(payload)

    return write


def test_save_writes_the_layout_both_trainers_resume_from(tmp_path):
    root = tmp_path / "checkpoints"
    out = C.save_checkpoint(root, 3, _writer("w3"), {"seed": 7, "step": 999}, keep=2)
    assert out == root / "step-00000003"
    assert sorted(p.name for p in root.iterdir()) == ["step-00000003"]  # no temp folder left
    assert (out / "weights.txt").read_text() == "w3"
    assert json.loads((out / "trainer_state.json").read_text()) == {"step": 3, "seed": 7}  # the real step wins
    assert C.read_state(out) == {"step": 3, "seed": 7}
    assert C.latest_checkpoint(root) == out and C.checkpoint_step(out) == 3


def test_a_checkpoint_written_by_the_old_trainers_is_found_and_read(tmp_path):
    # What audioldm_cond/tclap wrote before this module existed: save_state files + trainer_state.json.
    old = tmp_path / "checkpoints" / "step-00000002"
    old.mkdir(parents=True)
    (old / "model.safetensors").write_bytes(b"x")
    (old / "trainer_state.json").write_text(json.dumps({"step": 2, "scaling_factor": 0.5, "config": {}}, indent=2))
    assert C.latest_checkpoint(tmp_path / "checkpoints") == old
    assert C.read_state(old)["scaling_factor"] == 0.5


def test_order_is_by_step_not_by_name(tmp_path):
    root = tmp_path / "checkpoints"
    for step in (99_999_999, 100_000_000, 5):
        C.save_checkpoint(root, step, _writer(str(step)), keep=10)
    hand = root / "step-10"  # an unpadded name still counts by its number
    hand.mkdir()
    (hand / "trainer_state.json").write_text('{"step": 10}')
    names = [p.name for p in C.list_checkpoints(root)]
    assert names == ["step-00000005", "step-10", "step-99999999", "step-100000000"]
    assert sorted(names) != names  # a string sort would have got this wrong
    assert C.latest_checkpoint(root).name == "step-100000000"


def test_listing_ignores_what_is_not_a_complete_checkpoint(tmp_path):
    root = tmp_path / "checkpoints"
    C.save_checkpoint(root, 2, _writer("ok"))
    (root / "step-00000009").mkdir()  # no state file: not complete
    (root / ".tmp-step-00000008").mkdir()  # a save that a kill interrupted
    (root / ".tmp-step-00000008" / "trainer_state.json").write_text('{"step": 8}')
    (root / "step-xyz").mkdir()
    (root / "step-xyz" / "trainer_state.json").write_text('{"step": 1}')
    (root / "step-00000007").write_text("a file, not a folder")
    assert [p.name for p in C.list_checkpoints(root)] == ["step-00000002"]
    assert C.list_checkpoints(tmp_path / "nowhere") == [] and C.latest_checkpoint(tmp_path / "nowhere") is None


def test_rotation_keeps_the_newest_k(tmp_path):
    root = tmp_path / "checkpoints"
    for step in range(1, 6):
        C.save_checkpoint(root, step * 2, _writer(str(step)), keep=2)
    assert sorted(p.name for p in root.iterdir()) == ["step-00000008", "step-00000010"]
    C.save_checkpoint(root, 12, _writer("x"), keep=0)  # keep < 1 still keeps the one just written
    assert sorted(p.name for p in root.iterdir()) == ["step-00000012"]


def test_resaving_a_step_replaces_it_whole(tmp_path):
    root = tmp_path / "checkpoints"
    C.save_checkpoint(root, 4, _writer("first"), {"n": 1})
    (root / "step-00000004" / "stale.bin").write_text("from the first save")
    C.save_checkpoint(root, 4, _writer("second"), {"n": 2})
    assert sorted(p.name for p in (root / "step-00000004").iterdir()) == ["trainer_state.json", "weights.txt"]
    assert C.read_state(root / "step-00000004") == {"step": 4, "n": 2}
    assert sorted(p.name for p in root.iterdir()) == ["step-00000004"]


def test_a_failing_write_leaves_the_previous_checkpoint_latest_and_no_temp(tmp_path):
    root = tmp_path / "checkpoints"
    prev = C.save_checkpoint(root, 2, _writer("good"))

    def broken(d: Path) -> None:
        d.mkdir(parents=True)
        (d / "half.bin").write_text("half")
        raise KeyboardInterrupt  # Ctrl-C mid-write

    with pytest.raises(KeyboardInterrupt):
        C.save_checkpoint(root, 4, broken)
    assert C.latest_checkpoint(root) == prev
    assert sorted(p.name for p in root.iterdir()) == ["step-00000002"]


def test_sigkill_mid_write_leaves_the_previous_checkpoint_latest(tmp_path):
    """A real kill (no cleanup runs) while step 4 is being written: step 2 stays the latest, the half-written temp
    folder is never listed, and the next save sweeps it away."""
    root = tmp_path / "checkpoints"
    code = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from basekit import checkpoint as C

        def write(tag):
            def w(d):
                d.mkdir(parents=True, exist_ok=True)
                (d / "weights.txt").write_text(tag)
                if tag == "step4":
                    os.kill(os.getpid(), signal.SIGKILL)
            return w

        C.save_checkpoint({str(root)!r}, 2, write("step2"))
        C.save_checkpoint({str(root)!r}, 4, write("step4"))
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert sorted(p.name for p in root.iterdir()) == [".tmp-step-00000004", "step-00000002"]
    assert C.latest_checkpoint(root) == root / "step-00000002"
    assert (root / "step-00000002" / "weights.txt").read_text() == "step2"
    C.save_checkpoint(root, 4, _writer("again"))  # the resumed run redoes step 4
    assert sorted(p.name for p in root.iterdir()) == ["step-00000002", "step-00000004"]


def test_a_kill_during_rotation_never_shows_a_half_deleted_checkpoint(tmp_path, monkeypatch):
    root = tmp_path / "checkpoints"
    C.save_checkpoint(root, 1, _writer("1"), keep=1)
    calls = []

    def die_in_rmtree(path, ignore_errors=False):
        calls.append(Path(path).name)
        if Path(path).name.startswith(".del-"):
            # a kill halfway through deleting: the doomed folder is already out of the listing
            (Path(path) / "weights.txt").unlink(missing_ok=True)
            raise KeyboardInterrupt

    monkeypatch.setattr(C.shutil, "rmtree", die_in_rmtree)
    with pytest.raises(KeyboardInterrupt):
        C.save_checkpoint(root, 2, _writer("2"), keep=1)
    monkeypatch.undo()
    assert ".del-step-00000001" in calls
    assert [p.name for p in C.list_checkpoints(root)] == ["step-00000002"]  # never the half-deleted step 1
    C.save_checkpoint(root, 3, _writer("3"), keep=1)  # the next save sweeps the leftover
    assert sorted(p.name for p in root.iterdir()) == ["step-00000003"]


def test_every_process_writes_but_only_the_main_one_publishes(tmp_path):
    """Two threads stand in for two processes, with a real barrier: both write into the same temp folder, the
    checkpoint holds both parts, and the rank-1 call neither publishes nor rotates."""
    root = tmp_path / "checkpoints"
    stale = root / ".tmp-step-00000006"  # left by a killed save of the same step: swept before anyone writes
    stale.mkdir(parents=True)
    (stale / "old.bin").write_text("stale")
    C.save_checkpoint(root, 2, _writer("2"))
    barrier = threading.Barrier(2, timeout=30)
    seen_by_rank1 = {}
    results, errors = {}, []

    def run(rank):
        def w(d: Path) -> None:
            d.mkdir(parents=True, exist_ok=True)
            (d / f"rank{rank}.bin").write_text(str(rank))

        def sync():
            barrier.wait()
            if rank == 1:  # what rank 1 sees at each barrier
                seen_by_rank1.setdefault("latest", []).append(C.latest_checkpoint(root).name)

        try:
            results[rank] = C.save_checkpoint(root, 6, w, keep=1, is_main=rank == 0, barrier=sync)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert results[0] == results[1] == root / "step-00000006"
    assert sorted(p.name for p in results[0].iterdir()) == ["rank0.bin", "rank1.bin", "trainer_state.json"]
    assert sorted(p.name for p in root.iterdir()) == ["step-00000006"]  # keep=1 rotated step 2 away
    # the last barrier comes after the main process published: rank 1 returns only once the checkpoint exists
    assert seen_by_rank1["latest"][-1] == "step-00000006"
    assert seen_by_rank1["latest"][0] == "step-00000002"


def test_read_state_of_a_broken_file_is_one_clear_line(tmp_path):
    d = tmp_path / "step-00000003"
    d.mkdir()
    (d / "trainer_state.json").write_text("{not json")
    with pytest.raises(UserError, match=r"step-00000003.*delete that checkpoint folder"):
        C.read_state(d)
    (d / "trainer_state.json").write_text('{"epoch": 1}')
    with pytest.raises(UserError, match="no integer 'step'"):
        C.read_state(d)


def test_names_and_steps():
    assert C.checkpoint_name(0) == "step-00000000" and C.checkpoint_name(123) == "step-00000123"
    assert C.checkpoint_step("a/b/step-00000123") == 123
    assert C.checkpoint_step(".tmp-step-00000123") is None and C.checkpoint_step("step-12a") is None
    with pytest.raises(ValueError):
        C.checkpoint_name(-1)
