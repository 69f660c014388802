"""Third-party progress bars are off inside a command unless ``--verbose``, and put back afterwards; importing
the commands changes nothing (issue 21: every command printed transformers' "Loading weights 137/137")."""

from __future__ import annotations

import subprocess
import sys

import transformers.utils.logging as tlog
from huggingface_hub import utils as hub

from basekit.quiet import quiet_third_party


def test_block_turns_bars_off_and_restores_them():
    assert tlog.is_progress_bar_enabled() and not hub.are_progress_bars_disabled()
    with quiet_third_party():
        assert not tlog.is_progress_bar_enabled() and hub.are_progress_bars_disabled()
    assert tlog.is_progress_bar_enabled() and not hub.are_progress_bars_disabled()
    with quiet_third_party(verbose=True):
        assert tlog.is_progress_bar_enabled()
    tlog.disable_progress_bar()  # a caller that had them off keeps them off
    try:
        with quiet_third_party():
            assert not tlog.is_progress_bar_enabled()
        assert not tlog.is_progress_bar_enabled()
    finally:
        tlog.enable_progress_bar()


def test_importing_the_commands_changes_no_global_state():
    code = ("import audioldm_cond.cli, eval_gen.cli, conductor.cli, basekit.quiet, tclap.commands.evaluate, "
            "tclap.commands.export; import transformers.utils.logging as t; from huggingface_hub import utils as h; "
            "print(t.is_progress_bar_enabled(), h.are_progress_bars_disabled())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "False"]


def test_commands_hide_loading_bars_unless_verbose(tmp_path, capsys):
    from conductor.cli import main

    assert main(["export", "--model", "tiny-tclap", "--out", str(tmp_path / "a")]) == 0
    assert "Loading weights" not in capsys.readouterr().err
    assert tlog.is_progress_bar_enabled()  # restored after the command
    assert main(["export", "--model", "tiny-tclap", "--out", str(tmp_path / "b"), "--verbose"]) == 0
    assert "Loading weights" in capsys.readouterr().err
