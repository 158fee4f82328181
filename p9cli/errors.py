"""Errors that the CLI turns into one clear line and an exit code (never a traceback)."""

from __future__ import annotations

EXIT_OK = 0
#: Something failed at run time (an exchange unreachable, a series incomplete, a bad file).
EXIT_FAILURE = 1
#: Bad input: an unknown symbol, exchange or timeframe, an invalid setting.
EXIT_USAGE = 2
#: A configured service (Redis) does not answer or refuses us (sysexits EX_UNAVAILABLE).
EXIT_UNAVAILABLE = 69
#: Another run holds the lock (cron overlap); try again later (sysexits EX_TEMPFAIL).
EXIT_LOCKED = 75


class P9Error(Exception):
    """An error with a one-line message for the user and the exit code to use."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(P9Error):
    exit_code = EXIT_USAGE


class ServiceUnavailable(P9Error):
    """A configured service (the Redis URL) cannot be used: unreachable, authentication or TLS refused."""

    exit_code = EXIT_UNAVAILABLE


class LockedError(P9Error):
    exit_code = EXIT_LOCKED
