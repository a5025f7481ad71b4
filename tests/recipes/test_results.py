"""The committed evidence of `recipes/results/fmnist_full`: rebuilt from its cells, grids by its rule."""

import re
from pathlib import Path

import pytest

from keras_wrs.recipes import config as cfg
from keras_wrs.recipes.sweeps import evidence

HERE = Path(__file__).resolve().parents[2] / "recipes" / "results" / "fmnist_full"

pytestmark = pytest.mark.skipif(not HERE.is_dir(), reason="no committed results (not a checkout)")


def _stage_block(name):
    """The body of `run.sh`'s `if ... = NAME ]; then ... fi` block."""
    text = (HERE / "run.sh").read_text()
    found = re.search(rf"= {name} \]; then\n(.*?)\nfi\n", text, re.S)
    assert found, f"run.sh has no {name} stage"
    return found.group(1)


def _grid_settings(block):
    """`{(optimizer, method): {(lr, wd)}}` of every --grid in `block` (None: not set)."""
    variables = dict(re.findall(r'^(\w+)="([^"$]*)"$', (HERE / "run.sh").read_text(), re.M))
    out = {}
    for value in re.findall(r'--grid "([^"]*)"', block):
        value = re.sub(r"\$(\w+)", lambda m: variables[m.group(1)], value)
        axes = dict(part.split("=", 1) for part in value.split())
        for method in axes["regularization"].split(","):
            key = (axes["optimizer"], method)
            for lr in axes.get("lr", "").split(","):
                for wd in axes.get("weight_decay", "").split(","):
                    setting = (float(lr) if lr else None, float(wd) if wd else None)
                    out.setdefault(key, set()).add(setting)
    return out


def test_run_sh_stage_two_grids_are_the_protocol_rule_on_the_committed_cells():
    cells = evidence.load_cells([HERE / "cells"])
    placed = evidence.stage_two(cells)
    in_run_sh = _grid_settings(_stage_block("stage2"))
    assert in_run_sh, "run.sh's stage 2 has no grid"
    default_wd = cfg.get_recipe("fmnist_resnet9").weight_decay  # a grid without weight_decay
    for key, settings in in_run_sh.items():
        got = {(lr, default_wd if wd is None else wd) for lr, wd in settings}
        assert got == set(placed[key]), key


def _optimizer_defaults():
    """PROTOCOL.md's defaults: SGD-momentum's are the recipe's, Adam's are Keras Adam's."""
    from keras_wrs.recipes.training import optim

    recipe = cfg.get_recipe("fmnist_resnet9")
    adam = optim.OPTIMIZERS["adam"]
    return {"sgdm": (recipe.lr, recipe.weight_decay), "adam": (adam.lr, adam.weight_decay)}


def test_zero_shot_cells_run_at_their_optimizers_defaults():
    """The zero-shot rows are "every method at its optimizer's defaults": run.sh's grids and
    every committed zero-shot cell. (run.sh once left Adam at the recipe's SGD lr, 0.2.)"""
    defaults = _optimizer_defaults()
    recipe = cfg.get_recipe("fmnist_resnet9")
    in_run_sh = _grid_settings(_stage_block("zero_shot"))
    assert {opt for opt, _ in in_run_sh} == set(defaults)
    for (optimizer, method), settings in in_run_sh.items():
        for lr, wd in settings:  # a grid without lr or weight_decay takes the recipe's
            got = (recipe.lr if lr is None else lr, recipe.weight_decay if wd is None else wd)
            assert got == defaults[optimizer], (optimizer, method, got)
    zero_shot = [c for c in evidence.load_cells([HERE / "cells"]) if c["model"] != "resnet9"]
    for cell in zero_shot:
        assert (cell["lr"], cell["wd"]) == defaults[cell["optimizer"]], cell["name"]


def test_evidence_md_is_what_report_rebuilds_from_the_committed_cells():
    text = evidence.evidence_markdown(evidence.load_cells([HERE]))
    assert (HERE / "evidence.md").read_text() == text, (
        "evidence.md is out of date: run `keras-wrs report recipes/results/fmnist_full`"
    )


def _row(text, *cells):
    """The first markdown table row of `text` that starts with `cells`, split."""
    start = "| " + " | ".join(cells) + " |"
    line = next(line for line in text.splitlines() if line.startswith(start))
    return [part.strip() for part in line.strip("|").split("|")]


