"""onitu.space: a Linda tuple space with Ruby Rinda's semantics, in-process or served over ZeroMQ.

>>> from onitu.space import TupleSpace
>>> ts = TupleSpace()
>>> ts.write(("task", 1)).id
1
>>> ts.take(("task", int))
('task', 1)
"""

from onitu.space.connect import aconnect, connect
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

__all__ = [
    "Cancelled", "Entry", "Event", "EventsLost", "InvalidTuple", "NoSuchEntry", "Range", "RequestExpired",
    "SessionExpired", "SpaceError", "Symbol", "Template", "TupleSpace", "Unavailable", "aconnect", "connect",
]
