"""Ctrl-C during a run stops it, even where Python swallows the KeyboardInterrupt."""

import dataclasses
import signal

import keras
import pytest

from keras_wrs.recipes import config as cfg
from keras_wrs.recipes.runs import rundir
from keras_wrs.recipes.training.callbacks import CtrlC
from keras_wrs.recipes.training.train import train

pytestmark = [
    pytest.mark.usefixtures("interactive_sigint"),
    # The swallowed interrupt is reported through sys.unraisablehook, on purpose.
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

TINY = dataclasses.replace(
    cfg.smoke(cfg.RECIPES["digits"]), epochs=3, steps_per_epoch=4, dynamics=False, tensorboard=False
)


class _Swallowed:
    """SIGINT delivered inside `__del__`: Python prints the KeyboardInterrupt and drops it."""

    def __del__(self):
        signal.raise_signal(signal.SIGINT)


class _CtrlCInGarbageCollection(keras.callbacks.Callback):
    """Presses Ctrl-C once, at the first batch of `epoch`, where it is swallowed."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch
        self.current = None
        self.batches_after = 0
        self.pressed = False

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.pressed:
            self.batches_after += 1
        elif self.current == self.epoch:
            self.pressed = True
            _Swallowed()  # freed at once: its __del__ runs here and swallows the interrupt


def test_the_swallow_is_real_without_the_guard():
    # The premise: Python's own handler loses this Ctrl-C.
    _Swallowed()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_swallowed_ctrl_c_stops_the_run_and_it_resumes(tmp_path):
    press = _CtrlCInGarbageCollection(epoch=1)
    with pytest.raises(KeyboardInterrupt):
        train(TINY, tmp_path, verbose=0, callbacks=[press])
    assert press.pressed and press.batches_after == 0  # stopped at that very batch
    assert not (tmp_path / "summary.json").exists()
    assert rundir.history_rows(tmp_path / "history.csv") == 1  # the finished epoch is kept
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    summary = train(TINY, tmp_path, resume=True, verbose=0)
    assert summary["status"] == "finished" and summary["epochs"] == 3


def test_a_ctrl_c_after_the_last_batch_still_stops_at_the_end():
    guard = CtrlC()
    with pytest.raises(KeyboardInterrupt):
        with guard.installed():
            _Swallowed()
    assert guard.pressed


def test_an_ignored_or_custom_sigint_is_left_alone():
    seen = []
    for handler in (signal.SIG_IGN, lambda signum, frame: seen.append(signum)):
        signal.signal(signal.SIGINT, handler)
        guard = CtrlC()
        with guard.installed():
            assert signal.getsignal(signal.SIGINT) is handler
            signal.raise_signal(signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is handler and not guard.pressed
    assert seen == [signal.SIGINT]
