"""One of each billing document, built the way the pipeline builds them, for the gallery and layout tests.

The organization is priced by the real pricing models (`billing.pricing`) and
its invoices built by `billing.ledger.build_invoices`; what the ledger adds at
finalization (numbers, document types, links, the party snapshot) is added
here as the ledger's documentation describes it.
"""
from __future__ import annotations

import dataclasses
from decimal import Decimal as D

from billing.attribution import AttributedCost
from billing.config import parse_organization
from billing.ledger import Invoice, Line, build_invoices
from billing.months import Month
from billing.pricing import price_community
from billing.usage import MonthUsage

MONTH = Month(2022, 5)
FEES_2022 = {"education": "1000.00", "research": "1500.00", "partnership": "4166.67"}
PARTY_FIELDS = ("purchase_order", "customer_reference", "legal_name", "tax_id")


def contact(name, email, *address):
    return {"name": name, "email": email, "address": list(address)}


def gallery_org_data() -> dict:
    """A US issuer with a fiscal sponsor; a grant paying for three communities; a university that needs its PO."""
    return {
        "name": "Open Hubs Collaborative",
        "issuer": {
            "name": "Open Hubs Collaborative", "country": "US",
            "address": ["c/o Commons Fiscal Sponsorship, Inc.", "1234 Mission Street, Suite 500",
                        "San Francisco, CA 94103", "United States"],
            "email": "billing@openhubs.example.org", "website": "https://openhubs.example.org",
            "payment_terms_days": 30, "invoice_prefix": "OHC",
            "payment_instructions": ["Pay by ACH or wire transfer to Commons Fiscal Sponsorship, Inc.",
                                     "Bank: Example Community Bank, routing 000000000, account 0000000000 "
                                     "(SWIFT EXCBUS00)"],
            "fiscal_sponsor": {"name": "Commons Fiscal Sponsorship, Inc.", "tax_id": "EIN 12-3456789",
                               "address": ["1234 Mission Street, Suite 500", "San Francisco, CA 94103",
                                           "United States"]},
        },
        "funders": [{
            "id": "gcg", "name": "Global Communities Grant", "grant": "CZI EOSS-5-2022-GC-0417",
            "purchase_order": "GC-PO-2022-118", "legal_name": "Global Communities Foundation",
            "billing_contact": contact("Grants Office", "grants@gcf.example.org", "2000 Example Avenue",
                                       "Redwood City, CA 94063", "United States"),
        }],
        "communities": [
            {"id": "lakeshore", "name": "Lakeshore State University", "kind": "education", "pricing_plan": "alpha",
             "legal_name": "Board of Regents of Lakeshore State University", "purchase_order": "4500123456",
             "customer_reference": "Dept. of Statistics, project 22-117", "tax_id": "EIN 41-6007162",
             "billing_contact": contact("Dana Whitfield", "ap@lakeshore.example.edu", "Department of Statistics",
                                        "400 Lakeshore Drive", "Duluth, MN 55812", "United States")},
            {"id": "kilimanjaro", "name": "Kilimanjaro Institute for Data Science", "kind": "research",
             "pricing_plan": "grant-half", "funder": "gcg",
             "billing_contact": contact("Neema Mushi", "accounts@kids.example.ac.tz", "P.O. Box 2240", "Moshi",
                                        "Tanzania")},
            {"id": "uandina", "name": "Universidad Andina de Datos", "kind": "education", "pricing_plan": "grant-full",
             "funder": "gcg", "tax_id": "RUC 20512345678",
             "billing_contact": contact("Jorge Quispe Mamani", "tesoreria@uandina.example.edu",
                                        "Av. Universitaria 455", "Cusco 08003", "Peru")},
            {"id": "volta", "name": "Volta Basin University", "kind": "education", "pricing_plan": "grant-fees",
             "funder": "gcg",
             "billing_contact": contact("Bursary", "bursary@volta.example.edu.gh", "PMB 31", "Ho, Volta Region",
                                        "Ghana")},
        ],
        "clusters": [
            {"id": "shared", "provider": "gcp", "billing_account": "AAAA-BBBB", "sub_accounts": ["ohc-shared"],
             "tenancy": "shared", "hub_tag": "hub", "split": {"rule": "usage"}, "source": {"type": "focus", "path": "none/*.csv"}},
            {"id": "lakeshore", "provider": "aws", "billing_account": "999900000000", "sub_accounts": ["1111"],
             "tenancy": "dedicated", "community": "lakeshore", "hub_tag": "hub",
             "source": {"type": "focus", "path": "none/*.csv"}},
        ],
        "hubs": [
            {"id": "lakeshore-prod", "cluster": "lakeshore", "community": "lakeshore"},
            {"id": "lakeshore-staging", "cluster": "lakeshore", "community": "lakeshore"},
            {"id": "kilimanjaro", "cluster": "shared", "community": "kilimanjaro"},
            {"id": "uandina", "cluster": "shared", "community": "uandina"},
            {"id": "volta", "cluster": "shared", "community": "volta"},
        ],
        "pricing_plans": [
            {"id": "alpha", "name": "Alpha", "charges": [
                {"model": "tier_fee", "fees": FEES_2022}, {"model": "dedicated_uplift", "percent": "50"},
                {"model": "cloud_passthrough"}]},
            {"id": "grant-half", "name": "Half funded", "charges": [
                {"model": "tier_fee", "fees": FEES_2022}, {"model": "cloud_passthrough"},
                {"model": "subsidy", "share": "50"}]},
            {"id": "grant-full", "name": "Fully funded", "charges": [
                {"model": "tier_fee", "fees": FEES_2022}, {"model": "cloud_passthrough"},
                {"model": "subsidy", "share": "100"}]},
            {"id": "grant-fees", "name": "Fees funded", "charges": [
                {"model": "tier_fee", "fees": FEES_2022}, {"model": "cloud_passthrough"},
                {"model": "subsidy", "share": "100", "applies_to": "fees"}]},
        ],
    }


