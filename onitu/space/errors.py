"""Exceptions raised by the tuple space, in-process and over the network alike."""


class SpaceError(Exception):
    """Base class of every error the tuple space raises."""

    code = "error"


class InvalidTuple(SpaceError, ValueError):
    """A tuple or template is malformed (wrong top-level type, non-str dict key, unsupported value)."""

    code = "invalid"


class RequestExpired(SpaceError, TimeoutError):
    """``take``/``read`` found no match before the timeout (``timeout=0``: nothing matched at once)."""

    code = "expired"


class Cancelled(SpaceError):
    """A blocked request was cancelled (its session or the space closed)."""

    code = "cancelled"


class NoSuchEntry(SpaceError, KeyError):
    """``renew``/``cancel`` named a tuple that is no longer in the space."""

    code = "no_entry"


class EventsLost(SpaceError):
    """A notify could not resume: events after the requested id are no longer retained."""

    code = "events_lost"


class ProtocolError(SpaceError):
    """A peer sent a frame that is not a valid message of this protocol."""

    code = "protocol"


class Unavailable(SpaceError, ConnectionError):
    """The space could not be reached (or discovered) within the allowed time."""

    code = "unavailable"


class HandshakeRefused(Unavailable):
    """The server refused this client at the CURVE handshake (unknown key, no CURVE, another server key)."""

    code = "handshake_refused"


class NotPrimary(SpaceError):
    """The server is not the current primary (it is a secondary, or was demoted)."""

    code = "not_primary"


class SessionExpired(SpaceError):
    """The client's session is unknown to the server (it missed its TTL, or never said hello)."""

    code = "session_expired"


class ServerError(SpaceError):
    """The server failed while handling a request; the message says why."""

    code = "server"


class Refused(SpaceError):
    """The server will not do this request as it stands: sending it again gets the same answer, so clients
    raise it at once and never re-send it (a bounded regex, a limit, a revoked key)."""

    code = "refused"


class RegexTooSlow(Refused):
    """A template regex did not finish matching within the server's bound."""

    code = "regex_too_slow"


class LimitExceeded(Refused):
    """The request would take a client key past one of its limits (tuples, bytes, sessions, blocked requests)."""

    code = "limit"


class KeyRevoked(Refused):
    """The CURVE key this client connects with is no longer authorized."""

    code = "key_revoked"


ERRORS: dict[str, type[SpaceError]] = {
    cls.code: cls
    for cls in (
        SpaceError, InvalidTuple, RequestExpired, Cancelled, NoSuchEntry, EventsLost, ProtocolError,
        Unavailable, NotPrimary, SessionExpired, ServerError, Refused, RegexTooSlow, LimitExceeded, KeyRevoked,
        HandshakeRefused,
    )
}
