"""The protocol tables (`evidence.md`), rebuilt from cell files written as runs write them."""

import dataclasses
import json

import numpy as np

from keras_wrs.recipes import config as cfg
from keras_wrs.recipes.sweeps import evidence, stats

BASE = dataclasses.replace(cfg.get_recipe("fmnist_resnet9"), validation_examples=6000)


def _cell(
    root,
    name,
    *,
    method="wd",
    lr=0.2,
    wd=5e-3,
    seed=0,
    val=(0.85, 0.91, 0.93),
    test=0.1234,
    optimizer="sgdm",
    validation=True,
    status="finished",
    train_examples=None,
    model="resnet9",
):
    config = dataclasses.replace(
        BASE,
        regularization=method,
        lr=lr,
        weight_decay=wd,
        seed=seed,
        optimizer=optimizer,
        optimizer_kwargs=BASE.optimizer_kwargs if optimizer.startswith("sgd") else {},
        validation_examples=6000 if validation else None,
        train_examples=train_examples,
        model=model,
    )
    cell = root / name
    cell.mkdir(parents=True)
    rescaling = {"applied": method == "wrs", "param_fraction": 0.994}
    (cell / "config.json").write_text(
        json.dumps(
            {
                "config": cfg.to_dict(config),
                "dataset": {"name": "fashion_mnist"},
                "preprocessing": {"rescale": 1 / 255, "mean": [0.286], "std": [0.353]},
                "resolved": {"learning_rate": lr, "weight_decay": wd, "lr_scale": 1.0},
                "rescaling": rescaling,
            }
        )
    )
    (cell / "summary.json").write_text(
        json.dumps(
            {
                "status": status,
                "optimizer": optimizer,
                "regularization": method,
                "seed": seed,
                "dataset": "fashion_mnist",
                "model": model,
                "epochs": len(val),
                "validation_accuracy": val[-1] if validation else None,
                "test_accuracy": test,
                "cpu_seconds": 50.0 * len(val),
                "wall_seconds": 60.0 * len(val),
            }
        )
    )
    rows = "\n".join(f"{i},{v},50.0" for i, v in enumerate(val))
    (cell / "history.csv").write_text(f"epoch,val_accuracy,epoch_cpu_seconds\n{rows}\n")


def test_tuning_sensitivity_and_chosen_settings(tmp_path):
    curve = {0.05: 0.920, 0.1: 0.931, 0.2: 0.934, 0.4: 0.930, 0.8: 0.900}
    for lr, acc in curve.items():
        _cell(tmp_path, f"wd-{lr}", lr=lr, val=(0.85, acc))
        _cell(tmp_path, f"wrs-{lr}", method="wrs", lr=lr, val=(0.85, acc - 0.001))
    _cell(tmp_path, "wd-0.2-wd2e-2", lr=0.2, wd=2e-2, val=(0.85, 0.936))
    text = evidence.evidence_markdown(evidence.load_cells([tmp_path]))
    assert "12.34" not in text  # a tuning cell's test accuracy is never shown
    # Brute force over the default-decay curve: spread and the points within 0.5 pp.
    best = max(curve.values())
    near = sum(a >= best - 0.005 for a in curve.values())
    assert "| sgdm | wd | 0.005 | 0.05, 0.1, 0.2, 0.4, 0.8 |" in text
    assert f"| 0.2 | {100 * (best - min(curve.values())):.2f} | {near} of 5 |" in text
    assert "| sgdm | wrs | 0.005 |" in text and "99.4%" in text  # WRS coverage on its rows
    # WD's decay curve at lr 0.2, and the chosen settings over all 6 (WD) and 5 trials.
    assert "| sgdm | 0.2 | 0.005, 0.02 | 93.40, 93.60 | 0.20 | 2 of 2 |" in text
    assert "| sgdm | wd | 0.2 | 0.02 | 93.60 | 6 of 9 |" in text
    assert "| sgdm | wrs | 0.2 | 0.005 | 93.30 | 5 of 9 |" in text


