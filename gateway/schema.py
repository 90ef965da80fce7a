"""XSD validation of inbound and outbound documents, dispatched on the root's namespace.

Compiling an XSD is slow and validating is fast, so :func:`load_schemas`
compiles everything once at start-up and :meth:`DocumentSchemas.validate` only
validates. The project's own schemas (``schemas/``) always apply; the official
DUIS 5.4 XSD (``gateway.toml``'s optional ``duis_xsd``) applies in addition to
the ``sr`` namespace when configured.

A namespace is known only if :data:`PROJECT_SCHEMAS` lists it; any other root
is refused with ``Check.DOCUMENT_TYPE`` before validation. The allowed root
names are listed too, because an XSD makes *every* global element a valid root
and ours declares body elements globally (see ``schemas/dcc-gateway-duis.xsd``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from lxml import etree

from gateway.checks import Check, VerificationError
from gateway.namespaces import DIRECTIVE, DS, SR

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas"
"""The project's XSDs; the package is installed editable, so this is the source tree."""


@dataclass(frozen=True, slots=True)
class SchemaSource:
    """One project XSD: the namespace it covers and the root elements accepted in it."""

    namespace: str
    file: str
    """File name under :data:`SCHEMA_DIR`."""
    roots: frozenset[str]
    """Local names of the elements that may be the document root."""


PROJECT_SCHEMAS: tuple[SchemaSource, ...] = (
    SchemaSource(SR, "dcc-gateway-duis.xsd", frozenset({"Request", "Response"})),
    SchemaSource(DIRECTIVE, "dcc-gateway-directive.xsd", frozenset({"Directive"})),
)

_MAX_DETAIL = 300
_PREFIXES: Mapping[str, str] = MappingProxyType({SR: "sr", DS: "ds"})
_CLARK = re.compile(r"\{([^}]*)\}")


@dataclass(frozen=True, slots=True)
class _NamespaceRule:
    roots: frozenset[str]
    schemas: tuple[etree.XMLSchema, ...]
    """Applied in order; the project's own schema first, then the official one."""


class DocumentSchemas:
    """Compiled schemas per root namespace. Built by :func:`load_schemas`.

    Holds no per-call state of its own, but an lxml ``XMLSchema`` keeps its last
    error log on itself, so give each thread that validates its own instance.
    """

    def __init__(self, rules: Mapping[str, _NamespaceRule]) -> None:
        self._rules: Mapping[str, _NamespaceRule] = MappingProxyType(dict(rules))

    @property
    def namespaces(self) -> frozenset[str]:
        """The root namespaces this instance can validate."""
        return frozenset(self._rules)

    def validate(self, root: etree._Element) -> None:
        """Returns if ``root`` is valid under every schema for its namespace; raises otherwise.

        Raises ``VerificationError(Check.DOCUMENT_TYPE)`` for a root it has no
        schema for and ``VerificationError(Check.SCHEMA)`` with the first error.
        """
        rule = self._rule_for(root)
        for schema in rule.schemas:
            if not schema.validate(root):
                raise VerificationError(Check.SCHEMA, _first_error(schema.error_log))

    def _rule_for(self, root: etree._Element) -> _NamespaceRule:
        if not isinstance(root.tag, str):
            raise VerificationError(Check.DOCUMENT_TYPE, "the document has no root element")
        namespace, _, local = root.tag[1:].partition("}") if root.tag.startswith("{") else ("", "", root.tag)
        rule = self._rules.get(namespace)
        if rule is None or local not in rule.roots:
            raise VerificationError(Check.DOCUMENT_TYPE, f"no schema for a {_short(root.tag)} document")
        return rule


def load_schemas(official_xsd: Path | None = None) -> DocumentSchemas:
    """Compiles the project's schemas, plus the official DUIS XSD for ``sr`` when given.

    Raises ``ValueError`` naming the file when an XSD cannot be read or compiled:
    a start-up configuration error, not a request error.
    """
    rules = {
        source.namespace: _NamespaceRule(source.roots, (compile_xsd(SCHEMA_DIR / source.file),))
        for source in PROJECT_SCHEMAS
    }
    if official_xsd is not None:
        sr_rule = rules[SR]
        rules[SR] = _NamespaceRule(sr_rule.roots, (*sr_rule.schemas, compile_xsd(official_xsd)))
    return DocumentSchemas(rules)


def compile_xsd(path: Path) -> etree.XMLSchema:
    """Compiles one XSD; imports resolve relative to its own location, never over the network."""
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    try:
        return etree.XMLSchema(etree.parse(str(path), parser))
    except (OSError, etree.XMLSyntaxError, etree.XMLSchemaParseError) as exc:
        raise ValueError(f"cannot compile XML schema {path}: {exc}") from exc


def _first_error(log: etree._ListErrorLog) -> str:
    """``line N: message`` for the first error, with namespaces shortened to prefixes."""
    errors = [entry for entry in log if entry.level >= etree.ErrorLevels.ERROR]
    if not errors:
        return "the document is not valid"
    first = errors[0]
    message = _short(first.message.strip())
    detail = f"line {first.line}: {message}" if first.line > 0 else message
    return detail if len(detail) <= _MAX_DETAIL else detail[: _MAX_DETAIL - 1] + "…"


def _short(text: str) -> str:
    """Rewrites Clark names (``{uri}Local``) with the usual prefix (``sr:Local``)."""
    return _CLARK.sub(lambda match: _prefix_for(match.group(1)), text)


def _prefix_for(namespace: str) -> str:
    prefix = _PREFIXES.get(namespace)
    return f"{prefix}:" if prefix else f"{{{namespace}}}"
