"""TensorRT in this process: one logger that keeps the errors for our messages, Polygraphy bound to the same TensorRT,
the AdnetDCNv2 plugin registered (and checked), file hashes.

The engine build (export.build_engine), the runner (export.engine_runner), verify-engine and the plugin pre-flight
share this; none of them imports another's module for it.

- `trt_logger(trt)`: TensorRT expects one ILogger per process; ours records the recent messages so that a failed
  call can be reported with what TensorRT said (`tensorrt_errors`), and it is also the logger Polygraphy's loaders
  use (`polygraphy(trt)` installs it).
- `polygraphy(trt)`: polygraphy.backend.trt for this TensorRT. Polygraphy picks tensorrt or tensorrt_rtx when its
  TensorRT modules are first imported (polygraphy.config.USE_TENSORRT_RTX), so a process uses one of the two.
- `load_plugins(trt, library)`: IPluginRegistry.load_library (which calls the library's getCreators) after checking
  that the library was linked against this TensorRT; or the CI build-only Python stand-in. `dlopen_plugin` is the
  other path (what Triton, Polygraphy's --plugins and LD_PRELOAD do): dlopen, the library registers itself.
"""
from __future__ import annotations

import collections
import contextlib
import ctypes
import hashlib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator, Optional

from export import trt_python_plugin
from export.errors import PipelineError
from export.trt_compat import CONTAINER_HINT, POLYGRAPHY_VERSION, TensorRT
from plugins.dcnv2 import contract

__all__ = ["DEFAULT_PLUGIN_LIBRARY", "POLYGRAPHY_VERSION", "PluginLibraryError", "PolygraphyNotFound", "Plugins",
           "trt_logger", "tensorrt_errors", "stand_in_errors", "polygraphy", "quiet_polygraphy", "polygraphy_errors",
           "sha256_file", "linked_tensorrt_libraries", "registered_creator", "load_plugins", "dlopen_plugin"]

DEFAULT_PLUGIN_LIBRARY = Path("build") / "libadnet_plugins.so"


class PluginLibraryError(PipelineError):
    """The plugin library is missing, was built for another TensorRT, or does not provide AdnetDCNv2."""


class PolygraphyNotFound(PipelineError):
    """Polygraphy is not importable, or is bound to the other TensorRT in this process."""


# ---- logging ---------------------------------------------------------------------------------------------------

_loggers: dict[str, Any] = {}


def trt_logger(trt: TensorRT, verbose: bool = False):
    """The process's logger for this TensorRT module: prints warnings and errors (everything with verbose) to
    stderr and keeps the last 200 messages; `logger.count` is a mark for `tensorrt_errors(logger, since=mark)`."""
    key = trt.module.__name__
    if key not in _loggers:
        Severity = trt.module.ILogger.Severity

        class Logger(trt.module.ILogger):
            def __init__(self):
                trt.module.ILogger.__init__(self)
                self.count = 0
                self.records: collections.deque = collections.deque(maxlen=200)  # (number, severity, message)
                self.echo = Severity.WARNING

            def log(self, severity, message):
                self.records.append((self.count, severity, message))
                self.count += 1
                if int(severity) <= int(self.echo):
                    print(f"[{trt.name}] {severity.name}: {message}", file=sys.stderr)

            def errors(self, since: int = 0) -> list[str]:
                return [m for n, s, m in list(self.records) if n >= since and int(s) <= int(Severity.ERROR)]

        _loggers[key] = Logger()
    logger = _loggers[key]
    logger.echo = trt.module.ILogger.Severity.VERBOSE if verbose else trt.module.ILogger.Severity.WARNING
    return logger


def tensorrt_errors(logger, since: int) -> str:
    """"; TensorRT said: ..." with the last errors logged since the mark `since` (logger.count then); "" if none."""
    errors = logger.errors(since)
    return ("; TensorRT said: " + " | ".join(errors[-5:])) if errors else ""