def test_ties_go_to_the_smaller_learning_rate(tmp_path):
    _cell(tmp_path, "a", lr=0.4, val=(0.93,))
    _cell(tmp_path, "b", lr=0.1, val=(0.93,))
    chosen = evidence.chosen_settings(evidence.load_cells([tmp_path]))
    assert chosen[("sgdm", "wd")]["lr"] == 0.1


def test_confirmation_pairs_shared_seeds_and_states_the_verdict(tmp_path):
    _cell(tmp_path, "wd-s0", val=(0.93,))
    _cell(tmp_path, "wrs-s0", method="wrs", val=(0.93,))
    wd_test = [0.9310, 0.9330, 0.9290, 0.9320, 0.9300]
    wrs_test = [0.9325, 0.9341, 0.9302, 0.9336, 0.9309]
    for seed, (a, b) in enumerate(zip(wd_test, wrs_test, strict=True), 1):
        _cell(tmp_path, f"wd-s{seed}", seed=seed, val=(0.88, 0.91, 0.925), test=a)
        _cell(tmp_path, f"wrs-s{seed}", method="wrs", seed=seed, val=(0.905, 0.921, 0.93), test=b)
    text = evidence.evidence_markdown(evidence.load_cells([tmp_path]))
    d = stats.paired_difference(wd_test, wrs_test)  # rows are A=wd, B=wrs (sorted)
    row = (
        f"| sgdm | wd | wrs | 5 | {100 * d.mean:+.2f} [{100 * d.low:+.2f}, "
        f"{100 * d.high:+.2f}] | {stats.verdict(d, 0.002)} |"
    )
    assert row in text
    mean, sd = 100 * np.mean(wrs_test), 100 * np.std(wrs_test, ddof=1)
    assert f"| sgdm | wrs | 5 | {mean:.2f} ± {sd:.2f} |" in text  # confirmation: test shown
    # Time to 90% / 92%: WD at epochs 2 / 3 (100 / 150 CPU s), WRS at 1 / 2.
    assert "| sgdm | wd | 5 | 2.0 (5/5) | 100 | 3.0 (5/5) | 150 |" in text
    assert "| sgdm | wrs | 5 | 1.0 (5/5) | 50 | 2.0 (5/5) | 100 |" in text


def test_full_data_cells_get_their_own_table_and_a_grid_without_splits_gets_none(tmp_path):
    _cell(
        tmp_path / "full",
        "wrs",
        method="wrs",
        validation=False,
        val=(0.90, 0.925, 0.9312),
        test=0.9312,
    )
    text = evidence.evidence_markdown(evidence.load_cells([tmp_path / "full"]))
    assert "| sgdm | wrs | 0.2 | 0 | 90.00 | 92.50 | 93.12 | 93.12 | 3 / 150 |" in text
    assert "Trained on every training image," in text
    assert evidence.write_evidence([tmp_path / "full"], tmp_path / "out") == text
    assert (tmp_path / "out" / "evidence.md").read_text() == text
    assert evidence.write_evidence([tmp_path / "full"]) == text  # no out: nothing written


def test_the_full_data_table_states_a_subset_it_was_trained_on(tmp_path):
    _cell(tmp_path, "wd", validation=False, train_examples=5000)
    _cell(tmp_path, "wrs", method="wrs", validation=False)
    text = evidence.evidence_markdown(evidence.load_cells([tmp_path]))
    assert "Trained on every training image or 5,000 training images," in text


def test_runs_without_validation_or_benchmark_cells_write_nothing(tmp_path):
    assert evidence.evidence_markdown([]) is None
    assert evidence.write_evidence([], tmp_path / "out") is None
    assert not (tmp_path / "out").exists()


