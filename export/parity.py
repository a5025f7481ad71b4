"""Parity report: does every exported runtime compute what Keras computes?

Each runtime is run on the same batch and compared with the float32 Keras
inference copy. An output passes when every element satisfies
`|out - ref| <= atol + rtol * scale`, where `scale = max |ref|` over the batch
(the size of the output, so that logits of size 10 and probabilities are
judged alike), and, unless `min_top1` is `None`, when the arg-max (top-1
class) agrees on at least that fraction of the examples. A row also reports
the mean absolute error.

Default tolerances, measured on this project's models (second table of
`benchmarks/export_results.md`: ResNet-20 and VGG16-BN, BatchNorm statistics
set from data, 64 inputs):
    float32 runtimes (SavedModel, ONNX float32): atol = 1e-5, rtol = 1e-4,
        top-1 agreement 1.0. A folded graph sums the same products in
        another order; float32 resolves 1.2e-7 relative. Measured: SavedModel
        0 to 1.4e-6, ONNX Runtime 2.4e-6 (ResNet-20) and 2.4e-5 (VGG16-BN),
        at most 5.7e-6 of the output's size: the bound (about 4e-4 for logits
        of size 4) leaves a margin of 18 or more. What parity must catch sits
        far above it: float16 leaking into the graph (measured 5.7e-3 to
        8.5e-3 of the size on VGG16-BN), a wrong weight, training-mode
        BatchNorm or an augmentation layer left in serving (1e-2 and more).
        An arg-max flip within the bound needs two classes closer than 1e-4,
        which float32 noise alone makes very rare; pass `min_top1` below 1
        for very large real batches.
    float16 runtimes (the mixed-precision source model, ONNX float16):
        atol = 1e-2, rtol = 5e-2, top-1 agreement reported, not required.
        float16 resolves 9.8e-4 relative and rounds at every layer. Measured:
        2.7e-3 to 3.7e-3 (ResNet-20), 2.4e-2 to 3.5e-2 (VGG16-BN, up to
        8.5e-3 of the size): the bound leaves a margin of 6 or more and still
        catches wrong weights (differences of the output's own size); arg-max
        may flip where two classes are within float16 noise.
    int8 runtimes (LiteRT full-integer, ONNX static QDQ): top-1 agreement
        >= 0.99 and max |diff| <= 0.25 * scale (atol 0). int8 rounds every
        activation to 1/256 of its calibrated range, so element-wise
        closeness is not the claim; agreeing classes is. On the default check
        batch of 256 real examples, 99% allows 2 changed classes: a model
        whose int8 copy changes 0.1% of the classes passes with probability
        0.998 (0.3%: 0.957), one that changes 2% fails with probability
        0.888 (3%: 0.984), by the binomial law; with 100 examples a 2% model
        would pass 40% of the time, so fewer than 100 examples cannot support
        the claim. Measured max |diff| / scale: 0.09 (digits CNN, both int8
        files, 360 test images) and the Fashion-MNIST rows of
        `benchmarks/export_results.md`; the bound leaves a margin of 2.5 or
        more over the digits value, while the same model calibrated on the
        wrong inputs (raw 0-16 images, or inputs scaled by 0.1) measured
        0.85 to 1.5 of the scale, with top-1 agreement 0.09 to 0.29.
        Probabilities rounded to 1/256 carry no logit information, so int8
        rows have no logits row.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = [
    "Tolerance",
    "FLOAT32",
    "FLOAT16",
    "INT8",
    "ParityRow",
    "ParityReport",
    "compare",
    "is_probability",
    "logit_differences",
    "saturated_fraction",
    "run_parity",
]

_CHUNK = 256  # examples per call, to bound memory on large batches
_RESOLVED = 1e-30  # smaller probabilities carry no reliable logit (see logit_differences)
_GROSS = 1e-24  # a reference probability this large that a runtime drops below 1e-30 is an error


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """Pass criterion of a parity row.

    Attributes:
        atol: absolute tolerance.
        rtol: tolerance relative to the largest |Keras output| in the batch.
        min_top1: smallest top-1 agreement that passes, or `None` to report
            agreement without gating on it.
    """

    atol: float
    rtol: float
    min_top1: float | None = 1.0

    def __post_init__(self):
        for name in ("atol", "rtol"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(
                    f"`{name}` must be a number >= 0. Received: {name}={value!r}. The defaults "
                    "are atol=1e-5, rtol=1e-4 for float32 and atol=1e-2, rtol=5e-2 for float16."
                )
        if self.min_top1 is not None and not 0 <= self.min_top1 <= 1:
            raise ValueError(
                f"`min_top1` must be in [0, 1] or None. Received: min_top1={self.min_top1!r}"
            )


FLOAT32 = Tolerance(atol=1e-5, rtol=1e-4, min_top1=1.0)
FLOAT16 = Tolerance(atol=1e-2, rtol=5e-2, min_top1=None)
INT8 = Tolerance(atol=0.0, rtol=0.25, min_top1=0.99)  # see keras_wrs.export.quantized


@dataclasses.dataclass(frozen=True)
class ParityRow:
    """One runtime's agreement with the Keras reference on one output.

    `scale` is the output's size, `max |ref|` over the batch, which `rtol`
    multiplies.
    """

    runtime: str
    output: str
    max_abs: float
    mean_abs: float
    scale: float
    top1_agreement: float | None
    tolerance: Tolerance
    passed: bool

    def as_dict(self) -> dict:
        """The row as JSON-ready values."""
        row = dataclasses.asdict(self)
        row["tolerance"] = dataclasses.asdict(self.tolerance)
        return row


@dataclasses.dataclass(frozen=True)
class ParityReport:
    """Agreement of every exported runtime with the Keras float32 model.

    Attributes:
        reference: the runtime every row is compared with.
        batch: where the inputs came from (says so when they are random).
        real_batch: whether the inputs are real examples.
        n: number of examples.
        rows: one `ParityRow` per runtime and output.
        warnings: notes printed under the table (saturated outputs).
    """

    reference: str
    batch: str
    real_batch: bool
    n: int
    rows: tuple[ParityRow, ...]
    warnings: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        """Whether every row is within its tolerance."""
        return all(row.passed for row in self.rows)

    def failures(self) -> list[ParityRow]:
        """Rows outside their tolerance."""
        return [row for row in self.rows if not row.passed]

    def table(self) -> str:
        """The report as a plain-text table."""
        head = f"Parity vs {self.reference} on {self.batch} (n={self.n})"
        cols = (
            "runtime",
            "output",
            "max |diff|",
            "mean |diff|",
            "max |ref|",
            "top-1 agree",
            "atol/rtol",
            "ok",
        )
        body = [_cells(row) for row in self.rows]
        widths = [max(len(c) for c in col) for col in zip(cols, *body, strict=True)]
        lines = [head, "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
        lines += [
            "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) for cells in body
        ]
        return "\n".join([line.rstrip() for line in lines] + list(self.warnings))

    def as_dict(self) -> dict:
        """The report as JSON-ready values."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields["rows"] = [row.as_dict() for row in self.rows]
        fields["passed"] = self.passed
        return fields