def stand_in_errors(since: int) -> str:
    """" -- the plugin said: ..." with the Python stand-in's errors since the mark (len(trt_python_plugin.errors)):
    TensorRT reports an exception raised in a Python plugin callback only as a failed call."""
    errors = trt_python_plugin.errors[since:]
    return (" -- the plugin said: " + " | ".join(errors[-3:])) if errors else ""


# ---- Polygraphy ------------------------------------------------------------------------------------------------

def polygraphy(trt: TensorRT, verbose: bool = False) -> ModuleType:
    """polygraphy.backend.trt bound to `trt` (tensorrt or tensorrt_rtx), with trt_logger(trt) as its TensorRT logger
    and its own log at warnings (info with verbose)."""
    try:
        from polygraphy import config
    except ImportError as exc:
        raise PolygraphyNotFound(
            f"Polygraphy is not importable in {sys.executable} ({exc}): pip install polygraphy=={POLYGRAPHY_VERSION} "
            f"(pure Python, no dependencies; in an NGC container add --no-deps so that its numpy stays)") from exc
    wanted = trt.backend == "rtx"
    if "polygraphy.backend.trt" not in sys.modules:
        config.USE_TENSORRT_RTX = wanted
    elif config.USE_TENSORRT_RTX != wanted:
        bound = "TensorRT-RTX" if config.USE_TENSORRT_RTX else "TensorRT"
        raise PolygraphyNotFound(f"Polygraphy is already bound to {bound} in this process, so it cannot drive {trt}: "
                                 f"use one TensorRT per process")
    import polygraphy.backend.trt as backend
    from polygraphy.backend.trt import util as backend_util

    backend_util.TRT_LOGGER = trt_logger(trt, verbose)
    quiet_polygraphy(verbose)
    return backend


def quiet_polygraphy(verbose: bool = False) -> None:
    """Polygraphy's own log at warnings (info with verbose): its per-step info lines would bury ours."""
    from polygraphy.logger import G_LOGGER

    G_LOGGER.module_severity = G_LOGGER.INFO if verbose else G_LOGGER.WARNING


@contextlib.contextmanager
def polygraphy_errors(trt: TensorRT, error: type[PipelineError], what: str,
                      extra: Callable[[], str] = lambda: "") -> Iterator[None]:
    """Turn a PolygraphyException raised inside the block into `error` ("<what>: <Polygraphy's message>; TensorRT
    said: ...<extra()>"): Polygraphy reports failures by raising after logging, TensorRT's own errors are in our
    logger."""
    from polygraphy.exception import PolygraphyException

    logger = trt_logger(trt)
    mark = logger.count
    try:
        yield
    except PolygraphyException as exc:
        raise error(f"{what}: {exc}{tensorrt_errors(logger, mark)}{extra()}") from exc


# ---- plugins ---------------------------------------------------------------------------------------------------

@dataclass
class Plugins:
    """Where the AdnetDCNv2 creator came from."""

    implementation: str  # "library" | "python-stand-in"
    library: Optional[Path]
    library_sha256: Optional[str]
    creator: Any  # kept alive for the process: the registry holds a raw pointer

    @property
    def runnable(self) -> bool:
        return self.implementation == "library"

    def to_dict(self) -> dict:
        return {"name": contract.PLUGIN_NAME, "version": contract.PLUGIN_VERSION,
                "namespace": contract.PLUGIN_NAMESPACE, "fields": [name for name, _ in contract.FIELDS],
                "implementation": self.implementation,
                "library": str(self.library) if self.library else None, "library_sha256": self.library_sha256,
                "runnable": self.runnable,
                "note": None if self.runnable else trt_python_plugin.STAND_IN_NOTE}


_libraries: dict[tuple[str, str], Plugins] = {}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def linked_tensorrt_libraries(library: Path) -> set[str]:
    """The TensorRT core libraries (libnvinfer.so.N, libtensorrt_rtx.so.N) named in a shared library's dynamic
    string table: what it was linked against."""
    data = Path(library).read_bytes()
    return {m.decode() for m in re.findall(rb"(libnvinfer\.so\.\d+|libtensorrt_rtx\.so\.\d+)", data)}


