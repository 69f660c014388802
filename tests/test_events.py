"""What a model knows (issue 24, item 3): ``generate --list-events`` from the model folder's ``events.json``, and
a warning before the model loads when a prompt names an event the model was not trained on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audioldm_cond.cli import main
from audioldm_cond.events import builtin_events, check_prompt, event_mentions, read_events, stem, write_events

SHIPPED = Path(__file__).resolve().parents[1] / "audioldm_cond" / "assets" / "models"


@pytest.mark.parametrize("model", ["tiny-baseline", "tiny-tclap"])
def test_shipped_models_list_the_builtin_bank_events(model):
    from tclap.synth import EVENT_CLASSES, EVENT_PHRASES

    events = read_events(SHIPPED / model)
    assert [e["label"] for e in events] == list(EVENT_CLASSES)
    assert [e["phrase"] for e in events] == [EVENT_PHRASES[c] for c in EVENT_CLASSES]


def test_list_events_prints_one_phrase_per_line_without_out(capsys):
    from tclap.synth import EVENT_CLASSES, EVENT_PHRASES

    assert main(["generate", "--list-events"]) == 0
    assert capsys.readouterr().out.splitlines() == [EVENT_PHRASES[c] for c in EVENT_CLASSES]
    assert main(["generate", "--list-events", "--model", str(SHIPPED / "tiny-baseline")]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(EVENT_CLASSES)


def test_list_events_of_a_model_without_a_list_is_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model_index.json").write_text("{}")
    assert main(["generate", "--list-events", "--model", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("audioldm-cond: error: model ") and "events.json" in err[0]
    (tmp_path / "m" / "events.json").write_text('{"events": 3}')
    assert main(["generate", "--list-events", "--model", str(tmp_path / "m")]) == 2
    assert "is not an event list" in capsys.readouterr().err
    write_events(tmp_path / "m", [{"label": "door", "phrase": "a door slams"}], "test")
    assert main(["generate", "--list-events", "--model", str(tmp_path / "m")]) == 0
    assert capsys.readouterr().out == "a door slams\n"
    assert main(["generate", "a beep"]) == 2
    assert "--out is required" in capsys.readouterr().err


class _Loaded(Exception):
    pass


def test_generate_warns_about_unknown_events_before_loading(monkeypatch, tmp_path, capsys):
    import audioldm_cond.components as components

    def stop(*a, **k):
        print("LOADING", file=__import__("sys").stderr)
        raise _Loaded

    monkeypatch.setattr(components, "load_components", stop)
    with pytest.raises(_Loaded):
        main(["generate", "a dog barks followed by a man speaks", "a violin solo", "a beep followed by a knock",
              "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == "LOADING"
    warned = [ln for ln in err if ln.startswith("audioldm-cond: warning: ")]
    assert len(warned) == 2, err  # the known prompt is not warned about
    assert "prompt 1 on the command line: 'a man speaks' names no sound event model tiny-tclap" in warned[0]
    assert "prompt 2 on the command line ('a violin solo') names no sound event model tiny-tclap" in warned[1]
    assert "--list-events" in warned[1]


def test_mentions_and_matching_hand_cases():
    assert event_mentions("a beep followed by a knock") == ["a beep", "a knock"]
    assert event_mentions("after the siren, a knock and a bell") == ["the siren", "a knock", "a bell"]
    assert [stem(w) for w in ("barks", "barking", "clapping", "hummed", "buzzer", "rolling", "bells")] == [
        "bark", "bark", "clap", "hum", "buzz", "roll", "bell"]
    ev = builtin_events()
    assert check_prompt("hands clapping then a bell rings", ev) == (["hands clapping", "a bell rings"], [])
    assert check_prompt("people talking while rain falls", ev) == ([], ["people talking", "rain falls"])
    assert check_prompt("a low voice", ev) == ([], ["a low voice"])  # "low" of "a low hum" is no event
    assert json.loads((SHIPPED / "tiny-tclap" / "events.json").read_text())["source"].startswith("tclap.synth")
