"""Where the third-party test data lives (never copied into the project).

``DCC_SHARED_DIR`` overrides the default ``../shared`` beside the project root.
Tests that need a file call :func:`shared_path`, which skips with a clear reason
when the data is absent.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    return Path(os.environ.get("DCC_SHARED_DIR", PROJECT_ROOT.parent / "shared")).resolve()


def shared_path(*parts: str) -> Path:
    """The path of a shared file or folder; skips the calling test when it is absent."""
    path = shared_dir().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"third-party test data not found: {path} (set DCC_SHARED_DIR to the shared/ folder)")
    return path


def require_xmlsec1() -> str:
    """The xmlsec1 executable; skips the calling test when it is not installed."""
    exe = shutil.which("xmlsec1")
    if exe is None:
        pytest.skip("xmlsec1 is not installed (Debian package xmlsec1; scripts/run-tests installs it)")
    return exe
