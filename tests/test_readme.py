"""The README's Python example runs as written, and its commands name real things."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_first_python_example_is_a_complete_script(tmp_path):
    """Run it in a fresh interpreter, in an empty directory: no `...`, no
    undefined names, and it ends with its plots on disk."""
    script = _python_blocks()[0]
    assert "..." not in script and "import keras_wrs" in script
    (tmp_path / "example.py").write_text(script)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rescales 2 kernel(s)" in done.stdout
    assert "'norm_mean/conv2d': 1.0" in done.stdout
    assert (tmp_path / "plots" / "norms.png").is_file()


def test_recipes_named_in_the_readme_exist():
    from keras_wrs.recipes.config import RECIPES

    named = set(re.findall(r"keras-wrs (?:train|compare|sweep) ([a-z0-9_]+)", README.read_text()))
    assert named and named <= set(RECIPES), named - set(RECIPES)