def test_stage_two_places_four_trials_by_the_protocol_rule(tmp_path):
    # WD best at lr 0.2: its decay x {1/4, 1/2, 2, 4} there. WRS best at lr 0.4, none tied
    # at 0.1 and 0.8 (the tie goes to 0.1): lr x 2^{-1.5, -0.5, 0.5, 1.5}, to 4 digits.
    for lr, acc in {0.05: 0.90, 0.1: 0.92, 0.2: 0.93, 0.4: 0.925, 0.8: 0.91}.items():
        _cell(tmp_path, f"wd-{lr}", lr=lr, val=(acc,))
    for lr, acc in {0.05: 0.90, 0.1: 0.92, 0.2: 0.925, 0.4: 0.93, 0.8: 0.91}.items():
        _cell(tmp_path, f"wrs-{lr}", method="wrs", lr=lr, val=(acc,))
    for lr, acc in {0.05: 0.90, 0.1: 0.93, 0.2: 0.92, 0.4: 0.92, 0.8: 0.93}.items():
        _cell(tmp_path, f"none-{lr}", method="none", lr=lr, val=(acc,))
    expected = {
        ("sgdm", "wd"): [(0.2, 0.00125), (0.2, 0.0025), (0.2, 0.01), (0.2, 0.02)],
        ("sgdm", "wrs"): [(0.1414, 5e-3), (0.2828, 5e-3), (0.5657, 5e-3), (1.131, 5e-3)],
        ("sgdm", "none"): [(0.03536, 5e-3), (0.07071, 5e-3), (0.1414, 5e-3), (0.2828, 5e-3)],
    }
    assert evidence.stage_two(evidence.load_cells([tmp_path])) == expected
    # Stage-2 cells, better than every stage-1 point, change neither the rule's placement
    # nor the lr-sensitivity table (5 grid points), but they can be chosen.
    _cell(tmp_path, "wrs-s2", method="wrs", lr=0.5657, val=(0.95,))
    _cell(tmp_path, "wd-s2", lr=0.2, wd=0.02, val=(0.95,))
    cells = evidence.load_cells([tmp_path])
    assert evidence.stage_two(cells) == expected
    text = evidence.evidence_markdown(cells)
    assert "| sgdm | wrs | 0.005 | 0.05, 0.1, 0.2, 0.4, 0.8 |" in text
    assert evidence.chosen_settings(cells)[("sgdm", "wrs")]["lr"] == 0.5657


def test_an_lr_off_the_declared_grid_joins_no_stage_one_curve(tmp_path):
    for lr in (0.05, 0.1, 0.2, 0.4, 0.8, 0.07071):
        _cell(tmp_path, f"wrs-{lr}", method="wrs", lr=lr, val=(0.9,))
    _cell(tmp_path, "odd", method="wrs", optimizer="sgd", lr=3e-4, val=(0.9,))
    text = evidence.evidence_markdown(evidence.load_cells([tmp_path]))
    assert "| sgdm | wrs | 0.005 | 0.05, 0.1, 0.2, 0.4, 0.8 |" in text
    assert "| sgd | wrs | 0.005 | 0.0003 |" in text  # no declared grid: every lr


def test_chosen_grids_train_each_methods_chosen_setting(tmp_path):
    _cell(tmp_path, "wd-a", lr=0.2, wd=0.02, val=(0.93,))
    _cell(tmp_path, "wd-b", lr=0.4, val=(0.92,))
    _cell(tmp_path, "wrs-a", method="wrs", lr=0.07071, val=(0.94,))
    _cell(tmp_path, "adam-wrs", method="wrs", optimizer="adam", lr=1e-3, wd=5e-2, val=(0.9,))
    _cell(tmp_path, "confirm", method="wrs", lr=0.4, seed=1, val=(0.99,))  # not a trial
    cells = evidence.load_cells([tmp_path])
    assert evidence.chosen_grids(cells, "sgdm", trials=1) == [
        "optimizer=sgdm regularization=wd lr=0.2 weight_decay=0.02",
        "optimizer=sgdm regularization=wrs lr=0.07071 weight_decay=0.005",
    ]
    assert evidence.chosen_grids(cells, "adam", trials=1) == [
        "optimizer=adam regularization=wrs lr=0.001 weight_decay=0.05"
    ]
    assert evidence.chosen_grids(cells, "sgd", trials=1) == []
    # wd has 2 trials, wrs 1: with trials=2 only wd's tuning counts as complete.
    assert evidence.chosen_grids(cells, "sgdm", trials=2) == [
        "optimizer=sgdm regularization=wd lr=0.2 weight_decay=0.02"
    ]
    assert evidence.tuning_left(cells, "sgdm", trials=2) == {"wrs": 1}


