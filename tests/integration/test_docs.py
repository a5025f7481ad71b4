"""The README's and docs/'s examples run as written, and what they name exists.

Every fenced ```python and ```bash block of README.md and docs/*.md is run:
a Python block as a script in a fresh interpreter, a shell block with bash
(`set -e`), each in an empty directory of its own, with this interpreter's
`keras-wrs` first on the PATH. HTML comments on the lines just above a block
change that, and are counted:

- `<!-- not-tested: REASON -->`: never run (an install from the package index,
  several hosts, a GPU, hours of training); the reason is required.
- `<!-- slow-test: REASON -->`: run only with `pytest -m slow`.
- `<!-- test-with: ARGS -->`: ARGS are appended to every `keras-wrs train`,
  `compare` and `sweep` command of the block (the page says so in its text).
- `<!-- output -->` above a ```text block: that block is what the Python block
  before it prints (numbers and spacing aside).

Blocks that import TensorFlow or the export stack, and shell blocks, run on the
TensorFlow backend only.
"""

import ast
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest's own dependency has the same API
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNABLE = {"python": "python", "bash": "bash", "sh": "bash", "shell": "bash"}
MARKERS = ("not-tested", "slow-test", "test-with", "output")
# Raise these consciously: every block left out is an example nobody checks.
MAX_NOT_TESTED = 16
_TF_IMPORTS = (
    "tensorflow",
    "tensorflow_datasets",
    "tf2onnx",
    "onnx",
    "onnxruntime",
    "keras_wrs.export",
)
_BACKEND = os.environ.get("KERAS_BACKEND", "tensorflow")
_MARKER = re.compile(r"<!--\s*([a-z-]+)\s*(?::\s*(.*?))?\s*-->\s*$")
_FENCE = re.compile(r"^```\s*([A-Za-z0-9_+-]*)\s*$")


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    markers: dict = field(default_factory=dict)

    @property
    def name(self):
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def kind(self):
        return RUNNABLE.get(self.language)


def _blocks(page):
    """The fenced blocks of a page, each with the markers on the lines just above it."""
    lines = page.read_text().splitlines()
    blocks, markers, i = [], {}, 0
    while i < len(lines):
        marker, fence = _MARKER.match(lines[i].strip()), _FENCE.match(lines[i])
        if marker:
            markers[marker.group(1)] = (marker.group(2) or "").strip()
        elif fence:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            blocks.append(
                Block(page, i + 1, fence.group(1), "\n".join(lines[i + 1 : end]) + "\n", markers)
            )
            markers, i = {}, end
        elif markers:
            raise AssertionError(
                f"{page.name}:{i + 1}: a marker comment must sit just above a block"
            )
        i += 1
    return blocks


ALL_BLOCKS = [b for page in PAGES for b in _blocks(page)]
README_EXAMPLE = next(b for b in ALL_BLOCKS if b.page.name == "README.md" and b.kind == "python")


def _params(slow):
    chosen = [
        b
        for b in ALL_BLOCKS
        if b.kind and "not-tested" not in b.markers and ("slow-test" in b.markers) == slow
    ]
    return [pytest.param(b, id=b.name) for b in chosen]


def _needs_tensorflow(block):
    if block.kind == "bash":
        return True
    names = []
    for node in ast.walk(ast.parse(block.code)):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append(node.module or "")
    return any(n == m or n.startswith(m + ".") for n in names for m in _TF_IMPORTS)


