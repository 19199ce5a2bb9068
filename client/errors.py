"""The one exception users of the client see: every message names the cause and the fix.

Subclasses only say where the problem lies (input files vs. server), so callers can catch `ClientError` alone.
Internal bugs are not ClientErrors and keep their tracebacks.
"""


class ClientError(Exception):
    """A user-facing failure of the ADNet client (files, arguments or server)."""


class SceneError(ClientError):
    """A scene cannot be loaded: a missing or unreadable file, mismatched frames, bad EVs, an unknown layout."""


class InferenceError(ClientError):
    """The server is unreachable, not ready, lacks the model, refused the request or answered nonsense."""
