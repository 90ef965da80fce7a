"""DUIS response codes: one enum whose data comes from ``gateway/data/response_codes.json``.

The table is data (STYLE: policy is data) so that the meanings, the SPEC §5
usage and the provenance of each code live in one reviewable file, read once at
import. ``ResponseCode.E4.value == "E4"``; ``ResponseCode.E4.meaning`` and
``.is_success`` come from the file.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Any

CODE_TABLE = "data/response_codes.json"
"""Path of the table inside the ``gateway`` package."""

_ORIGINS = frozenset({"duis", "project-convention"})
_OUTCOMES = {"success": True, "error": False}
_CODE_SHAPE = re.compile(r"\A(?:I0|I99|E[1-9][0-9]{0,5})\Z")


@dataclass(frozen=True, slots=True)
class CodeInfo:
    """One row of the response-code table."""

    code: str
    meaning: str
    """The code's meaning: DUIS's, or this project's for a convention code."""
    is_success: bool
    origin: str
    """``duis`` (public DUIS table) or ``project-convention`` (E40-E43, DOMAIN.md)."""
    gateway_use: str | None
    """When this simulator returns the code (SPEC §5), or None if it never does."""


def load_code_table() -> tuple[CodeInfo, ...]:
    """Reads and checks the packaged table; raises ValueError on a malformed row."""
    text = resources.files("gateway").joinpath(CODE_TABLE).read_text(encoding="utf-8")
    rows = json.loads(text)["codes"]
    infos = tuple(_code_info(row) for row in rows)
    _check_unique(infos)
    return infos


def _code_info(row: dict[str, Any]) -> CodeInfo:
    code, outcome, origin = row["code"], row["outcome"], row["origin"]
    if not _CODE_SHAPE.match(code):
        raise ValueError(f"{CODE_TABLE}: {code!r} is not a DUIS I/E response code")
    if outcome not in _OUTCOMES or _OUTCOMES[outcome] != code.startswith("I"):
        raise ValueError(f"{CODE_TABLE}: {code} has outcome {outcome!r}; I codes succeed, E codes fail")
    if origin not in _ORIGINS:
        raise ValueError(f"{CODE_TABLE}: {code} has unknown origin {origin!r}")
    return CodeInfo(code, row["meaning"], _OUTCOMES[outcome], origin, row["gateway_use"])


def _check_unique(infos: tuple[CodeInfo, ...]) -> None:
    codes = [info.code for info in infos]
    duplicates = sorted({code for code in codes if codes.count(code) > 1})
    if duplicates:
        raise ValueError(f"{CODE_TABLE}: duplicate codes {duplicates}")


CODE_INFO: Mapping[str, CodeInfo] = MappingProxyType({info.code: info for info in load_code_table()})
"""The table, read once at import; read-only."""


class ResponseCode(enum.Enum):
    """A DUIS response code, valued by its code string (``ResponseCode("E4") is ResponseCode.E4``).

    The members are spelled out so that type checkers and grep see them; their
    meanings and provenance come from the data file, and importing this module
    fails if the two ever list different codes.
    """

    I0 = "I0"
    I99 = "I99"
    E1 = "E1"
    E2 = "E2"
    E3 = "E3"
    E4 = "E4"
    E5 = "E5"
    E11 = "E11"
    E12 = "E12"
    E13 = "E13"
    E17 = "E17"
    E19 = "E19"
    E20 = "E20"
    E21 = "E21"
    E30 = "E30"
    E40 = "E40"
    E41 = "E41"
    E42 = "E42"
    E43 = "E43"

    def __str__(self) -> str:
        return self.value

    @property
    def info(self) -> CodeInfo:
        """The whole table row: provenance and SPEC §5 usage too."""
        return CODE_INFO[self.value]

    @property
    def meaning(self) -> str:
        """Short human reason, e.g. for the ``DUIS-Reason`` HTTP header."""
        return self.info.meaning

    @property
    def is_success(self) -> bool:
        """True for the I codes (I0, I99), False for the E codes."""
        return self.info.is_success


def _check_enum_matches_table() -> None:
    members = [code.value for code in ResponseCode]
    if members != list(CODE_INFO):
        raise ValueError(f"ResponseCode {members} and {CODE_TABLE} {list(CODE_INFO)} must list the same codes in order")


_check_enum_matches_table()


def gateway_codes() -> Iterator[ResponseCode]:
    """The codes this simulator returns (those with a ``gateway_use``), in table order."""
    return (code for code in ResponseCode if code.info.gateway_use is not None)
