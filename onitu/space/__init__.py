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

# loaded on first use (see __getattr__): the in-process space and templates bring msgpack and the store, which a
# program needing only the errors (onitu make's start-up) or a client does not pay for
_LAZY = {"Entry": "handles", "Event": "handles", "TupleSpace": "local", "Range": "template", "Symbol": "template",
         "Template": "template"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


class _Package(types.ModuleType):
    """This package's module object: ``connect`` and ``aconnect`` load ZeroMQ, so they are imported on first use
    (a program that only needs the in-process space, such as a local ``onitu make``, never pays for ZeroMQ)."""

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
