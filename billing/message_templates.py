"""The subject and body of the e-mail that carries a document (`sending:` in the configuration).

Both are Jinja2 templates, written by finance staff in the configuration
and rendered in a sandbox (`jinja2.sandbox.SandboxedEnvironment`): a
template reads the values it is given (the document, the party, the
issuer) and nothing else of the program. Plain text, so nothing is
HTML-escaped; a subject is made safe for a mail header after rendering
(`header_text`): whatever a value holds, no line break or control character
reaches a header. A template is checked when the configuration is loaded,
by rendering it for an example of each document type, so a typo (an
unknown value, a syntax error) fails `billing validate`, not the sending.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

DEFAULT_SUBJECT = "{{ issuer.name }}: {{ document.title }} {{ document.number }} ({{ document.month }})"
DEFAULT_BODY = """\
Dear {{ party.contact }},

please find attached {{ document.title|lower }} {{ document.number }} from {{ issuer.name }} to {{ party.name }} \
for {{ document.month }}.
{% if document.type == "invoice" %}
Total due: {{ document.total }}, by {{ document.due_date }}.
{% elif document.type == "credit_note" %}
It credits {{ document.credited }}{% if document.corrects %} to {{ document.corrects }}{% endif %}.
{% else %}
Nothing is due for this month: {{ document.total }}.
{% endif %}
Kind regards,
{{ issuer.name }}{% if issuer.email %}
{{ issuer.email }}{% endif %}
"""
MAX_SUBJECT = 300   # characters of a rendered subject; longer ones are cut with "..."

TITLES = {"invoice": "Invoice", "credit_note": "Credit note", "statement": "Statement"}

# The values a template can use; documented in the README and shown when a template names another.
VALUES = {
    "document": ("number", "type", "title", "month", "issue_date", "due_date", "total", "amount", "credited",
                 "currency", "corrects", "pdf"),
    "party": ("id", "kind", "name", "contact", "email"),
    "issuer": ("name", "email", "website"),
    "organization": ("name",),
}

_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


def example_context(document_type: str = "invoice") -> dict[str, Any]:
    """Values of the shape a real document gives, to check a template with."""
    return {
        "document": {"number": "INV-2026-0001", "type": document_type, "title": TITLES[document_type],
                     "month": "2026-01", "issue_date": "2026-02-06", "due_date": "2026-03-08",
                     "total": "1,234.56 USD", "amount": "1234.56", "credited": "1,234.56 USD", "currency": "USD",
                     "corrects": "INV-2025-0042" if document_type == "credit_note" else None,
                     "pdf": "INV-2026-0001.pdf"},
        "party": {"id": "alpha", "kind": "community", "name": "Alpha University", "contact": "Billing Office",
                  "email": "billing@example.edu"},
        "issuer": {"name": "Example Hubs", "email": "ar@example.org", "website": None},
        "organization": {"name": "Example Hubs"},
    }


def check_template(text: str, what: str) -> str:
    """The template if it compiles and renders for every document type; ValueError saying why not."""
    try:
        template = _ENV.from_string(text)
    except TemplateSyntaxError as err:
        raise ValueError(f"not a valid template: {err.message} (line {err.lineno})") from None
    for document_type in TITLES:
        try:
            rendered = template.render(example_context(document_type))
        except TemplateError as err:
            known = "; ".join(f"{group}.{{{', '.join(names)}}}" for group, names in VALUES.items())
            kind = document_type.replace("_", " ")
            raise ValueError(f"the template cannot be rendered for {'an' if kind[0] in 'aeiou' else 'a'} {kind}: {err} "
                             f"(the values it can use: {known})") from None
        if what == "subject" and not header_text(rendered):
            raise ValueError("the template renders an empty subject")
    return text


def render(text: str, context: dict[str, Any]) -> str:
    """Render a template (checked at load) with a document's values."""
    return _ENV.from_string(text).render(context)


def header_text(text: str) -> str:
    """One line fit for a mail header: line breaks, tabs and control characters become spaces, runs of
    spaces one; at most MAX_SUBJECT characters."""
    flat = "".join(" " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in text)
    flat = re.sub(r"\s+", " ", flat).strip()
    return flat if len(flat) <= MAX_SUBJECT else flat[:MAX_SUBJECT - 3].rstrip() + "..."


def body_text(text: str) -> str:
    """A rendered body as plain text: Unix line ends, no other control character, one final newline."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "".join(ch if ch in "\n\t" or unicodedata.category(ch) != "Cc" else " " for ch in text)
    return text.rstrip("\n") + "\n"
