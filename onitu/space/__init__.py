"""onitu.space: a Linda tuple space with Ruby Rinda's semantics, in-process or served over ZeroMQ.

>>> from onitu.space import TupleSpace
>>> ts = TupleSpace()
>>> ts.write(("task", 1)).id
1
>>> ts.take(("task", int))
('task', 1)
"""

import sys
import types
from typing import Any

from onitu.space.errors import (
    Cancelled,
    EventsLost,
    InvalidTuple,
    NoSuchEntry,
    RequestExpired,
    SessionExpired,
    SpaceError,
    Unavailable,
)

# what _Package.__getattr__ loads on first use: the in-process space and templates bring msgpack and the store
_LAZY = {"Entry": "handles", "Event": "handles", "TupleSpace": "local", "Range": "template", "Symbol": "template",
         "Template": "template"}


class _Package(types.ModuleType):
    """This package's module object, which imports what brings heavy dependencies on first use: ``connect`` and
    ``aconnect`` load ZeroMQ, the in-process space and templates msgpack and the store (a local ``onitu make`` never
    pays for ZeroMQ; a program needing only the errors, such as its start-up, pays for neither)."""

    def __getattr__(self, name: str) -> Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{module}"), name)

    @property
    def connect(self) -> Any:
        from onitu.space.connect import connect

        return connect

    @connect.setter
    def connect(self, submodule: Any) -> None:  # the import system records onitu.space.connect here: keep the function
        pass

    @property
    def aconnect(self) -> Any:
        from onitu.space.connect import aconnect

        return aconnect


sys.modules[__name__].__class__ = _Package

__all__ = [
    "Cancelled", "Entry", "Event", "EventsLost", "InvalidTuple", "NoSuchEntry", "Range", "RequestExpired",
    "SessionExpired", "SpaceError", "Symbol", "Template", "TupleSpace", "Unavailable", "aconnect", "connect",
]
