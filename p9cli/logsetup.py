"""``P9_LOG``: p9's own log lines on stderr (REST retries, trade replays, book resyncs, trade
holes given up ...), one per event, UTC-stamped. Not a setting: a diagnosis switch, like
``P9_DEBUG``; unset, p9 logs nothing."""

from __future__ import annotations

import logging
import os
import sys
import time

from p9cli.errors import ConfigError

LEVELS = ("debug", "info", "warning")


def log_from_env(environ=os.environ) -> None:
    """Send the ``p9cli`` loggers to stderr at the level ``P9_LOG`` names (ConfigError, exit 2,
    for any other value)."""
    value = environ.get("P9_LOG", "").strip().lower()
    if not value:
        return
    if value not in LEVELS:
        raise ConfigError(
            f"P9_LOG={value!r} is not a log level; use one of {', '.join(LEVELS)} (or leave it unset)"
        )
    handler = logging.StreamHandler(sys.stderr)
    formatter = logging.Formatter(
        "%(asctime)s.%(msecs)03dZ p9 %(name)s %(levelname)s: %(message)s", "%Y-%m-%dT%H:%M:%S"
    )
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger("p9cli")
    root.addHandler(handler)
    root.setLevel(value.upper())
