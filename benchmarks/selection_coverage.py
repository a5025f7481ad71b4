"""Which kernels keras-wrs rescales on the models people train, against a brute-force check.

For each KerasHub task model and `keras.applications` model of
`tests/support/zoo.py` (constructor arguments of their presets, random
weights, small inputs), compares `keras_wrs.select_scale_invariant` with the
brute-force twin of the tests (one forward pass per kernel: its filters scaled
by 0.5-2, training-mode outputs compared at perturbed weights, BatchNorm
epsilon set to 1e-20; invariant when the relative change is at most 2e-3).
A kernel the model's outputs do not depend on counts as invariant for the
twin and is left out by the selection with that reason ("unused").

Columns: kernels (Conv/Dense-like), selected, invariant (twin), unused, false
positives (selected, not invariant), false negatives (invariant and used, not
selected), the share of trainable parameters in selected kernels, and the
time of the selection.

Usage:
    python benchmarks/selection_coverage.py                       # prints the table
    python benchmarks/selection_coverage.py --write benchmarks/selection_coverage_results.md
    python benchmarks/selection_coverage.py --models MobileNet "ResNet18 v1"
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # tests/support/zoo.py

import keras
from support import zoo
from support.invariance import RTOL, brute_force_changes, random_batch

import keras_wrs
from keras_wrs.optimizers import parameter_coverage
from keras_wrs.selection import candidate_kernels, excluded_kernels

HEADER = (
    "model",
    "kernels",
    "selected",
    "invariant",
    "unused",
    "false +",
    "false -",
    "coverage",
    "selection s",
)


def measure(name) -> dict:
    model = zoo.build(name)
    size = (zoo.HUB.get(name) or zoo.APPLICATIONS[name])[0]
    start = time.perf_counter()
    try:
        selected = keras_wrs.select_scale_invariant(model)
    except ValueError:
        selected = []
    seconds = time.perf_counter() - start
    changes = brute_force_changes(model, random_batch(model, 8, size))
    invariant = {p for p, rel in changes.items() if rel <= RTOL}
    unused = {s.path for s in excluded_kernels(model) if "outputs do not depend on it" in s.reason}
    paths = {s.path for s in selected}
    checks = {r.path: r for r in keras_wrs.verify_scale_invariance(model, variables="all").results}
    disagree = sorted((paths - invariant) | (invariant - unused - paths))
    details = [
        f"{p}: brute-force change {changes[p]:.2e}; selection: {checks[p].verdict}, "
        f"largest |cos(w_k, dL/dw_k)| {checks[p].cosine:.2e}"
        for p in disagree
    ]
    return {
        "details": details,
        "model": name,
        "kernels": len(candidate_kernels(model)),
        "selected": len(paths),
        "invariant": len(invariant),
        "unused": len(unused),
        "false +": sorted(paths - invariant),
        "false -": sorted(invariant - unused - paths),
        "coverage": parameter_coverage(model, selected)["param_fraction"],
        "selection s": seconds,
    }


def row(r) -> list[str]:
    return [
        r["model"],
        str(r["kernels"]),
        str(r["selected"]),
        str(r["invariant"]),
        str(r["unused"]),
        str(len(r["false +"])),
        str(len(r["false -"])),
        f"{100 * r['coverage']:.1f}%",
        f"{r['selection s']:.0f}",
    ]


def table(rows) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row(r)) + " |" for r in rows]
    details = [f"- {r['model']}: {line}" for r in rows for line in r["details"]]
    if details:
        lines += [
            "",
            "Kernels where the selection and the brute-force check disagree:",
            "",
            *details,
        ]
    return "\n".join(lines)


def environment() -> str:
    import keras_hub

    return (
        f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}; "
        f"Python {platform.python_version()}, Keras {keras.__version__} "
        f"({keras.backend.backend()} backend), keras-hub {keras_hub.__version__}"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(zoo.HUB) + list(zoo.APPLICATIONS))
    parser.add_argument("--write", help="write the results as markdown to this file")
    args = parser.parse_args(argv)
    rows = []
    for name in args.models:
        rows.append(measure(name))
        print("| " + " | ".join(row(rows[-1])) + " |", flush=True)
        for line in rows[-1]["details"]:
            print(f"    {line}", flush=True)
    text = table(rows)
    print(text)
    if args.write:
        command = "python benchmarks/selection_coverage.py --write " + args.write
        about = "\n\n".join(__doc__.split("\n\n")[1:3])
        Path(args.write).write_text(
            "# Selection coverage on KerasHub and keras.applications models\n\n"
            f"Command: `{command}`\n\nMachine: {environment()}.\n\n{about}\n\n{text}\n"
        )


if __name__ == "__main__":
    main()