def _cells(row: ParityRow) -> tuple[str, ...]:
    top1 = "n/a" if row.top1_agreement is None else f"{row.top1_agreement:.4f}"
    if row.tolerance.min_top1 is None and row.top1_agreement is not None:
        top1 += " (info)"
    tol = f"{row.tolerance.atol:g}/{row.tolerance.rtol:g}"
    verdict = "PASS" if row.passed else "FAIL"
    errors = (f"{row.max_abs:.3g}", f"{row.mean_abs:.3g}", f"{row.scale:.3g}")
    return (row.runtime, row.output, *errors, top1, tol, verdict)


def _top1(outputs: np.ndarray, reference: np.ndarray) -> float | None:
    if reference.ndim != 2 or reference.shape[1] < 2:
        return None
    return float(np.mean(np.argmax(outputs, axis=1) == np.argmax(reference, axis=1)))


def compare(runtime: str, output: str, outputs, reference, tolerance: Tolerance) -> ParityRow:
    """Compares one runtime's outputs with the reference.

    Args:
        runtime: the runtime's label.
        output: the output's name.
        outputs: the runtime's outputs.
        reference: the Keras float32 outputs.
        tolerance: the pass criterion.

    Returns:
        A `ParityRow`; non-finite outputs or a shape mismatch fail it.
    """
    outputs = np.asarray(outputs, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    scale = float(np.abs(reference).max()) if reference.size else 0.0
    if outputs.shape != reference.shape:
        return ParityRow(runtime, output, float("inf"), float("inf"), scale, None, tolerance, False)
    diff = np.abs(outputs - reference)
    top1 = _top1(outputs, reference)
    within = np.all(diff <= tolerance.atol + tolerance.rtol * scale)
    agrees = tolerance.min_top1 is None or top1 is None or top1 >= tolerance.min_top1
    passed = bool(np.all(np.isfinite(outputs)) and within and agrees)
    max_abs, mean_abs = float(diff.max()), float(diff.mean())
    return ParityRow(runtime, output, max_abs, mean_abs, scale, top1, tolerance, passed)


def _run_chunked(fn, inputs: np.ndarray) -> np.ndarray:
    parts = [np.asarray(fn(inputs[i : i + _CHUNK])) for i in range(0, len(inputs), _CHUNK)]
    return np.concatenate(parts, axis=0)


def is_probability(outputs: np.ndarray) -> bool:
    """Whether outputs look like softmax rows: in [0, 1], each summing to 1 (within 1e-3)."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if outputs.ndim != 2 or outputs.shape[1] < 2 or not np.all(np.isfinite(outputs)):
        return False
    in_range = outputs.min() >= 0 and outputs.max() <= 1
    return bool(in_range and np.allclose(outputs.sum(axis=1), 1.0, atol=1e-3))


def logit_differences(probs, top: np.ndarray) -> np.ndarray:
    """`log p_k - log p_top` per example: the softmax input up to its per-row constant.

    For `p = softmax(z)`, `log p_k - log p_t = z_k - z_t` exactly, so two
    runtimes whose probabilities round to the same saturated 0/1 values still
    differ here when their logits differ. Entries with `p` below 1e-30 carry
    no such information (near float32's underflow, 1.2e-38, runtimes' `exp`
    kernels lose relative precision or flush to zero) and are NaN.

    Args:
        probs: `(n, classes)` probabilities.
        top: `(n,)` the reference column to subtract (its arg-max).

    Returns:
        A float64 array of `probs`'s shape.
    """
    probs = np.asarray(probs, dtype=np.float64)
    with np.errstate(divide="ignore"):
        logs = np.where(probs >= _RESOLVED, np.log(np.maximum(probs, _RESOLVED)), np.nan)
    return logs - logs[np.arange(len(logs)), top][:, None]


def saturated_fraction(probs) -> float:
    """Fraction of examples whose largest probability is 1.0 in float32."""
    probs = np.asarray(probs, dtype=np.float32)
    return float(np.mean(probs.max(axis=1) >= np.float32(1.0)))


def compare_logits(runtime: str, output: str, outputs, reference, tolerance) -> ParityRow:
    """Compares the logit differences behind two probability outputs.

    Entries either side cannot resolve (NaN) are left out, except that a
    reference probability of 1e-24 or more that the runtime drops below
    1e-30 (a factor of a million) fails the row.
    """
    top = np.argmax(np.asarray(reference), axis=1)
    ref = logit_differences(reference, top)
    out = logit_differences(outputs, top)
    dropped = (np.asarray(reference) >= _GROSS) & np.isnan(out)
    known = ~np.isnan(ref) & ~np.isnan(out)
    out = np.where(dropped, np.inf, out)
    known |= dropped
    row = compare(
        runtime,
        f"{output} (logits)",
        np.where(known, out, 0.0),
        np.where(known, ref, 0.0),
        tolerance,
    )
    return dataclasses.replace(row, top1_agreement=None)


def _warnings(expected: np.ndarray) -> tuple[str, ...]:
    if not is_probability(expected):
        return ()
    found = [
        "Outputs are softmax probabilities: float runtimes are also compared on their "
        "logit differences log p_k - log p_top (rows marked '(logits)')."
    ]
    share = saturated_fraction(expected)
    if share > 0:
        found.append(
            f"WARNING: {share:.0%} of the reference outputs are saturated (largest "
            "probability rounds to 1.0 in float32); the probability rows alone would "
            "miss errors there, the logits rows do not."
        )
    unresolved = float(np.mean(np.asarray(expected) < _RESOLVED))
    if unresolved > 0:
        found.append(
            f"WARNING: {unresolved:.1%} of the reference probabilities are below 1e-30, "
            "where float32 exp kernels lose precision; those entries are left out of "
            "the logits rows."
        )
    return tuple(found)


def run_parity(reference, runtimes, batch, output: str, reference_label: str) -> ParityReport:
    """Runs the reference and every runtime on one batch and compares them.

    Args:
        reference: a function from a float32 array to the reference output.
        runtimes: `(label, function, Tolerance)` triples; a fourth element
            `False` skips the logits row (quantized runtimes, whose
            probabilities are rounded to 1/256).
        batch: a `keras_wrs.export.ParityBatch`.
        output: the output's name.
        reference_label: the reference's label.

    Returns:
        A `ParityReport`.
    """
    expected = _run_chunked(reference, batch.inputs)
    probabilities = is_probability(expected)
    rows = []
    for label, fn, tolerance, *logits in runtimes:
        outputs = _run_chunked(fn, batch.inputs)
        rows.append(compare(label, output, outputs, expected, tolerance))
        if probabilities and (not logits or logits[0]) and outputs.shape == expected.shape:
            rows.append(compare_logits(label, output, outputs, expected, tolerance))
    return ParityReport(
        reference_label,
        batch.description,
        batch.real,
        len(batch.inputs),
        tuple(rows),
        _warnings(expected),
    )