def _without_comment(line):
    """The line up to a shell comment (a `#` outside quotes, after a space)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def _shell_script(block):
    """The block as a bash script, with `test-with` arguments appended."""
    code = block.code.replace("\\\n", " ")
    extra = block.markers.get("test-with")
    if extra:
        code = "\n".join(
            f"{_without_comment(line)} {extra}"
            if re.match(r"\s*keras-wrs (train|compare|sweep)\b", line)
            else line
            for line in code.splitlines()
        )
    return "set -euo pipefail\n" + code


def _run(block, cwd, timeout):
    if _needs_tensorflow(block) and _BACKEND != "tensorflow":
        pytest.skip(f"TensorFlow backend only (KERAS_BACKEND={_BACKEND})")
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    if block.kind == "python":
        (cwd / "example.py").write_text(block.code)
        command = [sys.executable, "example.py"]
    else:
        command = ["bash", "-c", _shell_script(block)]
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, (
        f"{block.name} exited with {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    )
    return done


def _normalized(text):
    """Text with every number replaced by `#` and runs of spaces by one."""
    text = re.sub(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", "#", text)
    return "\n".join(" ".join(line.split()) for line in text.strip().splitlines())


def _printed_output(block):
    """The ```text block marked `<!-- output -->` after `block` on its page, if any."""
    after = [b for b in ALL_BLOCKS if b.page == block.page and b.line > block.line]
    if after and after[0].language == "text" and "output" in after[0].markers:
        return after[0].code
    return None


@pytest.mark.parametrize("block", _params(slow=False))
def test_example_runs(block, tmp_path):
    done = _run(block, tmp_path, timeout=900)
    expected = _printed_output(block)
    if expected is not None:
        assert _normalized(expected) in _normalized(done.stdout), done.stdout
    if block is README_EXAMPLE:
        # What the README says of it: the kernels it rescales, the norms at
        # their target after training, and its plots on disk.
        assert "rescales 2 kernel(s)" in done.stdout
        assert "'norm_mean/conv2d': 1.0" in done.stdout
        assert (tmp_path / "plots" / "norms.png").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("block", _params(slow=True))
def test_slow_example_runs(block, tmp_path):
    _run(block, tmp_path, timeout=3600)


def test_the_readme_example_is_a_complete_script():
    """No `...` to fill in, and it is run by `test_example_runs` (not left out)."""
    assert "..." not in README_EXAMPLE.code and "import keras_wrs" in README_EXAMPLE.code
    assert not README_EXAMPLE.markers
    assert README_EXAMPLE in [p.values[0] for p in _params(slow=False)]


def test_markers_are_known_and_left_out_blocks_say_why():
    counts = {m: 0 for m in MARKERS}
    for block in ALL_BLOCKS:
        for name, value in block.markers.items():
            assert name in MARKERS, f"{block.name}: unknown marker {name!r}; known: {MARKERS}"
            counts[name] += 1
            if name in ("not-tested", "slow-test", "test-with"):
                assert value, f"{block.name}: `{name}` needs a value"
            if name != "output":
                assert block.kind, f"{block.name}: `{name}` on a {block.language!r} block"
        if "output" in block.markers:
            assert block.language == "text", f"{block.name}: `output` marks a ```text block"
    assert counts["not-tested"] <= MAX_NOT_TESTED, counts
    runnable = sum(1 for b in ALL_BLOCKS if b.kind)
    assert runnable - counts["not-tested"] >= 8, (runnable, counts)


def test_each_output_block_follows_a_python_block():
    for block in ALL_BLOCKS:
        if "output" in block.markers:
            before = [b for b in ALL_BLOCKS if b.page == block.page and b.line < block.line]
            assert before and before[-1].kind == "python", block.name


def test_shell_comments_and_test_arguments():
    """The `test-with` rewrite puts its arguments before a comment, not inside it."""
    block = Block(
        ROOT / "README.md",
        1,
        "bash",
        "keras-wrs train x   # a '#' comment\nkeras-wrs report a \\\n  --out b\n",
        {"test-with": "--smoke"},
    )
    script = _shell_script(block)
    assert "keras-wrs train x --smoke\n" in script
    assert "keras-wrs report a    --out b" in script
    assert _without_comment('echo "a # b" # c') == 'echo "a # b"'


def test_recipes_named_in_the_docs_exist():
    from keras_wrs.recipes.config import RECIPES

    text = "\n".join(p.read_text() for p in PAGES)
    named = set(re.findall(r"keras-wrs (?:train|compare|sweep) ([a-z0-9_]+)", text))
    assert named and named <= set(RECIPES), named - set(RECIPES)


def _resolves(dotted):
    import importlib

    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


