"""SMKI remote party roles: the subject ``OU`` of an organisation certificate.

The SMKI profile writes the role as two upper-case hex digits (``02``, ``87``,
``89``, ``7F``). Older DCC Boxed certificates wrote the decimal text ``137`` for
dSPXmlSign; :meth:`RemotePartyRole.from_ou_text` refuses that on purpose, so a
caller that wants to tolerate the quirk has to say so where it does.
"""

from __future__ import annotations

import enum
import re

_OU_FORM = re.compile(r"\A[0-9A-F]{2}\Z")


class RemotePartyRole(enum.IntEnum):
    """A remote party role code (SMKI Certificate Policy, DCC Boxed ZAZ1)."""

    RECOVERY = 0x01
    SUPPLIER = 0x02
    NETWORK_OPERATOR = 0x03
    ACB = 0x04
    TRANSITIONAL_COS = 0x05
    WAN_PROVIDER = 0x06
    ISSUING_AUTHORITY = 0x07
    LOAD_CONTROLLER = 0x08
    OTHER = 0x7F
    XML_SIGN = 0x87
    DSP_XML_SIGN = 0x89

    @property
    def ou_text(self) -> str:
        """The subject OU as the profile writes it: two upper-case hex digits."""
        return f"{self.value:02X}"

    @classmethod
    def from_ou_text(cls, text: str) -> RemotePartyRole:
        """Parses a profile-conformant OU; raises ``ValueError`` for anything else.

        Strict on purpose: ``"8"``, ``"87 "``, ``"137"`` or lower-case hex are not
        the profile, and ``int(text, 16)`` alone would accept most of them.
        """
        if not _OU_FORM.match(text):
            raise ValueError(f"remote party role OU is not two upper-case hex digits: {text!r}")
        try:
            return cls(int(text, 16))
        except ValueError:
            raise ValueError(f"unknown remote party role: {text!r}") from None


def ou_text(role: RemotePartyRole) -> str:
    """Function form of :attr:`RemotePartyRole.ou_text`."""
    return role.ou_text
