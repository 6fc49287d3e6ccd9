"""Stopping a long-running command: SIGINT and SIGTERM interrupt it once, and its clean-up runs to its end."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import os, signal, sys, time
from infra.http import interrupt_once_on_signals

interrupt_once_on_signals()
try:
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C to the process group ...
    time.sleep(5)
except KeyboardInterrupt:
    os.kill(os.getpid(), signal.SIGTERM)  # ... and the script's trap sending SIGTERM, during the clean-up
    time.sleep(0.2)
    print("cleaned up")
"""


def test_a_second_signal_during_the_clean_up_does_not_cut_it_short(root):
    """The demo's Ctrl-C reaches `mlops up` as SIGINT and, from demo.sh's trap, SIGTERM: the second one used to
    raise again inside the clean-up, and click ended the command with "Aborted!", its nginx and predictors left."""
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=root, capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stdout.strip()) == (0, "cleaned up"), result.stderr
