"""Invoice PDFs: `InvoiceDocument` -> HTML (Jinja2) -> PDF (WeasyPrint).

Only `invoices/templates/` is ever read while rendering: WeasyPrint gets a URL
fetcher that serves files from that folder and refuses everything else.
"""
from invoices.render import RenderError, render_html, render_many, render_pdf

__all__ = ["RenderError", "render_html", "render_many", "render_pdf"]
