"""How every onitu process logs: one structured line per record, quiet (warnings only) unless told otherwise.

``onitu make`` and ``onitu worker`` start without loading :mod:`logging` (with traceback, linecache, tokenize and
string it was a sixth of ``onitu make``'s own start-up, and a build in memory logs nothing at the default level):
their modules log through :func:`lazy_logger`, and :func:`configure_logging` with ``when_loaded`` configures
logging at the moment any module first imports it, so no record is ever printed unformatted.
"""

from __future__ import annotations

import os
import sys
from typing import Any

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LEVELS = {"NOTSET": 0, "DEBUG": 10, "INFO": 20, "WARN": 30, "WARNING": 30, "ERROR": 40, "CRITICAL": 50, "FATAL": 50}
_METHODS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "exception": 40, "critical": 50}
_threshold = 30  # records below this level are dropped before logging is loaded (see configure_logging)


def configure_logging(default: str = "WARNING", verbose: bool = False, *, when_loaded: bool = False) -> None:
    """Log at ``$ONITU_LOG`` (or ``default``; info with ``verbose``), one structured line per record; with
    ``when_loaded``, only once some module imports :mod:`logging` (now if one has)."""
    global _threshold
    name = "INFO" if verbose else os.environ.get("ONITU_LOG", default).upper()
    level = LEVELS.get(name, 30)
    _threshold = level
    if when_loaded and "logging" not in sys.modules:
        sys.meta_path.insert(0, _ConfigureOnImport(level))
        return
    import logging

    logging.basicConfig(level=level, format=FORMAT)


def lazy_logger(name: str) -> Any:
    """``logging.getLogger(name)``, loading logging only when a record at the configured level is logged."""
    return _LazyLogger(name)


class _LazyLogger:
    __slots__ = ("_logger", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._logger: Any = None

    def __getattr__(self, attr: str) -> Any:
        if "logging" not in sys.modules and _METHODS.get(attr, 99) < _threshold:
            return _drop  # not logged at this level: no need to load logging to find out
        if self._logger is None:
            import logging

            self._logger = logging.getLogger(self.name)
        return getattr(self._logger, attr)


def _drop(*args: Any, **kwargs: Any) -> None:
    return None


class _ConfigureOnImport:
    """A meta path finder that configures logging as soon as it is first imported, then steps aside."""

    def __init__(self, level: int) -> None:
        self.level = level

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "logging":
            return None
        sys.meta_path.remove(self)
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Configuring(spec.loader, self.level)
        return spec


class _Configuring:
    """The logging package's own loader, then ``basicConfig`` on the module it loaded."""

    def __init__(self, loader: Any, level: int) -> None:
        self.loader, self.level = loader, level

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self.loader.exec_module(module)
        module.basicConfig(level=self.level, format=FORMAT)
