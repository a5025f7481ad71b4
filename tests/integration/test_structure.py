"""The tree keeps its promises: every package is packaged, and no module reaches into another's
private names."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Source folder -> the package it installs as (pyproject.toml's package-dir).
SOURCES = {"keras_wrs": "keras_wrs", "recipes": "keras_wrs.recipes", "export": "keras_wrs.export"}


def packages_on_disk():
    found = set()
    for folder, package in SOURCES.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((package, *rel)))
    return found


def test_every_folder_with_an_init_is_packaged():
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"] == {v: k for k, v in SOURCES.items()}
    declared = set(config["packages"])
    missing = packages_on_disk() - declared
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"
    assert not declared - packages_on_disk(), "packages listed that have no folder"


def module_files():
    for folder in SOURCES:
        yield from (ROOT / folder).rglob("*.py")


def is_submodule(module, name):
    """Whether `from module import name` imports a module (a private module may be imported)."""
    for folder, package in SOURCES.items():
        if module == package or module.startswith(package + "."):
            rel = module[len(package) :].strip(".").split(".") if module != package else []
            base = ROOT.joinpath(folder, *[p for p in rel if p])
            return (base / f"{name}.py").is_file() or (base / name / "__init__.py").is_file()
    return False


def test_no_module_imports_another_modules_private_name():
    offences = []
    for path in module_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith(
                "keras_wrs"
            ):
                continue
            for alias in node.names:
                private = alias.name.startswith("_") and not alias.name.endswith("__")
                if private and not is_submodule(node.module, alias.name):
                    offences.append(
                        f"{path.relative_to(ROOT)}: from {node.module} import {alias.name}"
                    )
    assert not offences, "\n".join(offences)


def test_the_check_sees_an_offence():
    # The walk above must be able to fail: a private name imported from a module is caught.
    tree = ast.parse("from keras_wrs.optimizers.wrs_mixin import _Rescaled")
    node = tree.body[0]
    assert node.names[0].name.startswith("_")
    assert not is_submodule(node.module, node.names[0].name)
    assert is_submodule("keras_wrs", "_backend")
