"""The real DCC Boxed client, as a test client: its signing tool and its DUIS parser.

* ``@smartdcc/duis-sign-wrap`` ships DCC Boxed's signing tool (dccboxed-signing-tool) as
  ``dist/tool.jar``: ``Sign`` adds the XML signature with the ZAZ1 key of the RequestID's
  originator (embedded in the jar) and replaces the RequestID counter with the current time in
  milliseconds unless ``--preserveCounter``; ``Validate`` checks an answer's signature against
  the ZAZ1 certificate it names (and the DUIS XSD the jar carries) and prints what was signed.
* ``@smartdcc/duis-parser`` turns DUIS into the JSON a DCC Boxed harness reads.

Both are installed with npm into ``.cache/boxed-client`` (gitignored), pinned to the versions
below. The jar runs once per batch through ``BoxedBatch.java`` (the tool's own entry points,
one document at a time; needs a JDK's source launcher), the parser once per batch through
``parse_duis.js``. When something is missing a test skips with the reason, or fails under CI
(``CI`` set), where ``scripts/run-tests`` has installed Java and node.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
PROJECT_ROOT = HERE.parents[1]
CACHE = PROJECT_ROOT / ".cache" / "boxed-client"
PACKAGES = {"@smartdcc/duis-sign-wrap": "0.1.2", "@smartdcc/duis-parser": "0.6.0"}
BATCH_DRIVER = HERE / "BoxedBatch.java"
PARSER_SCRIPT = HERE / "parse_duis.js"
_TIMEOUT = 600


class ClientUnavailable(Exception):
    """The DCC Boxed client cannot be set up here (with why)."""


def unavailable(reason: str) -> None:
    """Skips the calling test, or fails it under CI, where the client must be there."""
    message = f"the DCC Boxed client is unavailable: {reason}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI installs Java, node and npm through scripts/run-tests)")
    pytest.skip(message)


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What one run of the signing tool's Sign or Validate on one document gave."""

    exit_code: int
    """The tool's result code: 0 success, 2 application error, 3 missing key, 10 XSD validation failed."""
    output: bytes
    """Sign: the signed document; Validate: what was signed (the document without its signature)."""
    log: str
    """The tool's own messages (stderr)."""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass(frozen=True)
class BoxedClient:
    java: str
    node: str
    jar: Path
    node_modules: Path

    @classmethod
    def install(cls) -> BoxedClient:
        """The client, installing the npm packages into the cache first when they are not there."""
        java, node, npm = (shutil.which(tool) for tool in ("java", "node", "npm"))
        if java is None or node is None or npm is None:
            missing = [name for name, path in (("java", java), ("node", node), ("npm", npm)) if path is None]
            raise ClientUnavailable(f"{', '.join(missing)} not installed (Debian: default-jdk-headless, nodejs, npm)")
        if shutil.which("javac") is None:
            raise ClientUnavailable("no JDK: the batch driver runs through the JDK's source launcher (default-jdk-headless)")
        node_modules = CACHE / "node_modules"
        if not all(_installed_version(node_modules, name) == version for name, version in PACKAGES.items()):
            _npm_install(npm)
        return cls(java, node, node_modules / "@smartdcc" / "duis-sign-wrap" / "dist" / "tool.jar", node_modules)

    # --- the signing tool --------------------------------------------------------------

    def sign(self, documents: Sequence[bytes], *, preserve_counter: bool = False) -> list[ToolResult]:
        return self._run_tool("sign-preserve" if preserve_counter else "sign", documents)

    def validate(self, documents: Sequence[bytes]) -> list[ToolResult]:
        return self._run_tool("validate", documents)

    def _run_tool(self, mode: str, documents: Sequence[bytes]) -> list[ToolResult]:
        with tempfile.TemporaryDirectory(prefix="boxed-tool-") as folder:
            paths = []
            for index, document in enumerate(documents):
                path = Path(folder) / f"{index:05d}.xml"
                path.write_bytes(document)
                paths.append(path)
            results: list[ToolResult] = []
            while len(results) < len(paths):
                results.extend(self._batch(mode, paths[len(results):]))
            return results

    def _batch(self, mode: str, paths: Sequence[Path]) -> list[ToolResult]:
        """Runs the driver over ``paths`` until it ends; a document on which the tool exits the JVM
        gets that exit code, and the caller starts again after it."""
        requests = "".join(f"{mode} {path}\n" for path in paths).encode()
        process = subprocess.run(
            [self.java, "-cp", str(self.jar), str(BATCH_DRIVER)],
            input=requests,
            capture_output=True,
            timeout=_TIMEOUT,
            check=False,
        )
        results = _read_replies(process.stdout)
        if len(results) < len(paths):
            if process.returncode == 0:
                raise RuntimeError(f"the batch driver stopped early without an error: {process.stderr.decode()[-2000:]}")
            results.append(ToolResult(process.returncode, b"", process.stderr.decode(errors="replace")[-2000:]))
        return results

    # --- the parser ---------------------------------------------------------------------

    def parse(self, documents: Sequence[bytes]) -> list[dict[str, object]]:
        """``parseDuis('simplified', …)`` of each document: ``{"ok": True, "duis": …}`` or ``{"ok": False, "error": …}``."""
        with tempfile.TemporaryDirectory(prefix="boxed-parse-") as folder:
            paths = []
            for index, document in enumerate(documents):
                path = Path(folder) / f"{index:05d}.xml"
                path.write_bytes(document)
                paths.append(str(path))
            listing = Path(folder) / "documents.json"
            listing.write_text(json.dumps(paths))
            process = subprocess.run(
                [self.node, str(PARSER_SCRIPT), str(listing)],
                capture_output=True,
                timeout=_TIMEOUT,
                check=True,
                env={**os.environ, "NODE_PATH": str(self.node_modules)},
            )
        parsed: list[dict[str, object]] = json.loads(process.stdout)
        return parsed


def _read_replies(stream: bytes) -> list[ToolResult]:
    results = []
    position = 0
    while position < len(stream):
        end = stream.index(b"\n", position)
        code, out_length, err_length = (int(part) for part in stream[position:end].split())
        start = end + 1
        output = stream[start : start + out_length]
        log = stream[start + out_length : start + out_length + err_length]
        results.append(ToolResult(code, output, log.decode(errors="replace")))
        position = start + out_length + err_length
    return results


def _installed_version(node_modules: Path, name: str) -> str | None:
    try:
        version: str = json.loads((node_modules / name / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None
    return version


def _npm_install(npm: str) -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    wanted = [f"{name}@{version}" for name, version in PACKAGES.items()]
    try:
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--no-save", "--prefix", str(CACHE), *wanted],
            capture_output=True,
            timeout=_TIMEOUT,
            check=True,
        )
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()[-5:]
        raise ClientUnavailable(f"npm install {' '.join(wanted)} failed: {' | '.join(tail)}") from exc
    except subprocess.TimeoutExpired as exc:
        raise ClientUnavailable(f"npm install {' '.join(wanted)} timed out (is the registry reachable?)") from exc
