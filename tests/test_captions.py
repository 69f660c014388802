"""Order-phrase templates and the order parser, each template checked both ways by hand."""

import numpy as np
import pytest

from tclap.data.captions import (
    OVERLAP_TEMPLATES,
    SEQUENCE_TEMPLATES_2,
    SEQUENCE_TEMPLATES_3,
    make_caption,
    parse_event_order,
)

# (template, positive for beep -> knock, negative, written by hand)
TWO = [
    ("{0} followed by {1}", "A beep followed by a knock", "A knock followed by a beep"),
    ("{0} and then {1}", "A beep and then a knock", "A knock and then a beep"),
    ("{0} before {1}", "A beep before a knock", "A knock before a beep"),
    ("{1} after {0}", "A knock after a beep", "A beep after a knock"),
    ("first {0}, then {1}", "First a beep, then a knock", "First a knock, then a beep"),
    ("{0}, then {1}", "A beep, then a knock", "A knock, then a beep"),
    ("{0} is followed by {1}", "A beep is followed by a knock", "A knock is followed by a beep"),
    ("{0} and later {1}", "A beep and later a knock", "A knock and later a beep"),
    ("{0}, after that {1}", "A beep, after that a knock", "A knock, after that a beep"),
    ("{1} following {0}", "A knock following a beep", "A beep following a knock"),
]

# (template, positive for siren -> bell -> drum roll, negative)
THREE = [
    ("{0} followed by {1} and then {2}",
     "A siren followed by a ringing bell and then a drum roll",
     "A drum roll followed by a ringing bell and then a siren"),
    ("{0}, then {1}, then {2}",
     "A siren, then a ringing bell, then a drum roll",
     "A drum roll, then a ringing bell, then a siren"),
    ("first {0}, then {1}, and finally {2}",
     "First a siren, then a ringing bell, and finally a drum roll",
     "First a drum roll, then a ringing bell, and finally a siren"),
    ("{0} before {1} before {2}",
     "A siren before a ringing bell before a drum roll",
     "A drum roll before a ringing bell before a siren"),
    ("{0} followed by {1} followed by {2}",
     "A siren followed by a ringing bell followed by a drum roll",
     "A drum roll followed by a ringing bell followed by a siren"),
    ("{0}, {1} and then {2}",
     "A siren, a ringing bell and then a drum roll",
     "A drum roll, a ringing bell and then a siren"),
]

OVERLAP = [
    ("{0} while {1}", "A beep while a siren"),
    ("{0} together with {1}", "A beep together with a siren"),
    ("{0} and {1} at the same time", "A beep and a siren at the same time"),
    ("{0} mixed with {1}", "A beep mixed with a siren"),
]


class _Fixed:
    """A stand-in generator whose ``integers`` returns a chosen template index."""

    def __init__(self, k):
        self.k = k

    def integers(self, n):
        assert 0 <= self.k < n
        return self.k


def test_tables_cover_every_template():
    assert [t for t, *_ in TWO] == list(SEQUENCE_TEMPLATES_2)
    assert [t for t, *_ in THREE] == list(SEQUENCE_TEMPLATES_3)
    assert [t for t, _ in OVERLAP] == list(OVERLAP_TEMPLATES)


@pytest.mark.parametrize("k", range(len(TWO)))
def test_two_event_templates_both_ways(k):
    _, pos, neg = TWO[k]
    got = make_caption(["a beep", "a knock"], "sequence", _Fixed(k))
    assert got == (pos, neg)
    assert parse_event_order(pos) == ["beep", "knock"]
    assert parse_event_order(neg) == ["knock", "beep"]


@pytest.mark.parametrize("k", range(len(THREE)))
def test_three_event_chains_both_ways(k):
    _, pos, neg = THREE[k]
    got = make_caption(["a siren", "a ringing bell", "a drum roll"], "sequence", _Fixed(k))
    assert got == (pos, neg)
    assert parse_event_order(pos) == ["siren", "bell", "drum_roll"]
    assert parse_event_order(neg) == ["drum_roll", "bell", "siren"]


@pytest.mark.parametrize("k", range(len(OVERLAP)))
def test_overlap_has_no_negative_and_no_order(k):
    _, pos = OVERLAP[k]
    assert make_caption(["a beep", "a siren"], "overlap", _Fixed(k)) == (pos, "")
    assert parse_event_order(pos) is None


def test_negative_reverses_meaning_not_only_the_connector():
    # "B after A" must become "A after B" (A now happens second), never "B before A" (same meaning).
    pos, neg = make_caption(["a beep", "a knock"], "sequence", _Fixed(3))
    assert (pos, neg) == ("A knock after a beep", "A beep after a knock")
    for seed in range(30):
        p, n = make_caption(["a hum", "a buzzer", "a siren"], "sequence", np.random.default_rng(seed))
        assert parse_event_order(p) == ["hum", "buzzer", "siren"]
        assert parse_event_order(n) == ["siren", "buzzer", "hum"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a beep followed by a knock", ["beep", "knock"]),
        ("A dog-like bark, and then a siren.", ["bark", "siren"]),
        ("After the siren, a knock", ["siren", "knock"]),
        ("Before a ringing bell, a low hum", ["hum", "bell"]),
        ("beeps then a buzzer", ["beep", "buzzer"]),
        ("a knock is heard after a ticking clock stops", ["clock_tick", "knock"]),
        ("a rising chirp precedes a falling whistle", ["rising_chirp", "falling_whistle"]),
        ("a clap of hands subsequently a burst of noise", ["hand_clap", "noise_burst"]),
        ("first a hum, a beep, a knock", ["hum", "beep", "knock"]),
        ("a beep", ["beep"]),
        ("a beep and a knock", None),  # no order word: the order is open
        ("a siren as a bell rings", None),  # simultaneous
        ("a beep with a knock", None),
        ("a violin solo", None),  # nothing from the vocabulary
        ("a beep before a knock after a siren", None),  # beep<knock, siren<knock: beep vs siren is open
    ],
)
def test_parse_plain_prompts(text, expected):
    assert parse_event_order(text) == expected


def test_parse_with_a_custom_vocabulary():
    vocab = {"dog": "a dog barking", "car_horn": "a car horn"}
    assert parse_event_order("A car horn followed by a dog barking", vocab) == ["car_horn", "dog"]
    assert parse_event_order("a dog after a car horn", ["dog", "car_horn"]) == ["car_horn", "dog"]


def test_make_caption_rejects_bad_input():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        make_caption(["a beep"], "sequence", rng)
    with pytest.raises(ValueError):
        make_caption(["a beep", "a beep"], "sequence", rng)
    with pytest.raises(ValueError):
        make_caption(["a beep", "a knock", "a hum"], "overlap", rng)
