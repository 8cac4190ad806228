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
from onitu.space.handles import Entry, Event
from onitu.space.local import TupleSpace
from onitu.space.template import Range, Symbol, Template


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