def test_the_readme_verdict_quotes_the_evidence():
    evidence_md = (HERE / "evidence.md").read_text()
    readme = (HERE.parents[2] / "README.md").read_text()
    verdict = readme.split("## Should you switch from weight decay?", 1)[1].split("\n## ", 1)[0]
    verdict = " ".join(verdict.split())
    wd = _row(evidence_md, "sgdm", "wd", "5")[3].split(" ± ")[0]
    wrs = _row(evidence_md, "sgdm", "wrs", "5")[3].split(" ± ")[0]
    paired = _row(evidence_md, "sgdm", "wd", "wrs", "5")
    mean, low, high = re.findall(r"[+-]\d+\.\d+", paired[4])
    assert paired[5] == "superior"
    assert f"weight decay reached {wd}% test accuracy and WRS {wrs}%" in verdict
    assert f"a difference of {mean} pp for weight decay (95% CI {low} to {high})" in verdict
    spread = {m: _row(evidence_md, "sgdm", m, "0.005")[6] for m in ("wd", "wrs")}
    assert f"spread {spread['wrs']} pp against {spread['wd']} for weight decay" in verdict
    # Adam: the evidence's row is WD - WRS; the README states WRS - WD.
    test = {m: _row(evidence_md, "adam", m, "5")[3].split(" ± ")[0] for m in ("wd", "wrs", "none")}
    paired = _row(evidence_md, "adam", "wd", "wrs", "5")
    mean, low, high = (_negated(x) for x in re.findall(r"[+-]\d+\.\d+", paired[4]))
    assert paired[5] == "inferior"
    assert f"WRS reached {test['wrs']}% and tuned AdamW {test['wd']}%" in verdict
    assert f"a difference of {mean} pp for WRS (95% CI {high} to {low})" in verdict
    assert _row(evidence_md, "adam", "none", "wd", "5")[5] == "non-inferior"
    assert f"Adam without decay ({test['none']}%)" in verdict
    # The toolkit's methods: each quoted accuracy is its confirmation row's.
    for optimizer, method, name in (
        ("sgdm", "sgdp", "SGDP"),
        ("sgdm", "cwd", "corrected weight decay"),
        ("adam", "adamh", "AdamH"),
        ("adam", "sgdp", "AdamP"),
    ):
        mean = _row(evidence_md, optimizer, method, "5")[3].split(" ± ")[0]
        assert re.search(rf"{name} (reached )?{mean}%", verdict), (optimizer, method)
    paired = _row(evidence_md, "adam", "adamh", "wrs", "5")
    mean, low, high = re.findall(r"[+-]\d+\.\d+", paired[4])
    assert paired[5] == "inconclusive"
    assert f"inconclusive against WRS ({mean} pp, 95% CI {low} to {high})" in verdict


def test_the_results_readme_table_quotes_the_confirmation():
    evidence_md = (HERE / "evidence.md").read_text()
    readme = (HERE / "README.md").read_text()
    header = next(line for line in readme.splitlines() if line.startswith("| optimizer | WD |"))
    columns = {"WD": "wd", "WRS": "wrs", "none": "none", "AdamH": "adamh"}
    columns |= {"SGDP / AdamP": "sgdp", "corrected WD / AdamC": "cwd"}
    methods = [columns[name.strip()] for name in header.strip("|").split("|")[1:]]
    rows = {"SGD-momentum": "sgdm", "Adam": "adam"}
    quoted = 0
    for line in readme.splitlines():
        parts = [part.strip().strip("*") for part in line.strip("|").split("|")]
        if parts[0] not in rows:
            continue
        for method, shown in zip(methods, parts[1:], strict=True):
            if shown != "-":
                assert _row(evidence_md, rows[parts[0]], method, "5")[3] == shown, (
                    parts[0],
                    method,
                )
                quoted += 1
    assert quoted == 11


def test_the_results_readme_zero_shot_table_quotes_the_seed_one_cells():
    """The README's zero-shot table (seed 1) against the cells: later seeds do not change it."""
    readme = (HERE / "README.md").read_text()
    lines = readme.split("| zero-shot, seed 1 |", 1)[1].splitlines()
    header = [part.strip() for part in lines[0].strip("|").split("|")]
    columns = {"WD": "wd", "WRS": "wrs", "none": "none", "AdamH": "adamh"}
    columns |= {"SGDP / AdamP": "sgdp", "corrected WD / AdamC": "cwd"}
    methods = [columns[name] for name in header]
    seed_one = {
        (c["optimizer"], c["method"]): c
        for c in evidence.load_cells([HERE / "cells"])
        if c["model"] == "resnet20" and c["seed"] == 1
    }
    defaults = _optimizer_defaults()
    quoted = 0
    for line in lines[2:4]:
        parts = [part.strip() for part in line.strip("|").split("|")]
        name, lr = parts[0].split(", lr ")
        optimizer = {"SGD-momentum": "sgdm", "Adam": "adam"}[name]
        assert float(lr) == defaults[optimizer][0]
        for method, shown in zip(methods, parts[1:], strict=True):
            if shown != "-":
                assert f"{100 * seed_one[(optimizer, method)]['test']:.2f}" == shown, method
                quoted += 1
    assert quoted == 11


def _negated(signed):
    return ("-" if signed.startswith("+") else "+") + signed[1:]
