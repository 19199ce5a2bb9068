"""Python code run in a fresh interpreter from the repository root: for what a test process cannot show (a module
missing, a second TensorRT in one process, what an import pulls in, a crash)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Mapping, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str, *, absent: Sequence[str] = (), env: Optional[Mapping[str, str]] = None,
               timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `code` with the modules in `absent` unimportable (set to None in sys.modules first); the finished
    process, with text stdout and stderr, whatever its exit status."""
    prelude = "".join(f"import sys; sys.modules[{name!r}] = None\n" for name in absent)
    return _run(["-c", prelude + code], env, timeout)


def run_module(module: str, *args: str, env: Optional[Mapping[str, str]] = None,
               timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m module args...`; the finished process, whatever its exit status."""
    return _run(["-m", module, *args], env, timeout)


def _run(argv: list[str], env, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
