"""The watchdog process: quiet when its input closes, stops its parent after the timeout."""

import signal
import subprocess
import sys
import time

from keras_wrs.recipes.training import watchdog


def _start(pid, timeout, message):
    return subprocess.Popen(
        [sys.executable, watchdog.__file__, str(pid), str(timeout), message],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_closed_input_means_done_and_nothing_is_stopped():
    target = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        watch = _start(target.pid, 30, "never\n")
        watch.stdin.close()
        assert watch.wait(timeout=30) == 0 and watch.stderr.read() == ""
        assert target.poll() is None
    finally:
        target.kill()
        target.wait()


def test_timeout_prints_the_message_and_stops_the_parent():
    target = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    start = time.monotonic()
    watch = _start(target.pid, 0.5, "peers unreachable\n")
    try:
        assert target.wait(timeout=30) == -signal.SIGTERM
        assert time.monotonic() - start < 25
        watch.wait(timeout=30)
        assert watch.stderr.read() == "peers unreachable\n"
    finally:
        watch.stdin.close()
        target.kill()
        target.wait()
