"""The project's user-facing errors: every message names the cause and the fix.

`AdnetError` is the one base of every stage's user-facing errors (export's PipelineError, plugins' PluginError, the
server's ServerError, the benchmarks' BenchError, the deployment's CheckError and BalancerError, the client's
ClientError), so a CLI reports any of them the same way: `reports_errors` wraps a `main()` and turns one into
"error: <message>" on stderr and exit code 1. Anything else keeps its traceback: it is a bug in this project.

It lives in the client package because that is the one package every stage (and the torch-free client install)
imports anyway; this module imports nothing but the standard library.

The client's own subclasses only say where the problem lies (input files vs. server), so callers can catch
`ClientError` alone.
"""
from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

__all__ = ["AdnetError", "ClientError", "SceneError", "InferenceError", "reports_errors"]

F = TypeVar("F", bound=Callable[..., int])


class AdnetError(Exception):
    """A problem with the user's input or environment, explained in the message (base of every stage's errors)."""


class ClientError(AdnetError):
    """A user-facing failure of the ADNet client (files, arguments or server)."""


class SceneError(ClientError):
    """A scene cannot be loaded: a missing or unreadable file, mismatched frames, bad EVs, an unknown layout."""


class InferenceError(ClientError):
    """The server is unreachable, not ready, lacks the model, refused the request or answered nonsense."""


def reports_errors(main: F) -> F:
    """Decorate a CLI's main(): an AdnetError becomes "error: <message>" on stderr and exit code 1."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except AdnetError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

    return wrapper
