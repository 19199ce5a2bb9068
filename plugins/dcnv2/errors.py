"""User-facing errors of plugins/dcnv2: the message names the cause and the fix.

One base class, PluginError; the two kinds also derive from the builtin they replace, so callers that catch
ValueError (bad arguments) or RuntimeError (a build that cannot run here) keep working. Anything else raised from
plugins/ is a bug in this project.
"""

from client.errors import AdnetError


class PluginError(AdnetError):
    """A problem with the caller's input or environment around the AdnetDCNv2 op, explained in the message."""


class PluginArgumentError(PluginError, ValueError):
    """Parameters, shapes, dtypes or fields that the op's core rejects (the message is the core's)."""


class PluginBuildError(PluginError, RuntimeError):
    """A library of plugins/dcnv2 cannot be built or loaded here (missing compiler, make, CUDA toolkit)."""