def registered_creator(trt: TensorRT):
    """The registry's AdnetDCNv2 creator (the contract's name, version, namespace), or None. Looked up in the list of
    all creators: get_creator logs an error for a name it does not find, and "not there yet" is no error here."""
    wanted = (contract.PLUGIN_NAME, contract.PLUGIN_VERSION, contract.PLUGIN_NAMESPACE)
    for creator in trt.module.get_plugin_registry().all_creators:
        if (creator.name, creator.plugin_version, creator.plugin_namespace) == wanted:
            return creator
    return None


def _checked_library(trt: TensorRT, library: Optional[Path]) -> Path:
    library = Path(library or DEFAULT_PLUGIN_LIBRARY)
    if not library.is_file():
        raise PluginLibraryError(
            f"plugin library {library} not found: build it with `make plugin` (needs TensorRT: {CONTAINER_HINT})")
    linked = linked_tensorrt_libraries(library)
    if linked and trt.library_soname not in linked:
        raise PluginLibraryError(
            f"{library} was built for another TensorRT (it links {', '.join(sorted(linked))}; this is {trt}, which "
            f"needs {trt.library_soname}): rebuild it with `make plugin` inside the container you build and serve "
            f"with")
    if registered_creator(trt) is not None:
        raise PluginLibraryError(f"{contract.PLUGIN_NAME} is already registered in this process (the Python "
                                 f"stand-in or another copy of the library); load one plugin source per process")
    return library


def _missing_creator(library: Path) -> PluginLibraryError:
    return PluginLibraryError(
        f"{library} loaded but registers no {contract.PLUGIN_NAME} version {contract.PLUGIN_VERSION} in namespace "
        f"'{contract.PLUGIN_NAMESPACE}' (the contract in plugins/dcnv2/contract.py); it is from another version of "
        f"the plugin: rebuild it with `make plugin`")


def load_plugins(trt: TensorRT, library: Optional[Path] = None, *, stand_in: bool = False) -> Plugins:
    """Register the AdnetDCNv2 creator: from the C++ plugin library (IPluginRegistry.load_library, which calls its
    getCreators), or the Python stand-in (export/trt_python_plugin.py) when stand_in is set. Idempotent."""
    if stand_in:
        return Plugins("python-stand-in", None, None, trt_python_plugin.register(trt.module))
    resolved = Path(library or DEFAULT_PLUGIN_LIBRARY).resolve()
    key = (trt.module.__name__, str(resolved))
    if key in _libraries:
        return _libraries[key]
    library = _checked_library(trt, library)
    logger = trt_logger(trt)
    mark = logger.count
    handle = trt.module.get_plugin_registry().load_library(str(library))
    if handle is None:
        raise PluginLibraryError(f"{trt} could not load {library}{tensorrt_errors(logger, mark)}; rebuild it with "
                                 f"`make plugin` against this TensorRT")
    creator = registered_creator(trt)
    if creator is None:
        raise _missing_creator(library)
    plugins = Plugins("library", library, sha256_file(library), (handle, creator))
    _libraries[key] = plugins
    return plugins


def dlopen_plugin(trt: TensorRT, library: Optional[Path] = None) -> Plugins:
    """Load the plugin library the way Triton's TensorRT backend does (dlopen with RTLD_NOW | RTLD_LOCAL; the library
    registers its creator while it loads) and check that the creator is there."""
    library = _checked_library(trt, library)
    try:
        handle = ctypes.CDLL(str(library.resolve()), mode=os.RTLD_NOW | os.RTLD_LOCAL)
    except OSError as exc:
        raise PluginLibraryError(f"dlopen({library}) failed: {exc}; rebuild it with `make plugin` in the container "
                                 f"you serve with") from exc
    creator = registered_creator(trt)
    if creator is None:
        raise _missing_creator(library)
    return Plugins("library", library, sha256_file(library), (handle, creator))
