"""The one exception the GBCS layer raises for bad bytes and bad signatures."""

from __future__ import annotations


class ApduError(ValueError):
    """A GBCS APDU is malformed, or its signature is missing or wrong; ``reason`` says which.

    A ``ValueError`` so that callers translating "bad input" at the DUIS boundary
    catch it with the rest; ``reason`` is kept apart for the response detail.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
