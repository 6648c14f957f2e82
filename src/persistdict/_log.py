"""The library's logger, ``logging.getLogger("persistdict")``, imported on first use.

``logging`` (with ``traceback``, ``string``, ``threading``...) costs more at start-up
than everything else a program that only opens a store and reads it imports, and
most such programs never log. Records go through the real logger, unchanged;
a debug or info record is dropped without importing ``logging`` while it is not
imported: nothing can have configured a handler or a level that would show it
(an unconfigured logging shows only warnings and above).
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)
if TYPE_CHECKING:
    from logging import Logger
    from typing import Any

__all__ = ["logger"]

NAME = "persistdict"


def real_logger() -> Logger:
    import logging

    return logging.getLogger(NAME)


class _LazyLogger:
    """The parts of ``logging.Logger`` the library uses. ``stacklevel=2``: the
    record names the caller's file and line, not this module."""

    __slots__ = ()

    def debug(self, msg: str, *args: object, **kwargs: Any) -> None:
        if "logging" in sys.modules:
            real_logger().debug(msg, *args, stacklevel=2, **kwargs)

    def info(self, msg: str, *args: object, **kwargs: Any) -> None:
        if "logging" in sys.modules:
            real_logger().info(msg, *args, stacklevel=2, **kwargs)

    def warning(self, msg: str, *args: object, **kwargs: Any) -> None:
        real_logger().warning(msg, *args, stacklevel=2, **kwargs)

    def error(self, msg: str, *args: object, **kwargs: Any) -> None:
        real_logger().error(msg, *args, stacklevel=2, **kwargs)


logger = _LazyLogger()
