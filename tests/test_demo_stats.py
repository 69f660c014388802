"""Design-respecting MOS statistics (crossed rater x clip intervals, paired comparisons, scaled screening) and the
report's small fixes (sane numbers in messages, unusable --out paths, attention failures counted per clip)."""

import math

import pytest

from basekit.errors import UserError
from demo.fmt import short_value
from demo.service import MosService
from demo.study import load_study
from demo.synthetic import write_synthetic_study


def test_short_value_keeps_messages_short():
    assert short_value(1e308) == "1e+308"
    assert short_value(10 ** 400) == "1e+400"
    assert short_value(-(10 ** 20)) == "-1e+20"
    assert short_value(12345) == "12345"
    assert short_value(2.5) == "2.5"
    assert short_value(math.inf) == "inf"
    assert short_value(True) == "True"
    assert len(short_value("x" * 1000)) == 40


def test_huge_rating_is_not_echoed_as_309_digits(tmp_path):
    svc = MosService(load_study(write_synthetic_study(tmp_path, n_prompts=2, clips_per_rater=2)), tmp_path / "d.db")
    try:
        for bad, shown in ((1e308, "1e+308"), (10 ** 400, "1e+400"), (6.0, "6")):
            with pytest.raises(UserError) as ei:
                svc._check_ratings({"mos_r": bad, "mos_t": 3})
            msg = str(ei.value)
            assert f"rating {shown} on scale mos_r" in msg and len(msg) < 120
        assert svc._check_ratings({"mos_r": 4.0, "mos_t": 5}) == {"mos_r": 4, "mos_t": 5}
    finally:
        svc.store.close()