def cost(cluster, hub, community, component, amount, allocation="direct", note=""):
    return AttributedCost("gcp", "AAAA-BBBB", cluster, hub, community, component, allocation, "USD", D(amount), note)


SHARE = "split by memory requested (GiB-hours): {} of shared overhead"
COSTS = [
    cost("lakeshore", "lakeshore-prod", "lakeshore", "compute", "1842.117"),
    cost("lakeshore", "lakeshore-prod", "lakeshore", "storage", "212.404"),
    cost("lakeshore", "lakeshore-staging", "lakeshore", "compute", "96.3"),
    cost("lakeshore", None, "lakeshore", "core", "219.55", "cluster"),
    cost("lakeshore", None, "lakeshore", "networking", "41.08", "cluster"),
    cost("shared", "kilimanjaro", "kilimanjaro", "compute", "247.91"),
    cost("shared", "kilimanjaro", "kilimanjaro", "storage", "38.59"),
    cost("shared", "kilimanjaro", "kilimanjaro", "core", "32.16", "shared", SHARE.format("43.23%")),
    cost("shared", "kilimanjaro", "kilimanjaro", "networking", "39.28", "shared", SHARE.format("43.23%")),
    cost("shared", "uandina", "uandina", "compute", "312.774"),
    cost("shared", "uandina", "uandina", "storage", "61.2"),
    cost("shared", "uandina", "uandina", "core", "27.72", "shared", SHARE.format("37.26%")),
    cost("shared", "volta", "volta", "compute", "129.35"),
    cost("shared", "volta", "volta", "core", "14.55", "shared", SHARE.format("19.51%")),
]


def snapshot_party(org, invoice: Invoice) -> dict:
    """The party as the ledger snapshots it at finalization: contact, name, the accounts-payable fields, grant."""
    entity = org.community(invoice.party_id) if invoice.party_kind == "community" else org.funder(invoice.party_id)
    extra = {f: getattr(entity, f) for f in PARTY_FIELDS}
    if invoice.party_kind == "funder":
        extra["grant"] = entity.grant
    return {**invoice.bill_to, **extra}