def test_a_method_is_confirmed_only_after_its_whole_tuning_budget(tmp_path):
    lrs = (0.05, 0.1, 0.2, 0.4, 0.8)
    for lr in lrs:
        _cell(tmp_path, f"wrs-{lr}", method="wrs", lr=lr, val=(0.9 + lr / 10,))
        _cell(tmp_path, f"wd-{lr}", lr=lr, val=(0.9,))
    for wd in (1.25e-3, 2.5e-3, 1e-2, 2e-2):
        _cell(tmp_path, f"wd-{wd}", lr=0.05, wd=wd, val=(0.95 if wd == 2e-2 else 0.8,))
    cells = evidence.load_cells([tmp_path])
    assert evidence.TRIALS == 9
    assert evidence.chosen_grids(cells, "sgdm") == [
        "optimizer=sgdm regularization=wd lr=0.05 weight_decay=0.02"
    ]
    assert evidence.tuning_left(cells, "sgdm") == {"wrs": 5}
    text = evidence.evidence_markdown(cells)
    assert "| sgdm | wd | 0.05 | 0.02 | 95.00 | 9 of 9 |" in text
    assert "| sgdm | wrs | 0.8 | 0.005 | 98.00 | 5 of 9 |" in text


def test_zero_shot_cells_on_another_network_get_their_own_paired_table(tmp_path):
    _cell(tmp_path, "wd-s0", val=(0.93,))  # the recipe's tuning: not zero-shot
    wd_test, wrs_test = [0.921, 0.925, 0.919], [0.927, 0.926, 0.924]
    for seed, (a, b) in enumerate(zip(wd_test, wrs_test, strict=True), 1):
        _cell(tmp_path, f"z-wd-{seed}", model="resnet20", seed=seed, val=(0.92,), test=a)
        _cell(tmp_path, f"z-wrs-{seed}", method="wrs", model="resnet20", seed=seed, test=b)
    text = evidence.evidence_markdown(evidence.load_cells([tmp_path]))
    zero = text.split("## Zero-shot: `resnet20`", 1)[1]
    mean, sd = 100 * np.mean(wd_test), 100 * np.std(wd_test, ddof=1)
    assert f"| sgdm | wd | 0.2 | 0.005 | 3 | {mean:.2f} ± {sd:.2f} | 92.00 ± 0.00 | - |" in zero
    d = stats.paired_difference(wd_test, wrs_test)
    assert f"| sgdm | wd | wrs | 3 | {100 * d.mean:+.2f} [{100 * d.low:+.2f}, " in zero
    assert "| sgdm | wd | 0.2 | 0.005 | 93.00 | 1 of 9 |" in text  # chosen from resnet9 only


def test_a_zero_shot_method_at_two_settings_gets_two_rows_and_no_cell_is_dropped(tmp_path):
    # Adam's cells first ran at the recipe's SGD lr 0.2 by mistake, then at Adam's 1e-3, on the
    # same seeds: each setting is its own row (none merged, none hidden), named in the pairs.
    kw = dict(model="resnet20", optimizer="adam", wd=5e-2)
    for seed in (1, 2):
        _cell(tmp_path, f"wrs-0.2-{seed}", method="wrs", lr=0.2, seed=seed, test=0.87, **kw)
        _cell(tmp_path, f"wrs-1e-3-{seed}", method="wrs", lr=1e-3, seed=seed, test=0.93, **kw)
    _cell(tmp_path, "none-1e-3-1", method="none", lr=1e-3, seed=1, test=0.92, **kw)
    zero = evidence.evidence_markdown(evidence.load_cells([tmp_path])).split("## Zero-shot", 1)[1]
    assert "| adam | wrs | 0.2 | 0.05 | 2 | 87.00 ± 0.00 |" in zero
    assert "| adam | wrs | 0.001 | 0.05 | 2 | 93.00 ± 0.00 |" in zero
    assert "| adam | none | 0.001 | - | 1 | 92.00 |" in zero
    pair = "| adam | wrs at lr 0.001, decay 0.05 | wrs at lr 0.2, decay 0.05 | 2 | +6.00 ["
    assert pair in zero


