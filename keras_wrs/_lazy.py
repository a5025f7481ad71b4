"""Module attributes imported on first use (PEP 562)."""

import importlib

__all__ = ["lazy_getattr"]


def lazy_getattr(package: str, where: dict):
    """A module `__getattr__` that imports `package.<where[name]>` on first use.

    Args:
        package: the package's `__name__`.
        where: attribute name -> submodule that defines it (None: the
            attribute is the submodule of that name).
    """

    def __getattr__(name):
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        if where[name] is None:
            return importlib.import_module(f"{package}.{name}")
        return getattr(importlib.import_module(f"{package}.{where[name]}"), name)

    return __getattr__
