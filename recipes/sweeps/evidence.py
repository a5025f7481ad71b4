"""The tables of a tuned, paired comparison, rebuilt from its cells (`evidence.md`).

For grids whose cells hold out a validation split (`validation_examples`),
as `recipes/results/fmnist_full/PROTOCOL.md` prescribes:

1. every tuning cell (seed 0): validation accuracy, with WRS's coverage;
2. learning-rate sensitivity per method: the spread and the fraction of
   grid points within 0.5 pp of the method's best;
3. the chosen setting of each method (best validation accuracy, seed 0);
4. the confirmation cells (seeds >= 1 at the chosen settings): test and
   validation accuracy, and paired differences with 95% intervals and
   verdicts at the 0.2 pp margin (`keras_wrs.recipes.sweeps.stats`), and
   the best method of each optimizer against the other's;
5. time to 90% and 92% validation accuracy, in epochs and CPU seconds;
6. the zero-shot rows: cells on another network (seeds >= 1, each method
   at its defaults, nothing tuned), with the same paired differences;
7. cells trained without a validation split (the full-data benchmark):
   test accuracy per epoch and the time to 93%.

Test accuracy of a tuning cell is never shown: no choice reads it.

`rerun_differences` checks a committed cell against the same cell trained
again from its `config.json` (`keras-wrs train --config`).
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import Counter, defaultdict
from pathlib import Path

from keras_wrs._files import atomic_write_text
from keras_wrs.recipes.config import to_dict
from keras_wrs.recipes.runs import rundir
from keras_wrs.recipes.runs.record import RunRecord
from keras_wrs.recipes.sweeps import stats
from keras_wrs.recipes.sweeps.report import find_runs, load_summaries

__all__ = [
    "MARGIN",
    "TARGETS",
    "load_cells",
    "chosen_settings",
    "stage_two",
    "chosen_grids",
    "best_confirmed",
    "evidence_markdown",
    "write_evidence",
    "rerun_differences",
    "rerun_markdown",
]

MARGIN = 0.002  # the non-inferiority margin: 0.2 percentage points
TARGETS = (0.90, 0.92)  # validation accuracy targets of the time-to-accuracy table
FULL_DATA_TARGET = 0.93  # test accuracy target of the full-data benchmark
_WITHIN = 0.005  # "near best": within 0.5 pp
# Stage 1 of the protocol: its learning-rate grids, fixed in advance (PROTOCOL.md), by
# (optimizer, method), else by optimizer. A grid not named here: every lr at the modal decay.
STAGE_ONE_LR = {
    "sgdm": (0.05, 0.1, 0.2, 0.4, 0.8),
    "adam": (2.5e-4, 5e-4, 1e-3, 2e-3, 4e-3),
    ("adam", "adamh"): (0.0025, 0.005, 0.01, 0.02, 0.04),
}
# Stage 2 of the protocol: 4 more trials per method around its best stage-1 point.
_STAGE_TWO_LR = (2**-1.5, 2**-0.5, 2**0.5, 2**1.5)  # methods without a decay of their own
_STAGE_TWO_WD = (0.25, 0.5, 2.0, 4.0)  # the others: their decay, at the best lr
_LR_ONLY = ("wrs", "none")
# Every method's tuning budget: 5 stage-1 trials and 4 stage-2 trials (PROTOCOL.md).
TRIALS = 5 + len(_STAGE_TWO_LR)
SEEDS = 5  # confirmation seeds a method needs before it can be the best of its optimizer
_MODEL = "resnet9"  # the protocol recipe's network; cells on another one are zero-shot rows


def load_cells(paths):
    """Every run under `paths` as a flat dict of the fields the tables use."""
    cells = []
    for run_dir, summary in load_summaries(find_runs(paths)):
        config = summary["_config"]
        coverage = summary["_resolved"].get("rescaling") or {}
        cells.append(
            {
                "name": Path(run_dir).name,
                "optimizer": summary["optimizer"],
                "method": summary["regularization"],
                "model": config.get("model"),
                "lr": config.get("lr"),
                "wd": config.get("weight_decay"),
                "seed": summary["seed"],
                "validation": bool(config.get("validation_examples")),
                "train_examples": config.get("train_examples"),
                "status": summary.get("status"),
                "val": summary.get("validation_accuracy"),
                "test": summary.get("test_accuracy"),
                "cpu": summary.get("cpu_seconds"),
                "coverage": coverage.get("param_fraction") if coverage.get("applied") else None,
                "history": rundir.read_history(Path(run_dir) / rundir.FILES["history"]),
            }
        )
    return cells


def _pct(value, digits=2):
    return "-" if value is None or not math.isfinite(value) else f"{100 * value:.{digits}f}"


def _cov(cell):
    return "-" if cell["coverage"] is None else f"{100 * cell['coverage']:.1f}%"


def _mean_sd(values):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:  # one seed has no spread to show
        return f"{100 * values[0]:.2f}"
    return f"{100 * statistics.fmean(values):.2f} ± {100 * statistics.stdev(values):.2f}"


def _key(cell):
    return cell["optimizer"], cell["method"]


def _tuning(cells):
    """Seed-0 cells with a validation split, on the recipe's model."""
    return [c for c in cells if c["validation"] and c["seed"] == 0 and c["model"] == _MODEL]


