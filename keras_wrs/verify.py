"""Check numerically that kernels are scale-invariant, so users can trust a selection."""

from __future__ import annotations

import dataclasses
import math

from keras_wrs._invariance import COSINE_TOL, RTOL, check_kernels
from keras_wrs.selection import Selection, candidate_kernels, select_scale_invariant

__all__ = ["InvarianceReport", "InvarianceResult", "verify_scale_invariance"]

# What each verdict of the test means, for the report.
VERDICTS = {
    "invariant": "yes",
    "varies": "NO: a filter's radial derivative is not zero",
    "changed": "NO: scaling the filters changed the outputs",
    "no_gradient": "NO: the outputs do not depend on it (no gradient)",
    "not_trainable": "NO: not trainable",
}


@dataclasses.dataclass(frozen=True)
class InvarianceResult:
    """One kernel: the test's verdict and its two measurements.

    Attributes:
        path: the kernel's `variable.path`.
        relative_change: largest relative change of the outputs when the
            filters of this kernel (with the other kernels confirmed with it)
            were scaled by factors in [0.5, 2]; NaN where the gradient test
            already decided.
        invariant: whether every filter is scale-invariant under `fit`.
        cosine: largest |cos(w_k, dL/dw_k)| over filters and test points.
        verdict: one of `VERDICTS`.
    """

    path: str
    relative_change: float
    invariant: bool
    cosine: float = math.nan
    verdict: str = ""


@dataclasses.dataclass(frozen=True)
class InvarianceReport:
    """Results per kernel; `ok` when every kernel checked was invariant."""

    results: tuple
    rtol: float
    cosine_tol: float = COSINE_TOL

    @property
    def failures(self) -> list[InvarianceResult]:
        return [r for r in self.results if not r.invariant]

    @property
    def ok(self) -> bool:
        return not self.failures

    def __str__(self) -> str:
        w = max([len("path")] + [len(r.path) for r in self.results])
        lines = [
            f"{'path'.ljust(w)}  |cos(w, grad)|  relative change  scale-invariant "
            f"(cosine <= {self.cosine_tol:g}, change <= {self.rtol:g})"
        ]
        lines += [
            f"{r.path.ljust(w)}  {r.cosine:13.2e}  {_change(r.relative_change):>15}  "
            f"{VERDICTS.get(r.verdict, 'yes' if r.invariant else 'NO')}"
            for r in self.results
        ]
        return "\n".join(lines)


def _change(value):
    return "-" if math.isnan(value) else f"{value:.3e}"


def _as_selections(model, variables):
    if variables is None:
        return select_scale_invariant(model)
    if isinstance(variables, str) and variables == "all":
        return candidate_kernels(model)
    if isinstance(variables, str):
        raise ValueError(
            f'`variables` must be None, "all" or a list of kernels. Received: '
            f"variables={variables!r}"
        )
    return [v if isinstance(v, Selection) else Selection(v, v.path, (-1,)) for v in variables]


def verify_scale_invariance(
    model,
    x=None,
    variables=None,
    rtol: float = RTOL,
    ignore_bn_epsilon: bool = True,
    seed: int = 0,
) -> InvarianceReport:
    """Test kernels for per-filter scale invariance of the training-mode outputs.

    Two tests, a few passes in all, whatever the number of kernels: the
    radial derivative `<w_k, dL/dw_k>` of random losses (one backward pass
    per test point tests every filter of every kernel; it is zero for an
    invariant filter at any weights), then one forward pass with the filters
    of every kernel that passed scaled by random factors in [0.5, 2] (a
    failing group is bisected). Both run at weights away from the model's
    (biases and BatchNorm parameters perturbed), through
    `model.stateless_call(..., training=True)`: the model's variables are
    not changed, BatchNorm layers that `fit` runs in inference mode
    (`trainable=False`) run so here, and stochastic layers draw the same
    masks in every pass. Outputs may be a tensor or any nest of them (dict,
    list); the float ones are compared.

    Args:
        model: a built Keras model.
        x: a batch of inputs (a few dozen examples are enough), or None for
            random inputs shaped like the model's inputs.
        variables: kernels to check: None (the automatic selection), "all"
            (every Conv/Dense kernel: shows which ones are invariant), or a
            list of variables / `Selection`s.
        rtol: largest relative change of the outputs counted as unchanged.
        ignore_bn_epsilon: BatchNorm's epsilon is the one term that breaks
            exact invariance (by about epsilon / variance); when True it is
            set to 1e-20 during the check so that the test is sharp.
        seed: seed of the random perturbations, losses and factors.

    Returns:
        An `InvarianceReport`; `report.ok` is False if any kernel is not
        invariant, and `print(report)` shows the table.

    Raises:
        ValueError: the model is not built, or `variables` is not one of the
            accepted forms.
    """
    if not model.built:
        raise ValueError(
            f"Model {model.name!r} is not built: call it on a batch (or give it "
            "an Input) before verifying scale invariance."
        )
    selections = (
        select_scale_invariant(model, x) if variables is None else _as_selections(model, variables)
    )
    checks = check_kernels(
        model, selections, x, rtol=rtol, sharpen_batchnorm=ignore_bn_epsilon, seed=seed
    )
    results = tuple(
        InvarianceResult(
            c.selection.path,
            math.nan if c.relative_change is None else c.relative_change,
            c.invariant,
            c.cosine,
            c.verdict,
        )
        for c in checks
    )
    return InvarianceReport(results, rtol)
