"""Optimizer step time on the PyTorch backend: Keras's fused path vs the generic one.

On PyTorch, Keras replaces its exact optimizer classes by subclasses that
update every variable at once with `torch._foreach_*` kernels; a plain
subclass of a Keras optimizer runs the generic per-variable `update_step`.
The keras-wrs twins derive from the fused classes. This times `apply` for:

- keras: Keras's own class (fused);
- generic: a plain subclass of it (what the twins ran before);
- wrs off: the keras-wrs twin with `rescale=[]` (fused);
- wrs: the twin rescaling every kernel (fused step, then the rescale).

Usage:
    KERAS_BACKEND=torch python benchmarks/bench_torch_optimizers.py [--out FILE] [--device cpu|cuda]

The variable set is the kernel/bias/BN list of a ResNet-20 (0.27M parameters,
65 variables), where per-variable overhead dominates, like most CNNs.
"""

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras
import numpy as np

from keras_wrs import optimizers as wo


def resnet20_shapes():
    shapes = [(3, 3, 3, 16), (16,), (16,)]
    for width, blocks in ((16, 3), (32, 3), (64, 3)):
        for b in range(blocks):
            cin = width if b or width == 16 else width // 2
            shapes += [
                (3, 3, cin, width),
                (width,),
                (width,),
                (3, 3, width, width),
                (width,),
                (width,),
            ]
    return shapes + [(64, 10), (10,)]


def time_apply(opt, variables, grads, steps, repeats):
    opt.apply(grads, variables)  # build
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            opt.apply(grads, variables)
        if keras.backend.backend() == "torch":
            import torch

            if torch.cuda.is_available():
                torch.cuda.synchronize()
        runs.append((time.perf_counter() - start) / steps * 1e3)
    return runs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--out", default=os.path.join(os.path.dirname(__file__), "torch_optimizers_results.md")
    )
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    assert keras.backend.backend() == "torch", "run with KERAS_BACKEND=torch"
    import torch

    # One intra-op thread: with several, OpenMP barriers on a loaded CPU cost
    # more than the updates of these small tensors.
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    shapes = resnet20_shapes()
    rows = []
    for name in ("SGD", "Adam"):
        keras_cls = getattr(keras.optimizers, name)
        generic_cls = type("Generic" + name, (keras_cls,), {})
        kw = {"momentum": 0.9} if name == "SGD" else {}
        results = {}
        for label, make in (
            ("keras (fused)", lambda keras_cls=keras_cls, kw=kw: keras_cls(0.01, **kw)),
            ("generic subclass", lambda generic_cls=generic_cls, kw=kw: generic_cls(0.01, **kw)),
            (
                "keras-wrs, rescale=[]",
                lambda name=name, kw=kw: getattr(wo, name)(0.01, rescale=[], **kw),
            ),
            ("keras-wrs, kernels rescaled", None),
        ):
            variables = [keras.Variable(rng.normal(size=s).astype("float32")) for s in shapes]
            grads = [
                keras.ops.convert_to_tensor(rng.normal(size=s).astype("float32")) for s in shapes
            ]
            if make is None:
                kernels = [v for v in variables if len(v.shape) > 1]
                opt = getattr(wo, name)(0.01, rescale=kernels, **kw)
            else:
                opt = make()
            results[label] = time_apply(opt, variables, grads, args.steps, args.repeats)
        base = statistics.median(results["keras (fused)"])
        for label, runs in results.items():
            med = statistics.median(runs)
            rows.append(
                f"| {name} | {label} | {med:.3f} | {med / base:.2f}x | {', '.join(f'{r:.3f}' for r in runs)} |"
            )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    lines = [
        "# Optimizer step time on the PyTorch backend",
        "",
        f"Command: `KERAS_BACKEND=torch python benchmarks/bench_torch_optimizers.py` "
        f"({args.steps} steps x {args.repeats} repeats).",
        f"Hardware: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores (1 torch thread), device {device}; "
        f"torch {torch.__version__}, keras {keras.__version__}.",
        "Variables: the 65 kernels, biases and BatchNorm vectors of a ResNet-20 (0.27M parameters).",
        "",
        "| optimizer | class | ms per step (median) | vs keras | each repeat (ms) |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ]
    with open(args.out + ".tmp", "w") as f:
        f.write("\n".join(lines))
    os.replace(args.out + ".tmp", args.out)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
