"""The errors that are the user's to fix, and how every command-line entry point reports them.

A command that fails because of bad params, bad data, a missing file or a service that is down
must say what to fix, not show a traceback: the ``posecore`` command and every stage's ``main``
catch :data:`USER_ERRORS`, print ``error: <message>`` on stderr and exit with the error's
``exit_code`` (2). Anything else is a bug and keeps its traceback.

This is a bottom module (it imports nothing from ``posecore``), so the library's exceptions can
inherit from :class:`UserError` without any import going up. To add one more kind of user error,
derive it from :class:`UserError` (beside ``ValueError`` or ``RuntimeError`` as fits its callers)::

    class StorageError(UserError, RuntimeError):
        '''The S3 endpoint failed in a way the user can fix; the message says how.'''
"""

from __future__ import annotations

import sys
from typing import TextIO


class UserError(Exception):
    """Base of the library's errors whose message tells the user what to fix (a service down,
    a bad bundle, an unknown model); ``exit_code`` is the exit status of the command that failed."""

    exit_code: int = 2


USER_ERRORS: tuple[type[BaseException], ...] = (UserError, ValueError, FileNotFoundError)
"""What the entry points report without a traceback: :class:`UserError` (``ConfigError``,
``DataValidationError``, ``StorageError``, ``StackError``, ``RegistryError``,
``TrackingUnavailable``, ...), ``ValueError`` (invalid arguments and params) and
``FileNotFoundError`` (a missing input)."""


def report_user_error(exc: BaseException, stream: TextIO | None = None) -> int:
    """Print ``error: <message>`` on ``stream`` (stderr) and return the exit status (``exc.exit_code``, else 2)."""
    print(f"error: {exc}", file=stream if stream is not None else sys.stderr)
    code = getattr(exc, "exit_code", UserError.exit_code)
    return code if isinstance(code, int) else UserError.exit_code
