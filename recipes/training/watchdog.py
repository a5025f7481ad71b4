"""Stop a process that waits too long: `python watchdog.py PID SECONDS MESSAGE`.

`cluster.multi_worker_strategy` starts it beside a worker that connects to
its peers, running this file as a script (importing the `keras_wrs` package
would load Keras first). It waits on its standard input: the worker closes it when the
connection is made (or when it dies), and the watchdog exits quietly. If
`SECONDS` pass first, it writes `MESSAGE` to standard error and stops the
worker: SIGTERM, then SIGKILL 3 s later (TensorFlow's runtime may hold SIGTERM
back while it waits). It is a process of its own because TensorFlow waits for
its peers in C++ holding the GIL, out of reach of the worker's own threads.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

__all__ = ["watch"]


def watch(parent, timeout, message, stream=None):
    """Wait `timeout` seconds for `stream` to close; else stop `parent`.

    Args:
        parent: the process id to stop.
        timeout: seconds to wait.
        message: what to write to standard error before stopping it.
        stream: the file whose end of input means "done" (standard input).

    Returns:
        True if the parent was stopped.
    """
    stream = sys.stdin if stream is None else stream
    ready, _, _ = select.select([stream], [], [], timeout)
    if ready:  # the parent finished connecting, or died
        return False
    sys.stderr.write(message)
    sys.stderr.flush()
    os.kill(parent, signal.SIGTERM)
    time.sleep(3)
    try:
        os.kill(parent, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return True


if __name__ == "__main__":
    watch(int(sys.argv[1]), float(sys.argv[2]), sys.argv[3])
