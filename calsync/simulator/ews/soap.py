"""SOAP envelopes as Exchange writes them: string templates with XML escaping (fast), lxml for reading."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from lxml import etree

from calsync.simulator.versions import ServerVersion

NS_SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
NS_M = "http://schemas.microsoft.com/exchange/services/2006/messages"
NS_T = "http://schemas.microsoft.com/exchange/services/2006/types"
NS_E = "http://schemas.microsoft.com/exchange/services/2006/errors"
_XSI = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema"'

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=False, huge_tree=False)


class SchemaError(ValueError):
    """The request does not parse or violates the EWS schema: ErrorSchemaValidation."""

    def __init__(self, message: str, line: int = 0, column: int = 0) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


def esc(text: str) -> str:
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    return text


def attr(text: str) -> str:
    text = esc(text)
    return text.replace('"', "&quot;") if '"' in text else text


def xml_time(value: dt.datetime) -> str:
    """EWS puts UTC on the wire with a Z designator."""
    # Not strftime: its %Y writes year 1 as "1", which is no xs:dateTime.
    v = value.astimezone(dt.UTC)
    return f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}Z"


def xml_bool(value: bool) -> str:
    return "true" if value else "false"


@dataclass(slots=True)
class Request:
    root: etree._Element
    operation: str
    body: etree._Element
    requested_version: str | None
    impersonated: str | None
    anchor: str | None


def _text(elem: etree._Element | None) -> str | None:
    if elem is None or elem.text is None:
        return None
    return elem.text.strip() or None


def parse_request(data: bytes) -> Request:
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        line, column = exc.position if exc.position else (0, 0)
        raise SchemaError(f"The request is not well-formed XML: {exc.msg}", line, column) from exc
    if root.tag != f"{{{NS_SOAP}}}Envelope":
        raise SchemaError("The root element must be a SOAP Envelope.", root.sourceline or 0)
    body = root.find(f"{{{NS_SOAP}}}Body")
    if body is None or len(body) == 0:
        raise SchemaError("The SOAP Body is missing or empty.", root.sourceline or 0)
    op_elem = body[0]
    tag = op_elem.tag if isinstance(op_elem.tag, str) else ""
    if not tag.startswith(f"{{{NS_M}}}"):
        raise SchemaError(f"The element {tag!r} is not an EWS request.", op_elem.sourceline or 0)
    requested = impersonated = None
    header = root.find(f"{{{NS_SOAP}}}Header")
    if header is not None:
        rsv = header.find(f"{{{NS_T}}}RequestServerVersion")
        if rsv is not None:
            requested = rsv.get("Version")
        sid = header.find(f"{{{NS_T}}}ExchangeImpersonation/{{{NS_T}}}ConnectingSID")
        if sid is not None:
            for name in ("PrimarySmtpAddress", "SmtpAddress", "PrincipalName"):
                impersonated = _text(sid.find(f"{{{NS_T}}}{name}"))
                if impersonated:
                    break
    return Request(root, tag[len(NS_M) + 2 :], op_elem, requested, impersonated, None)


def server_version_header(version: ServerVersion) -> str:
    return (
        f'<s:Header><h:ServerVersionInfo MajorVersion="{version.major}" MinorVersion="{version.minor}" '
        f'MajorBuildNumber="{version.major_build}" MinorBuildNumber="{version.minor_build}" '
        f'Version="{version.api_version}" xmlns:h="{NS_T}" xmlns="{NS_T}" {_XSI}/></s:Header>'
    )


def envelope(version: ServerVersion, body: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<s:Envelope xmlns:s="{NS_SOAP}">{server_version_header(version)}'
        f"<s:Body {_XSI}>{body}</s:Body></s:Envelope>"
    ).encode()


def response(operation: str, messages: str) -> str:
    return (
        f'<m:{operation}Response xmlns:m="{NS_M}" xmlns:t="{NS_T}">'
        f"<m:ResponseMessages>{messages}</m:ResponseMessages></m:{operation}Response>"
    )


def error_message(
    operation: str, code: str, text: str, message_xml: str = "", extra: str = "", response_class: str = "Error"
) -> str:
    """A ResponseMessage-level error; ``extra`` holds the operation's own trailing elements."""
    xml = f"<m:MessageXml>{message_xml}</m:MessageXml>" if message_xml else ""
    return (
        f'<m:{operation}ResponseMessage ResponseClass="{response_class}">'
        f"<m:MessageText>{esc(text)}</m:MessageText><m:ResponseCode>{code}</m:ResponseCode>"
        f"<m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>{xml}{extra}</m:{operation}ResponseMessage>"
    )


def fault(code: str, text: str, message_xml: str = "") -> bytes:
    """A SOAP Fault as Exchange sends it (HTTP 500, no SOAP header)."""
    xml = f'<t:MessageXml xmlns:t="{NS_T}">{message_xml}</t:MessageXml>' if message_xml else ""
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<s:Envelope xmlns:s="{NS_SOAP}"><s:Body><s:Fault>'
        f'<faultcode xmlns:a="{NS_T}">a:{code}</faultcode>'
        f'<faultstring xml:lang="en-US">{esc(text)}</faultstring>'
        f'<detail><e:ResponseCode xmlns:e="{NS_E}">{code}</e:ResponseCode>'
        f'<e:Message xmlns:e="{NS_E}">{esc(text)}</e:Message>{xml}</detail>'
        "</s:Fault></s:Body></s:Envelope>"
    ).encode()


def server_busy_fault(back_off_ms: int) -> bytes:
    return fault(
        "ErrorServerBusy",
        "The server cannot service this request right now. Try again later.",
        f'<t:Value Name="BackOffMilliseconds">{int(back_off_ms)}</t:Value>',
    )


def schema_fault(error: SchemaError) -> bytes:
    text = f"The request failed schema validation: {error}"
    return fault(
        "ErrorSchemaValidation",
        text,
        f"<t:LineNumber>{error.line}</t:LineNumber><t:LinePosition>{error.column}</t:LinePosition>"
        f"<t:Violation>{esc(str(error))}</t:Violation>",
    )
