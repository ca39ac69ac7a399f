"""The registry of klkit's public functions.

Each public function is declared where it is defined, with the
``@public(family, arrays)`` decorator: its family (the module and kernel
file it belongs to: "dense", "divergence", "tokens", "segments") and the
names of its arguments that take arrays.  The package's ``__all__`` and the
contract tests that every public function must pass (inputs never
modified, any memory layout, thread and batch invariance, torch in and
out, clear errors) are driven by this one list.
"""
from typing import NamedTuple


class Function(NamedTuple):
    name: str
    family: str
    arrays: tuple       # the arguments that take arrays, in signature order


#: name -> Function, in the order the functions were defined
FUNCTIONS = {}

FAMILIES = ("dense", "divergence", "tokens", "segments")


def public(family, arrays):
    """Register the decorated function as public (returned unchanged)."""
    if family not in FAMILIES:
        raise ValueError(f"family: expected one of {FAMILIES}, got {family!r}")

    def register(fn):
        FUNCTIONS[fn.__name__] = Function(fn.__name__, family, tuple(arrays))
        return fn
    return register
