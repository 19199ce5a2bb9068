"""User-facing errors of the export stages: the message names the cause and the fix.

Anything else raised from export/ is a bug in this project, not a problem with the user's input.
"""

from client.errors import AdnetError


class PipelineError(AdnetError):
    """A problem with the user's input or environment, explained in the message."""


class CheckpointError(PipelineError):
    """A checkpoint that cannot be read or does not fit the model."""
