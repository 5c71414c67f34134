"""Where a command-line tool gets a PIN: never from its own arguments.

A command line is public on a shared machine (``ps``, ``/proc/PID/cmdline``,
shell history), so a PIN given as ``--pin 1234`` is a PIN told to everyone.
The tools take it instead from a prompt on the terminal, from a file
descriptor (``--pin-fd 3 3<file``, or a pipe from a password manager), or from
an environment variable the caller names (``--pin-env VAR``; a process's
environment is readable by its own user and root only).
"""

from __future__ import annotations

import argparse
import getpass
import os
from collections.abc import Mapping

MAX_PIN_CHARS = 64  # read no further from a descriptor than any PIN could be

PIN_IN_ARGV = (
    "a PIN on the command line shows in ps and in shell history: "
    "type it at the prompt, or use --pin-fd N or --pin-env VAR"
)


class PinInputError(ValueError):
    """The PIN source named on the command line gave no usable PIN."""


def add_pin_options(parser: argparse.ArgumentParser, *, what: str) -> None:
    """``--pin-fd`` and ``--pin-env``, plus a hidden ``--pin`` kept only to refuse it."""
    parser.add_argument(
        "--pin-fd", type=int, metavar="N", help=f"read {what} from file descriptor N (one line)"
    )
    parser.add_argument(
        "--pin-env", metavar="VAR", help=f"read {what} from the environment variable VAR"
    )
    parser.add_argument("--pin", help=argparse.SUPPRESS)


def read_pin(
    *,
    fd: int | None,
    env_var: str | None,
    prompt: str | None,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """The PIN from ``fd``, else ``env_var``, else a terminal prompt; None if none applies.

    ``prompt`` is asked only when standard input is a terminal.
    """
    if fd is not None:
        return _from_fd(fd)
    if env_var is not None:
        values = os.environ if environ is None else environ
        if env_var not in values:
            raise PinInputError(f"--pin-env {env_var}: that variable is not set")
        return values[env_var].strip()
    if prompt is not None and os.isatty(0):
        return getpass.getpass(prompt)
    return None


def _from_fd(fd: int) -> str:
    try:
        with os.fdopen(fd, "rb", closefd=True) as stream:
            data = stream.readline(MAX_PIN_CHARS + 2)
    except OSError as exc:
        raise PinInputError(f"--pin-fd {fd}: cannot read it ({exc.strerror})") from None
    try:
        return data.decode("ascii").rstrip("\r\n")
    except UnicodeDecodeError:
        raise PinInputError(f"--pin-fd {fd}: a PIN is digits, not binary data") from None