def test_the_best_of_each_optimizer_is_picked_on_validation_and_paired_across_optimizers(tmp_path):
    # Per optimizer, the method of highest mean validation accuracy over all 5 seeds: sgdm/wrs
    # (its test accuracy is the lower one: test is not read), adam/wd. adam/none has the highest
    # validation of all but only 3 seeds, so it cannot be the best yet.
    rng = np.random.default_rng(7)
    val = {("sgdm", "wd"): 0.930, ("sgdm", "wrs"): 0.934, ("adam", "wd"): 0.932}
    test = {key: 0.925 + 0.004 * rng.random(5) for key in val}
    test[("sgdm", "wrs")] = test[("sgdm", "wd")] - 0.001
    for (opt, method), v in val.items():
        _cell(tmp_path, f"{opt}-{method}-s0", optimizer=opt, method=method, val=(v,))
        for seed in range(1, 6):
            acc = (v + 0.0005 * seed,)
            name = f"{opt}-{method}-s{seed}"
            test_acc = test[(opt, method)][seed - 1]
            _cell(tmp_path, name, optimizer=opt, method=method, seed=seed, val=acc, test=test_acc)
    _cell(tmp_path, "adam-none-s0", optimizer="adam", method="none", val=(0.90,))
    for seed in (1, 2, 3):
        _cell(
            tmp_path, f"adam-none-s{seed}", optimizer="adam", method="none", seed=seed, val=(0.99,)
        )
    cells = evidence.load_cells([tmp_path])
    confirmed = evidence._confirmation(cells, evidence.chosen_settings(cells))
    assert evidence.best_confirmed(confirmed) == {"sgdm": "wrs", "adam": "wd"}
    # adam/wd - sgdm/wrs, seed by seed; the 95% t interval with t(0.975, 4) = 2.776.
    diff = 100 * (test[("adam", "wd")] - test[("sgdm", "wrs")])
    half = 2.7764451 * diff.std(ddof=1) / np.sqrt(5)
    text = evidence.evidence_markdown(cells)
    row = f"| adam wd | sgdm wrs | 5 | {diff.mean():+.2f} [{diff.mean() - half:+.2f}, "
    assert row + f"{diff.mean() + half:+.2f}] |" in text
    assert "| adam wd | sgdm wrs | 5 |" in text.split("The best of each optimizer", 1)[1]
    # One optimizer with a complete method: no cross-optimizer table.
    only_sgdm = [c for c in cells if c["optimizer"] == "sgdm"]
    assert "The best of each optimizer" not in evidence.evidence_markdown(only_sgdm)


def test_one_seed_shows_no_spread_and_no_pair_shows_no_pair_table(tmp_path):
    # The first zero-shot cells: one seed each. The standard deviation of one value is undefined,
    # not 0, and an interval needs two shared seeds.
    _cell(tmp_path, "z-wd-1", model="resnet20", seed=1, val=(0.9373,), test=0.9317)
    _cell(tmp_path, "z-none-1", method="none", model="resnet20", seed=1, val=(0.9358,), test=0.9256)
    zero = evidence.evidence_markdown(evidence.load_cells([tmp_path])).split("## Zero-shot", 1)[1]
    assert "| sgdm | wd | 0.2 | 0.005 | 1 | 93.17 | 93.73 | - |" in zero
    assert "| sgdm | none | 0.2 | - | 1 | 92.56 | 93.58 | - |" in zero  # none has no decay
    assert "±" not in zero and "Paired differences" not in zero
    _cell(tmp_path, "z-wd-2", model="resnet20", seed=2, val=(0.93,), test=0.93)
    _cell(tmp_path, "z-none-2", method="none", model="resnet20", seed=2, val=(0.93,), test=0.92)
    zero = evidence.evidence_markdown(evidence.load_cells([tmp_path])).split("## Zero-shot", 1)[1]
    d = stats.paired_difference([0.9256, 0.92], [0.9317, 0.93])
    assert "Paired differences" in zero
    assert f"| sgdm | none | wd | 2 | {100 * d.mean:+.2f} [{100 * d.low:+.2f}, " in zero