@pytest.mark.tensorflow_only
def test_module_paths_in_the_docs_resolve():
    """Every `keras_wrs.x.y` the docs name imports (module) or exists (attribute)."""
    text = "\n".join(p.read_text() for p in PAGES)
    names = set(re.findall(r"\bkeras_wrs(?:\.[A-Za-z_][A-Za-z0-9_]*)+", text))
    assert len(names) > 10
    missing = sorted(n for n in names if not _resolves(n))
    assert not missing, missing


def test_source_tree_paths_in_the_docs_exist():
    text = "\n".join(p.read_text() for p in PAGES)
    paths = set(
        re.findall(
            r"(?<![\w/.-])((?:docs|benchmarks|recipes|tests|keras_wrs|export|\.ci)/[\w./-]*[\w/])",
            text,
        )
    )
    assert len(paths) > 10
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, missing


def _readme_commands():
    block = next(b for b in ALL_BLOCKS if b.page.name == "README.md" and b.kind == "bash")
    return [line for line in block.code.splitlines() if line.strip()]


def test_ci_runs_the_readme_test_command():
    install_and_run, install_and_test = _readme_commands()[:2]
    assert "keras-wrs train" in install_and_run
    assert install_and_test.endswith("-m pytest"), install_and_test
    ci = (ROOT / ".ci" / "run").read_text().replace("\\\n", " ")
    assert install_and_test in " ".join(ci.split("'")), (
        "the README's test command is not in .ci/run"
    )


def _extras(install_line):
    """The extras a `pip install -e ".[a,b]"` or `'keras-wrs[a,b]'` line asks for, expanded."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    optional = pyproject["project"]["optional-dependencies"]
    wanted = set()
    for group in re.findall(r"(?:\.|keras-wrs)\[([a-z0-9_,-]+)\]", install_line):
        wanted |= set(group.split(","))
    for name in list(wanted):  # one level of self-reference, e.g. test -> cpu,recipes,export
        for requirement in optional.get(name, []):
            inner = re.match(r"keras-wrs\[([a-z0-9_,-]+)\]", requirement)
            wanted |= set(inner.group(1).split(",")) if inner else set()
    return wanted


# What each command needs: every extra of the first set, and one of the second
# (a Keras backend; `export` needs TensorFlow itself).
_BACKENDS = {"cpu", "gpu", "tf", "jax", "torch"}
_TENSORFLOW = {"cpu", "gpu", "tf"}
_NEEDS = {
    "train": ({"recipes"}, _BACKENDS),
    "compare": ({"recipes"}, _BACKENDS),
    "sweep": ({"recipes"}, _BACKENDS),
    "report": ({"recipes"}, _BACKENDS),
    "export": ({"export"}, _TENSORFLOW),
}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_each_command_follows_an_install_line_with_its_extras(page):
    """A `keras-wrs COMMAND` shown after an install line works after the nearest one."""
    text = page.read_text()
    installs = [(m.start(), _extras(m.group(0))) for m in re.finditer(r"pip install [^\n`]*", text)]
    for command in re.finditer(r"^\s*keras-wrs (\w+)", text, flags=re.M):
        before = [extras for start, extras in installs if start < command.start()]
        if command.group(1) in _NEEDS and before:
            every, one_of = _NEEDS[command.group(1)]
            assert every <= before[-1] and one_of & before[-1], (
                f"{page.name}: `keras-wrs {command.group(1)}` needs the extras {sorted(every)} and "
                f"one of {sorted(one_of)}; the install line above it gives {sorted(before[-1])}"
            )


def test_install_extras_are_read_from_pyproject():
    """The install-line check expands self-references, so that it can fail."""
    assert _extras('pip install -e ".[recipes]"') == {"recipes"}
    assert {"recipes", "export"} <= _extras('pip install -e ".[test]"')
    assert not _NEEDS["export"][1] & _extras('pip install -e ".[jax,recipes,export]"')


def test_readme_is_short_and_renders_on_a_package_index():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    relative = re.findall(r"\]\((?!https?://|#)([^)]*)\)", text)
    assert not relative, f"relative links or images do not render on a package index: {relative}"
