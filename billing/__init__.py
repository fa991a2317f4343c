"""Cost recovery and invoicing for organizations that run many JupyterHubs.

One month's data flows one way: sources -> cost records -> attribution ->
charges -> invoices (ledger) -> PDFs -> revenue reports. Each stage is a plain
function in this package; `flows/` and `billing.cli` only wire them together.
"""
