"""SIGINT as an interactive Python process has it, whatever started the tests.

A shell without job control starts background commands (`cmd &`, `nohup`) with
SIGINT ignored, and Python then leaves it ignored instead of raising
KeyboardInterrupt. Tests of what Ctrl-C does set it as a terminal would
(the `interactive_sigint` fixture of tests/conftest.py, and this function).
"""

import signal

__all__ = ["sigint_as_in_a_terminal"]


def sigint_as_in_a_terminal():
    """`preexec_fn` for a child process: SIGINT at its default, so Python raises on it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
