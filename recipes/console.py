"""What the `keras-wrs` command prints and returns around its commands.

TensorFlow's log lines kept off the console, the exit status and one-line
message of each known error, and the line printed after Ctrl-C with the exact
command that resumes the run. Nothing here imports Keras or TensorFlow: the
error classes are looked up only in modules already imported (an error
cannot come from a module that was never loaded).
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import sys
import tempfile

__all__ = [
    "UsageError",
    "quiet_tensorflow",
    "import_backend",
    "resume_command",
    "interrupted",
    "exit_at_once",
    "failed",
]

# Errors that mean "bad input or state, nothing trained": (module, class name).
_USAGE_ERRORS = (
    ("keras_wrs.recipes.runs.rundir", "RunDirError"),
    ("keras_wrs.recipes.data.sources", "DatasetUnavailableError"),
    ("keras_wrs.recipes.training.train", "ConfigMismatchError"),
    ("keras_wrs.recipes.training.train", "RunSetupError"),
    ("keras_wrs.recipes.runs.backup", "BackupError"),
    ("keras_wrs.recipes.config.extras", "MissingExtraError"),
    ("keras_wrs.recipes.data.fashion_mnist", "FashionMnistError"),
    ("keras_wrs.recipes.runs.lock", "RunDirBusyError"),
    ("keras_wrs.recipes.runs.validation", "RunRecordError"),
)


class UsageError(Exception):
    """Bad input found after parsing (names, numbers, directories)."""


def _loaded(module, name):
    return getattr(sys.modules[module], name, None) if module in sys.modules else None


def _usage_error_classes():
    found = [_loaded(module, name) for module, name in _USAGE_ERRORS]
    return (UsageError, FileNotFoundError, *[c for c in found if c is not None])


def quiet_tensorflow(verbose=False):
    """Keep TensorFlow's C++ and absl log lines off the console.

    Call before TensorFlow is imported. A TF_CPP_MIN_LOG_LEVEL set by the
    caller is kept.

    Args:
        verbose: leave TensorFlow's logging as it is.
    """
    global _silent_loading
    if verbose:
        return
    _silent_loading = "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    # 3: errors too. TensorFlow's C++ errors that matter reach Python as
    # exceptions; the others are noise such as a GPU wheel's "failed call to
    # cuInit" on a machine without a GPU.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        from absl import logging as absl_logging
    except ImportError:
        return
    absl_logging.set_verbosity(absl_logging.ERROR)


# Whether `import_backend` keeps the backend's start-up lines off the console.
_silent_loading = False
# What TensorFlow's C++ libraries write while they load: glog-style lines
# (`I0000 00:00:17.5  123 port.cc:153] ...`), absl's notice, the CPU note.
_LOAD_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\)"
    r"|[IWEF]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\]"
    r"|To enable the following instructions:)"
)


def import_backend():
    """Import Keras, and with it its backend, with the libraries' start-up lines off.

    The full `tensorflow` wheel writes lines to the process's standard error
    while its C++ libraries load, before any log setting applies. After
    `quiet_tensorflow` (and unless the caller set TF_CPP_MIN_LOG_LEVEL), the
    import writes its standard error to a temporary file, and everything in
    it but those lines is then written to the real one.
    """
    if not _silent_loading or "keras" in sys.modules:
        import keras

        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import keras  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(x for x in lines if not _LOAD_NOISE.match(x)))
            sys.stderr.flush()


def loading_silenced():
    """Whether `import_backend` keeps the start-up lines off the console (`quiet_tensorflow`)."""
    return _silent_loading


def start_worker(silenced):
    """Start a process that a command spawned (a sweep's cell) as quiet as the command.

    A spawned process inherits TF_CPP_MIN_LOG_LEVEL from its parent, so it
    cannot tell a level the user set from the one `quiet_tensorflow` set:
    the parent says, with `loading_silenced()`.
    """
    global _silent_loading
    if not silenced:
        return
    quiet_tensorflow()
    _silent_loading = True
    import_backend()


def resume_command(argv, out):
    """The command line that continues an interrupted run in `out`.

    Args:
        argv: the interrupted command's arguments (without the program name).
        out: its run directory.

    Returns:
        A shell-quoted `keras-wrs ... --out OUT --resume` line.
    """
    words = [w for w in argv if w != "--overwrite"]
    if not any(w == "--out" or w.startswith("--out=") for w in words):
        words += ["--out", str(out)]
    if "--resume" not in words:
        words.append("--resume")
    return shlex.join(["keras-wrs", *words])


def interrupted(command, argv, out):
    """Print the one line after Ctrl-C; returns the exit status 130.

    Args:
        command: the sub-command's name.
        argv: the command's arguments (for the resume line).
        out: the run directory, or None if no run had started.
    """
    if out is None:
        print(f"\nkeras-wrs {command}: interrupted before any run started.", file=sys.stderr)
    elif not os.path.isdir(out):
        print(
            f"\nkeras-wrs {command}: interrupted before training began; nothing was "
            f"kept (no {out}).",
            file=sys.stderr,
        )
    else:
        print(
            f"\nkeras-wrs {command}: interrupted; the run directory {out} "
            f"keeps every finished epoch. Continue with: "
            f"{resume_command(argv, out)}",
            file=sys.stderr,
        )
    return 130


def exit_at_once(status):
    """Flush the console and end the process with `status`, skipping interpreter teardown.

    After Ctrl-C in `fit`, the teardown can deadlock: freeing the input
    pipeline's iterator (a `tf.data` prefetch over Keras's Python data
    adapter) waits for its worker thread, which waits for the interpreter
    lock that the freeing thread holds. Seen as a `keras-wrs train` that
    printed its resume line and then never exited. Everything a run keeps is
    on disk by then (backups are written, synced and renamed; the run lock
    is the kernel's, released with the process).
    """
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(status)


def _kept(argv, out):
    """What a failure after the start leaves, and the command that continues it."""
    if out is None or not os.path.isdir(out):
        return " Nothing was kept."
    return (
        f" The run directory {out} keeps every finished epoch; once the cause "
        f"is fixed, continue with: {resume_command(argv, out)}"
    )


def failed(command, err, argv=(), out=None):
    """Exit status of `err` with its message printed: 1 diverged or failed, 2 bad input.

    Args:
        command: the sub-command's name.
        err: the exception.
        argv: the command's arguments (for the resume line).
        out: the run directory, or None if no run had started.

    Raises:
        Exception: `err` itself when it is not a known error (a bug shows its
            traceback).
    """
    diverged = _loaded("keras_wrs.recipes.training.train", "DivergedError")
    if diverged is not None and isinstance(err, diverged):
        print(f"keras-wrs {command}: {err}", file=sys.stderr)
        return 1
    if isinstance(err, _usage_error_classes()) or (
        isinstance(err, ImportError) and "pip install" in str(err)
    ):
        print(f"keras-wrs {command}: error: {err}", file=sys.stderr)
        return 2
    if isinstance(err, OSError):  # a full disk, a file system gone read-only, ...
        print(f"keras-wrs {command}: error: {err}.{_kept(argv, out)}", file=sys.stderr)
        return 1
    raise err
