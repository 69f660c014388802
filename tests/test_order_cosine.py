"""benchmarks/order_cosine.py: the prompt / order-swapped prompt cosine that docs/results.md reports."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def oc():
    spec = importlib.util.spec_from_file_location("order_cosine", ROOT / "benchmarks" / "order_cosine.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_pair_cosines_and_bootstrap_on_hand_worked_cases(oc):
    a = np.array([[1.0, 0.0], [1.0, 1.0], [3.0, 4.0]])
    b = np.array([[0.0, 2.0], [2.0, 2.0], [4.0, 3.0]])
    np.testing.assert_allclose(oc.pair_cosines(a, b), [0.0, 1.0, 24 / 25])  # 3*4 + 4*3 over 5*5
    assert oc.bootstrap_ci(np.full(7, 0.25)) == (0.25, 0.25)
    lo, hi = oc.bootstrap_ci(np.array([0.0, 1.0] * 50))
    assert lo < 0.5 < hi and hi - lo < 0.3


def _manifest(path: Path, items: list[dict]) -> Path:
    path.write_text("".join(json.dumps(it) + "\n" for it in items))
    return path


def test_pairs_come_from_items_with_a_negative_caption(oc, tmp_path, capsys):
    from basekit.audio import save_audio

    save_audio(tmp_path / "a.wav", np.zeros(1600, dtype=np.float32), 16000)
    m = _manifest(tmp_path / "m.jsonl", [
        {"id": "1", "audio": "a.wav", "captions": ["A beep followed by a knock"],
         "negative_captions": ["A knock followed by a beep"]},
        {"id": "2", "audio": "a.wav", "captions": ["A beep"]}])
    assert oc.caption_pairs(str(m), 10, tmp_path) == [("A beep followed by a knock", "A knock followed by a beep")]
    assert oc.main(["--models", "tiny", "--data", str(m)]) == 0
    row = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| tiny |")]
    assert len(row) == 1 and row[0].split("|")[2].strip() == "1"
    only = _manifest(tmp_path / "p.jsonl", [{"id": "2", "audio": "a.wav", "captions": ["A beep"]}])
    for argv, word in ((["--data", str(only)], "negative caption"), (["--data", str(tmp_path / "nope.jsonl")], "no such"),
                       (["--models", " , "], "--models")):
        assert oc.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and word in err, err
