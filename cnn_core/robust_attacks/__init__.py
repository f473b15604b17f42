"""The attacks of the Robustness lab, one file each, found here by name: a module of this package that defines
``ATTACK`` (a ``base.Attack``) is in the registry. Adding an attack is one new file plus its test; the page, the
command line (``robustness``) and the report list what ``ATTACKS`` holds (docs/architecture.md)."""

from __future__ import annotations

import importlib
import pkgutil

from .base import DEFAULTS, Attack, AttackSettings, input_gradient, project


def _discover() -> dict[str, Attack]:
    found = []
    for module in pkgutil.iter_modules(__path__):
        attack = getattr(importlib.import_module(f"{__name__}.{module.name}"), "ATTACK", None)
        if isinstance(attack, Attack):
            found.append(attack)
    return {a.name: a for a in sorted(found, key=lambda a: (a.order, a.name))}


ATTACKS: dict[str, Attack] = _discover()  # name → attack, weakest first (by ``order``)


def get_attack(name: str) -> Attack:
    """The registered attack called ``name``; a ValueError naming the registered ones otherwise."""
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}: the registered attacks are {', '.join(ATTACKS)}")
    return ATTACKS[name]


__all__ = ["ATTACKS", "DEFAULTS", "Attack", "AttackSettings", "get_attack", "input_gradient", "project"]
