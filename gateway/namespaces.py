"""XML namespaces and qualified names used across the pipeline."""

SR = "http://www.dccinterface.co.uk/ServiceUserGateway"
RA = "http://www.dccinterface.co.uk/ResponseAndAlert"
DS = "http://www.w3.org/2000/09/xmldsig#"
# The gateway's own namespace for directives (SPEC §6).
DIRECTIVE = "urn:x-dcc-gateway:directive:1"


def qname(namespace: str, local: str) -> str:
    """Clark notation, as lxml spells a qualified name."""
    return f"{{{namespace}}}{local}"
