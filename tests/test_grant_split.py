"""What a funder pays, split between service fees and cloud costs for grant reports, to the cent."""
from decimal import Decimal as D
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.documents import document_for, split_funded
from billing.months import Month
from pricing_models import CloudCost, PricingContext, build_model

FEES_2022 = {"education": "1000.00", "research": "1500.00", "partnership": "4166.67"}
FUNDER = SimpleNamespace(id="gcg", name="Global Communities Grant", grant="G-17")


def priced(plan, cloud=("100.004", "57.10")):
    community = SimpleNamespace(id="c1", name="Community One", kind="research")
    ctx = PricingContext(Month(2022, 5), community, FUNDER, "USD",
                         tuple(CloudCost("k", "h1", f"c{i}", "direct", D(a)) for i, a in enumerate(cloud)), {}, False)
    charges = []
    for spec in plan:
        spec = dict(spec)
        charges += build_model(spec.pop("model"), spec).charges(ctx, tuple(charges))
    return charges


BASE = [{"model": "tier_fee", "fees": FEES_2022}, {"model": "cloud_passthrough"}]


@pytest.mark.parametrize("applies_to,fees,cloud", [("all", "1500.00", "157.10"), ("fees", "1500.00", "0"),
                                                   ("cloud", "0", "157.10")])
def test_subsidy_lines_carry_the_bases_of_the_split(applies_to, fees, cloud):
    charges = priced(BASE + [{"model": "subsidy", "share": "50", "applies_to": applies_to}])
    community_line, funder_line = charges[-2:]
    for line in (community_line, funder_line):
        details = dict(line.details)
        assert (details["fees_base"], details["cloud_base"]) == (fees, cloud)
        assert details["applies_to"] == applies_to and details["grant"] == "G-17"


def test_the_bases_change_no_amount_quantity_price_or_kind():
    """The ledger compares kind, place, quantity, unit price and amount: the details are beside them."""
    for share, scope in [("100", "all"), ("33.3", "cloud"), ("50", "fees")]:
        charges = priced(BASE + [{"model": "subsidy", "share": share, "applies_to": scope}])
        grant = [c for c in charges if c.kind == "subsidy"]
        assert len(grant) == 2 and grant[0].amount == -grant[1].amount
        assert [(c.kind, c.quantity, c.unit, c.unit_price, c.bill_to) for c in grant] == [
            ("subsidy", D(share), "%", None, None), ("subsidy", D(share), "%", None, "gcg")]


def test_after_a_fee_discount_the_fees_base_is_net_of_it():
    charges = priced(BASE + [{"model": "discount", "percent": "10", "applies_to": "fees"},
                             {"model": "subsidy", "share": "100"}])
    details = dict(charges[-1].details)
    assert (details["fees_base"], details["cloud_base"]) == ("1350.00", "157.10")
    assert charges[-1].rounded == D("1507.10")


@pytest.mark.parametrize("amount,fees,cloud,expected", [
    ("928.97", "1500.00", "357.94", ("750.00", "178.97")),
    ("1000.00", "1000.00", "0", ("1000.00", "0.00")),
    ("0.01", "1", "1", ("0.01", "0.00")),                # half-up: 0.005 -> 0.01
    ("-928.97", "1500.00", "357.94", ("-750.00", "-178.97")),   # a credit note splits the same way
    ("100.00", "0", "0", ("0", "100.00")),
])
def test_split_rounds_the_fees_part_and_the_cloud_part_is_the_rest(amount, fees, cloud, expected):
    parts = split_funded(D(amount), D(fees), D(cloud), "USD")
    assert parts == tuple(D(e) for e in expected)
    assert sum(parts) == D(amount)


@given(st.decimals(min_value=0, max_value=10**7, places=2), st.decimals(min_value=0, max_value=10**7, places=2),
       st.decimals(min_value=0, max_value=10**7, places=2))
def test_the_parts_always_add_up_and_are_whole_cents(amount, fees, cloud):
    f, c = split_funded(amount, fees, cloud, "USD")
    assert f + c == amount
    assert f == f.quantize(D("0.01")) and c == c.quantize(D("0.01"))


def test_funder_document_splits_each_community_and_names_its_document(tmp_path):
    from document_samples import month_invoices

    _, docs = month_invoices(tmp_path)
    doc = document_for(docs["gcg"])
    assert doc.grant == "CZI EOSS-5-2022-GC-0417"
    assert [(c.id, c.number, c.document_type, c.amount, c.fees, c.cloud) for c in doc.funded] == [
        ("kilimanjaro", "OHC-2022-0102", "invoice", D("928.97"), D("750.00"), D("178.97")),
        ("uandina", "OHC-ST-2022-0007", "statement", D("1401.69"), D("1000.00"), D("401.69")),
        ("volta", "OHC-2022-0103", "invoice", D("1000.00"), D("1000.00"), D("0.00")),
    ]
    assert doc.split_total() == (D("2750.00"), D("580.66"))
    assert [l.note for l in doc.lines] == ["Community invoice OHC-2022-0102", "Community statement OHC-ST-2022-0007",
                                           "Community invoice OHC-2022-0103"]


def test_documents_issued_before_the_split_was_recorded_still_print(tmp_path):
    import dataclasses

    from document_samples import month_invoices

    _, docs = month_invoices(tmp_path)
    old = docs["gcg"]
    old = dataclasses.replace(old, lines=tuple(
        dataclasses.replace(l, details=tuple((k, v) for k, v in l.details if k not in ("fees_base", "cloud_base")))
        for l in old.lines))
    doc = document_for(old)
    assert not doc.has_split and all(c.fees is None for c in doc.funded)


def test_a_draft_funder_document_has_the_split_and_the_grant_but_no_community_numbers(tmp_path):
    """Drafts have no links yet; the grant comes from the lines when the party snapshot lacks it."""
    import dataclasses

    from document_samples import month_invoices
    from invoices.render import render_html

    _, docs = month_invoices(tmp_path)
    bill_to = {k: v for k, v in docs["gcg"].bill_to.items() if k != "grant"}
    draft = dataclasses.replace(docs["gcg"], status="draft", number=None, links={}, bill_to=bill_to)
    doc = document_for(draft)
    assert doc.grant == "CZI EOSS-5-2022-GC-0417" and doc.split_total() == (D("2750.00"), D("580.66"))
    assert [c.name for c in doc.funded] == ["kilimanjaro", "uandina", "volta"] and not any(l.note for l in doc.lines)
    html = render_html(doc)
    assert "Grant CZI EOSS-5-2022-GC-0417" in html and "names the community" not in html and "DRAFT" in html
