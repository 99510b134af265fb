"""Lazy package exports (PEP 562): a package names what it exports and where it lives, and each
name's module is imported on first use. So ``import repgraph`` and ``repgraph --help`` stay
instant and import neither torch nor matplotlib until an analysis needs them."""
from __future__ import annotations

import importlib


def lazy_exports(package: str, where: dict[str, str]):
    """``(__getattr__, __dir__)`` for ``package``: ``where`` maps each exported name to the
    module (relative to ``package``) that defines it. Use only where no exported name equals a
    submodule's name (an imported submodule would shadow it)."""

    def __getattr__(name: str):
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name], package), name)
        setattr(importlib.import_module(package), name, value)  # later look-ups skip this hook
        return value

    def __dir__():
        return sorted(set(where) | {"__version__"})

    return __getattr__, __dir__