def month_invoices(tmp_path) -> tuple[object, dict[str, Invoice]]:
    """The organization and its finalized May 2022 documents by party id, numbered and linked."""
    org = parse_organization(gallery_org_data(), "gallery.yaml", tmp_path)
    usage = MonthUsage("memory")
    charges = {c.id: price_community(org, c, MONTH, COSTS, usage) for c in org.communities}
    built = {i.party_id: i for i in build_invoices(org, MONTH, charges, "fp", issue_date=MONTH.end)}
    numbers = {"lakeshore": "OHC-2022-0101", "kilimanjaro": "OHC-2022-0102", "uandina": "OHC-ST-2022-0007",
               "volta": "OHC-2022-0103", "gcg": "OHC-2022-0104"}
    docs = {}
    for pid, inv in built.items():
        statement = inv.party_kind == "community" and inv.total == 0
        docs[pid] = dataclasses.replace(inv, status="finalized", number=numbers[pid],
                                        document_type="statement" if statement else "invoice",
                                        bill_to=snapshot_party(org, inv))
    funder = org.funder("gcg")
    funded = [c for c in org.communities if c.funder == "gcg"]
    for c in funded:
        covered = sum(l.amount for l in docs["gcg"].lines if l.community == c.id)
        docs[c.id] = dataclasses.replace(docs[c.id], links={"funder": {
            "id": funder.id, "name": funder.name, "grant": funder.grant, "number": numbers["gcg"],
            "covered": str(covered)}})
    docs["gcg"] = dataclasses.replace(docs["gcg"], links={"communities": [
        {"id": c.id, "name": c.name, "number": docs[c.id].number, "document_type": docs[c.id].document_type}
        for c in funded]})
    return org, docs


def credit_note_for(original: Invoice, number: str, reason: str) -> Invoice:
    """A credit note cancelling `original` in full: its lines negated."""
    lines = tuple(dataclasses.replace(l, amount=-l.amount, amount_exact=-l.amount_exact) for l in original.lines)
    return dataclasses.replace(
        original, document_type="credit_note", number=number, lines=lines, corrects=original.number, reason=reason,
        issue_date=original.issue_date.replace(month=original.issue_date.month + 1), notes=(),
        links={"original": {"number": original.number, "issue_date": original.issue_date.isoformat(),
                            "total": str(original.total)}})


def replacement_for(original: Invoice, credit_note: Invoice, number: str, reason: str, fee: D) -> Invoice:
    """The invoice replacing `original`, with its service fee corrected to `fee`."""
    def corrected(line: Line) -> Line:
        if line.kind == "fee":
            return dataclasses.replace(line, amount=fee, amount_exact=fee, unit_price=fee)
        if line.kind == "uplift":
            uplift = fee * line.quantity / 100
            return dataclasses.replace(line, amount=uplift, amount_exact=uplift)
        return line

    lines = tuple(corrected(l) for l in original.lines)
    return dataclasses.replace(
        original, number=number, lines=lines, corrects=original.number, reason=reason,
        issue_date=credit_note.issue_date, due_date=credit_note.issue_date.replace(day=1) + (
            original.due_date - original.issue_date),
        links={"replaces": {"number": original.number, "issue_date": original.issue_date.isoformat(),
                            "total": str(original.total), "credit_note": credit_note.number}})


def with_adjustments(invoice: Invoice, number: str) -> Invoice:
    """Next month's invoice carrying prior-period adjustments: late cloud usage of May, billed in June."""
    adjustments = (
        Line("Prior-period adjustments", "adjustment", "Late cloud cost, hub lakeshore-prod (compute)",
             D("84.12"), D("84.12"), hub="lakeshore-prod", cluster="lakeshore", component="compute",
             details=(("corrects", invoice.number), ("service_month", str(MONTH)))),
        Line("Prior-period adjustments", "adjustment", "Cloud credit restated, cluster lakeshore (core)",
             D("-12.40"), D("-12.40"), cluster="lakeshore", component="core",
             details=(("corrects", invoice.number), ("service_month", str(MONTH)))),
    )
    june = invoice.issue_date.replace(month=invoice.issue_date.month + 1)
    return dataclasses.replace(invoice, month="2022-06", number=number, lines=invoice.lines + adjustments,
                               issue_date=june, due_date=june.replace(day=1) + (invoice.due_date - invoice.issue_date))


def gallery(tmp_path) -> dict[str, Invoice]:
    """One of each kind of document, by a name for its PNG."""
    org, docs = month_invoices(tmp_path)
    credit = credit_note_for(docs["lakeshore"], "OHC-CN-2022-0003",
                             "The dedicated-cluster uplift was charged on the staging hub's fee by mistake.")
    return {
        "community-invoice-part-funded": docs["kilimanjaro"],
        "community-statement-fully-funded": docs["uandina"],
        "community-invoice-fees-funded": docs["volta"],
        "funder-invoice": docs["gcg"],
        "university-invoice-po": docs["lakeshore"],
        "credit-note": credit,
        "replacement-invoice": replacement_for(docs["lakeshore"], credit, "OHC-2022-0131",
                                               "Service fee corrected from $1,000.00 to $900.00 (agreed discount).",
                                               D("900.00")),
        "invoice-with-adjustments": with_adjustments(docs["lakeshore"], "OHC-2022-0140"),
    }