def _score(cell):
    return -1.0 if cell["val"] is None else cell["val"]


def _tuning_table(cells):
    lines = [
        "| optimizer | method | lr | wd | validation accuracy (%) | CPU s | WRS covers |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in sorted(cells, key=lambda c: (c["optimizer"], c["method"], c["lr"], c["wd"] or 0)):
        shown = "diverged" if c["status"] == "diverged" else _pct(c["val"])
        cpu = "-" if c["cpu"] is None else f"{c['cpu']:.0f}"
        wd = "-" if c["method"] == "none" else f"{c['wd']:g}"
        lines.append(
            f"| {c['optimizer']} | {c['method']} | {c['lr']:g} | {wd} | "
            f"{shown} | {cpu} | {_cov(c)} |"
        )
    return "\n".join(lines)


def _stage_one_grid(key):
    return STAGE_ONE_LR.get(key, STAGE_ONE_LR.get(key[0]))


def _default_wd_points(group):
    """The method's lr curve: its stage-1 cells, at the weight decay most of them share.

    Stage 1 is the protocol's lr grid for the method (`STAGE_ONE_LR`) when one
    is declared and the method has a cell on it, else every lr.
    """
    grid = _stage_one_grid(_key(group[0]))
    on_grid = [c for c in group if grid and any(math.isclose(c["lr"], g) for g in grid)]
    group = on_grid or group
    counts = defaultdict(int)
    for c in group:
        counts[c["wd"]] += 1
    modal = max(counts, key=lambda wd: (counts[wd], -(wd or 0)))
    return sorted((c for c in group if c["wd"] == modal), key=lambda c: c["lr"]), modal


def _sensitivity_table(cells):
    lines = [
        "| optimizer | method | wd | lr grid | validation accuracy (%) per lr | "
        "best lr | spread (pp) | points within 0.5 pp of best |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, group in itertools.groupby(sorted(cells, key=_key), key=_key):
        points, wd = _default_wd_points(list(group))
        scores = [_score(c) for c in points]
        best = max(scores)
        near = sum(s >= best - _WITHIN for s in scores)
        wd_text = "-" if key[1] == "none" else f"{wd:g}"
        lrs = ", ".join(f"{c['lr']:g}" for c in points)
        accs = ", ".join("div" if c["status"] == "diverged" else _pct(c["val"]) for c in points)
        best_lr = points[scores.index(best)]["lr"]
        lines.append(
            f"| {key[0]} | {key[1]} | {wd_text} | {lrs} | {accs} | {best_lr:g} | "
            f"{100 * (best - min(scores)):.2f} | {near} of {len(points)} |"
        )
    return "\n".join(lines)


def _wd_curve_table(cells):
    """WD's weight-decay curve at each lr where it has more than one decay."""
    lines = [
        "| optimizer | lr | wd grid | validation accuracy (%) per wd | spread (pp) | "
        "points within 0.5 pp of best |",
        "|---|---|---|---|---|---|",
    ]
    groups = defaultdict(list)
    for c in cells:
        if c["method"] == "wd":
            groups[(c["optimizer"], c["lr"])].append(c)
    for (opt, lr), group in sorted(groups.items()):
        if len({c["wd"] for c in group}) < 2:
            continue
        group.sort(key=lambda c: c["wd"])
        scores = [_score(c) for c in group]
        best = max(scores)
        wds = ", ".join(f"{c['wd']:g}" for c in group)
        accs = ", ".join(_pct(c["val"]) for c in group)
        near = sum(v >= best - _WITHIN for v in scores)
        lines.append(
            f"| {opt} | {lr:g} | {wds} | {accs} | {100 * (best - min(scores)):.2f} | "
            f"{near} of {len(group)} |"
        )
    if len(lines) == 2:
        return ""
    return "WD's weight-decay curve (seed 0):\n\n" + "\n".join(lines)


def _best(cells):
    """The cell of highest validation accuracy (ties: smaller lr, then smaller wd), or None."""
    scored = [c for c in cells if c["val"] is not None]
    if not scored:
        return None
    return max(scored, key=lambda c: (c["val"], -c["lr"], -(c["wd"] or 0)))


def chosen_settings(cells):
    """`{(optimizer, method): best seed-0 cell}` by validation accuracy (ties: smaller lr)."""
    best = {}
    for key, group in itertools.groupby(sorted(_tuning(cells), key=_key), key=_key):
        pick = _best(list(group))
        if pick is not None:
            best[key] = pick
    return best


def stage_two(cells):
    """The stage-2 trials of each method, by the protocol's rule: `{(optimizer, method): [(lr, wd)]}`.

    From the stage-1 points (the seed-0 tuning cells at the method's default
    decay), the best by validation accuracy (a tie goes to the smaller lr).
    `wrs` and `none`, which have no second hyperparameter: lr = best x
    {2^-1.5, 2^-0.5, 2^0.5, 2^1.5}, rounded to 4 significant digits, at the
    best cell's decay. Every other method: its decay x {1/4, 1/2, 2, 4} at
    the best lr. A method with no finished stage-1 cell has none.
    """
    out = {}
    for key, group in itertools.groupby(sorted(_tuning(cells), key=_key), key=_key):
        best = _best(_default_wd_points(list(group))[0])
        if best is None:
            continue
        if key[1] in _LR_ONLY:
            out[key] = [(float(f"{best['lr'] * f:.4g}"), best["wd"]) for f in _STAGE_TWO_LR]
        else:
            out[key] = [(best["lr"], float(f"{best['wd'] * f:.4g}")) for f in _STAGE_TWO_WD]
    return out


def chosen_grids(cells, optimizer, trials=TRIALS):
    """`keras-wrs sweep --grid` values that train each method's chosen setting of `optimizer`.

    One per method whose tuning is complete (at least `trials` seed-0 tuning
    cells), in method order: `optimizer=O regularization=M lr=L
    weight_decay=W`. The confirmation cells run them with seeds >= 1; a method
    still being tuned has no chosen setting yet (`tuning_left` names it).
    """
    counts = _trial_counts(cells)
    return [
        f"optimizer={opt} regularization={method} lr={c['lr']!r} weight_decay={c['wd']!r}"
        for (opt, method), c in sorted(chosen_settings(cells).items())
        if opt == optimizer and counts[opt, method] >= trials
    ]


def tuning_left(cells, optimizer, trials=TRIALS):
    """`{method: trials so far}` of the methods of `optimizer` with fewer than `trials`."""
    return {
        method: n
        for (opt, method), n in sorted(_trial_counts(cells).items())
        if opt == optimizer and n < trials
    }


def _trial_counts(cells):
    counts = defaultdict(int)
    for c in _tuning(cells):
        counts[_key(c)] += 1
    return counts


def _confirmation(cells, chosen):
    """`{(optimizer, method): {seed: cell}}`: seeds >= 1 at each chosen setting."""
    out = defaultdict(dict)
    for c in cells:
        pick = chosen.get(_key(c))
        if (
            c["validation"]
            and c["seed"] >= 1
            and pick is not None
            and c["model"] == _MODEL
            and (c["lr"], c["wd"]) == (pick["lr"], pick["wd"])
        ):
            out[_key(c)][c["seed"]] = c
    return out


def _zero_shot(cells):
    """`{model: {(optimizer, method, lr, wd): {seed: cell}}}`: seeds >= 1 on a network other
    than the recipe's, each setting its own row (the protocol runs them at the defaults)."""
    out = defaultdict(lambda: defaultdict(dict))
    for c in cells:
        if c["validation"] and c["seed"] >= 1 and c["model"] != _MODEL:
            out[c["model"]][(*_key(c), c["lr"], c["wd"])][c["seed"]] = c
    return out


def _setting(key):
    """`key[2:]` (lr, wd) as table cells: the decay shows `-` for `none`, which has none."""
    lr, wd = key[2:]
    return f"{lr:g} | " + ("-" if key[1] == "none" or wd is None else f"{wd:g}")


def _confirmation_tables(confirmed):
    """The mean ± sd table of `{key: {seed: cell}}` and its paired differences within each
    optimizer. A key is `(optimizer, method)`, or `(optimizer, method, lr, wd)` (zero-shot
    rows), which adds lr and decay columns; a method at two settings is named with both."""
    setting = len(next(iter(confirmed), ())) == 4
    lines = [
        "| optimizer | method | "
        + ("lr | decay | " if setting else "")
        + "seeds | test accuracy (%) | validation accuracy (%) | WRS covers |",
        "|---|---|" + ("---|---|" if setting else "") + "---|---|---|---|",
    ]
    for key in sorted(confirmed):
        runs = list(confirmed[key].values())
        lines.append(
            f"| {key[0]} | {key[1]} | "
            + (f"{_setting(key)} | " if setting else "")
            + f"{len(runs)} | {_mean_sd([r['test'] for r in runs])}"
            f" | {_mean_sd([r['val'] for r in runs])} | {_cov(runs[0])} |"
        )
    methods = Counter(key[:2] for key in confirmed)

    def name(key):
        return key[1] if methods[key[:2]] == 1 else f"{key[1]} at lr {key[2]:g}, decay {key[3]:g}"

    pairs = [
        "",
        "Paired differences (A - B) over the shared seeds, 95% t intervals, verdict "
        f"at a {100 * MARGIN:.1f} pp margin:",
        "",
        f"| optimizer | A | B | {_PAIR_COLUMNS}",
        "|---|---|---|" + _PAIR_RULE,
    ]
    rows = []
    for a, b in itertools.combinations(sorted(confirmed), 2):
        if a[0] == b[0]:
            rows += _pair_row(f"{a[0]} | {name(a)} | {name(b)}", confirmed[a], confirmed[b])
    return "\n".join(lines + (pairs + rows if rows else []))


_PAIR_COLUMNS = "seeds | test: mean [95% CI] (pp) | verdict | validation: mean [95% CI] (pp) |"
_PAIR_RULE = "---|---|---|---|"  # the columns of `_PAIR_COLUMNS`, which `_pair_row` fills


def _pair_row(label, runs_a, runs_b):
    """`["| label | seeds | test diff | verdict | validation diff |"]` over the shared seeds, or []."""
    shared = sorted(set(runs_a) & set(runs_b))
    if len(shared) < 2:
        return []
    row = []
    for metric in ("test", "val"):
        d = stats.paired_difference(
            [runs_a[s][metric] for s in shared], [runs_b[s][metric] for s in shared]
        )
        row.append((d, f"{100 * d.mean:+.2f} [{100 * d.low:+.2f}, {100 * d.high:+.2f}]"))
    return [
        f"| {label} | {len(shared)} | {row[0][1]} | "
        f"{stats.verdict(row[0][0], MARGIN)} | {row[1][1]} |"
    ]


def best_confirmed(confirmed, seeds=SEEDS):
    """`{optimizer: method}`: the method of highest mean validation accuracy over the
    confirmation seeds, among those with all `seeds` of them (test accuracy is not read)."""
    scores = defaultdict(dict)  # {optimizer: {method: mean validation accuracy}}
    for (opt, method), runs in sorted(confirmed.items()):
        vals = [r["val"] for r in runs.values() if r["val"] is not None]
        if len(vals) >= seeds:
            scores[opt][method] = statistics.fmean(vals)
    return {opt: max(by_method, key=by_method.get) for opt, by_method in scores.items()}


def _best_pairs_table(confirmed):
    """The protocol's secondary comparison: the best method of each optimizer against each other."""
    best = best_confirmed(confirmed)
    rows = []
    for opt_a, opt_b in itertools.combinations(sorted(best), 2):
        a, b = (opt_a, best[opt_a]), (opt_b, best[opt_b])
        rows += _pair_row(f"{opt_a} {a[1]} | {opt_b} {b[1]}", confirmed[a], confirmed[b])
    if not rows:
        return ""
    return "\n".join(
        [
            f"The best of each optimizer (highest mean validation accuracy over all {SEEDS} "
            "confirmation seeds; test accuracy is not read to pick it), paired over the same seeds:",
            "",
            f"| A | B | {_PAIR_COLUMNS}",
            "|---|---|" + _PAIR_RULE,
            *rows,
        ]
    )


def _time_table(groups, label):
    heads = " | ".join(f"epochs to {100 * t:.0f}% | CPU s to {100 * t:.0f}%" for t in TARGETS)
    lines = [
        f"| optimizer | method | {label} | {heads} |",
        "|---|---|---|" + "---|---|" * len(TARGETS),
    ]
    for key in sorted(groups):
        runs = groups[key]
        cols = []
        for target in TARGETS:
            hits = [stats.time_to_accuracy(r["history"], target) for r in runs]
            reached = [h for h in hits if h[0] is not None]
            if not reached:
                cols += [f"not reached (0/{len(runs)})", "-"]
                continue
            epochs = statistics.fmean(h[0] for h in reached)
            cpu = [h[1] for h in reached if h[1] is not None]
            cols += [
                f"{epochs:.1f} ({len(reached)}/{len(runs)})",
                f"{statistics.fmean(cpu):.0f}" if cpu else "-",
            ]
        lines.append(f"| {key[0]} | {key[1]} | {len(runs)} | {' | '.join(cols)} |")
    return "\n".join(lines)


def _full_data_table(cells):
    full = sorted((c for c in cells if not c["validation"]), key=lambda c: (_key(c), c["seed"]))
    if not full:
        return ""
    epochs = max(len(c["history"].get("val_accuracy", ())) for c in full)
    lines = [
        "| optimizer | method | lr | seed | "
        + " | ".join(f"ep {i + 1}" for i in range(epochs))
        + " | final test (%) | epochs / CPU s to 93% |",
        "|---|---|---|---|" + "---|" * epochs + "---|---|",
    ]
    for c in full:
        per_epoch = [_pct(v) for v in c["history"].get("val_accuracy", ())]
        per_epoch += ["-"] * (epochs - len(per_epoch))
        epoch, cpu = stats.time_to_accuracy(c["history"], FULL_DATA_TARGET)
        reach = "not reached" if epoch is None else f"{epoch} / {cpu:.0f}" if cpu else str(epoch)
        lines.append(
            f"| {c['optimizer']} | {c['method']} | {c['lr']:g} | {c['seed']} | "
            f"{' | '.join(per_epoch)} | {_pct(c['test'])} | {reach} |"
        )
    sizes = sorted({c["train_examples"] or 0 for c in full})
    images = " or ".join(f"{n:,} training images" if n else "every training image" for n in sizes)
    return (
        f"Trained on {images}, test accuracy after every epoch (no validation "
        "split, nothing tuned on it):\n\n" + "\n".join(lines)
    )


def evidence_markdown(cells):
    """The protocol's tables as markdown, or None when no cell has a validation split."""
    tuning = _tuning(cells)
    full = _full_data_table(cells)
    zero_shot = _zero_shot(cells)
    if not tuning and not full and not zero_shot:
        return None
    parts = []
    if tuning:
        chosen = chosen_settings(cells)
        counts = _trial_counts(cells)
        confirmed = _confirmation(cells, chosen)
        parts += [
            "## Tuning cells (seed 0, validation accuracy; test not shown)",
            _tuning_table(tuning),
            "## Learning-rate sensitivity (seed 0, each method at its default decay)",
            _sensitivity_table(tuning),
            _wd_curve_table(tuning),
            "## Chosen settings (best validation accuracy of each method's trials)",
            "\n".join(
                [
                    "| optimizer | method | lr | wd | validation (%) | trials |",
                    "|---|---|---|---|---|---|",
                ]
                + [
                    f"| {k[0]} | {k[1]} | {c['lr']:g} | {c['wd']:g} | "
                    f"{_pct(c['val'])} | {counts[k]} of {TRIALS} |"
                    for k, c in sorted(chosen.items())
                ]
            ),
        ]
        if confirmed:
            parts += [
                "## Confirmation (seeds >= 1 at the chosen settings)",
                _confirmation_tables(confirmed),
                _best_pairs_table(confirmed),
                "## Time to accuracy (confirmation cells, validation accuracy)",
                _time_table({k: list(v.values()) for k, v in confirmed.items()}, "seeds"),
            ]
        parts += [
            "## Time to accuracy of the chosen settings at seed 0 (tuning cells)",
            _time_table({k: [c] for k, c in chosen.items()}, "cells"),
        ]
    for model, runs in sorted(zero_shot.items()):
        parts += [
            f"## Zero-shot: `{model}`, every method at its defaults, nothing tuned",
            _confirmation_tables(runs),
        ]
    if full:
        parts += ["## Full-data benchmark", full]
    return "\n\n".join(p for p in parts if p) + "\n"


def write_evidence(paths, out_dir=None):
    """Write `evidence.md` to `out_dir` from the runs under `paths`; its text, or None.

    `out_dir` None writes nothing, as `report.write_report` does: the text is
    returned for the console.
    """
    text = evidence_markdown(load_cells(paths))
    if text is not None and out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(out_dir) / "evidence.md", text)
    return text


_RERUN_MAIN = ("accuracy", "loss", "val_accuracy", "val_loss")


def _finished_record(run_dir):
    """The checked record (`RunRecord`) of a finished run, or a ValueError naming `run_dir`."""
    try:
        record = RunRecord.read(run_dir)
    except FileNotFoundError:
        record = None
    if record is None or (record.summary or {}).get("status") != "finished":
        raise ValueError(f"{str(run_dir)!r} holds no finished run: train it to the end first.")
    return record


def rerun_differences(kept_dir, run_dir):
    """How a cell trained again from its `config.json` differs from the kept one.

    Args:
        kept_dir: the committed cell (`config.json`, `summary.json`, `history.csv`).
        run_dir: the run trained again (`keras-wrs train --config kept/config.json`).

    Returns:
        `{column: max |kept - again| over the epochs}` for every history column
        both have (the timing columns, which measure the machine, left out),
        and `"test_accuracy"` from the two summaries.

    Raises:
        ValueError: the two runs are of different configurations, or one has
            not finished (names the fields or the directory).
    """
    return _differences(_finished_record(kept_dir), _finished_record(run_dir))


def _differences(kept, again):
    """`rerun_differences` of two finished `RunRecord`s."""
    # The records' configs have today's defaults filled in: a cell kept before a field existed
    # still matches.
    ours, theirs = to_dict(kept.config), to_dict(again.config)
    differ = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
    if differ:
        raise ValueError(
            f"{str(again.run_dir)!r} trained another configuration than {str(kept.run_dir)!r} "
            f"(it differs in {', '.join(differ)}): train it with "
            f"`keras-wrs train --config {kept.run_dir / rundir.FILES['config']}`."
        )
    ours, theirs = (rundir.read_history(r.run_dir / rundir.FILES["history"]) for r in (kept, again))
    if len(next(iter(ours.values()), ())) != len(next(iter(theirs.values()), ())):
        raise ValueError(
            f"{str(again.run_dir)!r} and {str(kept.run_dir)!r} logged different epoch counts."
        )
    out = {}
    for column in sorted(set(ours) & set(theirs)):
        if "second" in column:  # epoch_cpu_seconds, images_per_second: the machine
            continue
        pairs = list(zip(ours[column], theirs[column], strict=True))
        out[column] = max(
            (0.0 if a == b or (math.isnan(a) and math.isnan(b)) else abs(a - b)) for a, b in pairs
        )
    out["test_accuracy"] = abs(kept.summary["test_accuracy"] - again.summary["test_accuracy"])
    return out


def rerun_markdown(kept_dir, run_dir):
    """`rerun_differences` as a short markdown table, the main columns first."""
    kept, again = _finished_record(kept_dir), _finished_record(run_dir)
    diff = _differences(kept, again)
    main = [k for k in (*_RERUN_MAIN, "test_accuracy") if k in diff]
    rest = {k: v for k, v in diff.items() if k not in main}
    lines = ["| column | max abs difference over the epochs |", "|---|---|"]
    lines += [f"| {k} | {diff[k]:.3g} |" for k in main]
    if rest:
        worst = max(rest, key=rest.get)
        same = sum(v == 0 for v in rest.values())
        lines.append(
            f"| the other {len(rest)} columns (weight dynamics, lr): {same} identical; "
            f"the largest, {worst} | {rest[worst]:.3g} |"
        )
    same = all(v == 0 for v in diff.values())
    lines.append("")
    lines.append("Identical, bit for bit." if same else "Not identical.")
    caps = [_thread_caps(r) for r in (kept, again)]
    if caps[0] != caps[1]:
        lines.append(
            f"Thread caps: {caps[0]} for the cell, {caps[1]} for the rerun; under other caps "
            f"float sums run in another order, and the difference grows over the epochs."
        )
    return "\n".join(lines)


def _thread_caps(record):
    """The thread caps a run recorded (`config.json`, resolved), as words."""
    if "thread_caps" not in record.resolved:
        return "not recorded"
    return (
        ", ".join(f"{k}={v}" for k, v in sorted(record.resolved["thread_caps"].items())) or "none"
    )


_USAGE = (
    "usage: python -m keras_wrs.recipes.sweeps.evidence chosen CELLS_DIR OPTIMIZER\n"
    "       python -m keras_wrs.recipes.sweeps.evidence rerun CELL_DIR RUN_DIR"
)

if __name__ == "__main__":
    import sys

    from keras_wrs.recipes import console

    console.quiet_tensorflow()  # checking a cell's optimizer_kwargs loads Keras
    if len(sys.argv) != 4 or sys.argv[1] not in ("chosen", "rerun"):
        sys.exit(_USAGE)
    if sys.argv[1] == "chosen":
        cells = load_cells([sys.argv[2]])
        for method, n in tuning_left(cells, sys.argv[3]).items():
            print(
                f"evidence chosen: {sys.argv[3]} {method} has {n} of {TRIALS} tuning trials; "
                f"no chosen setting until its tuning is complete",
                file=sys.stderr,
            )
        print("\n".join(chosen_grids(cells, sys.argv[3])))
    else:
        try:
            print(rerun_markdown(sys.argv[2], sys.argv[3]))
        except ValueError as err:
            sys.exit(f"evidence rerun: {err}")
