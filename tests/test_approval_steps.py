"""The steps of a month that waits for approval, without Prefect: drafts for review, then finalize exactly what was
reviewed, or keep the rejection and its reason; the configuration's `approval:` block."""
from __future__ import annotations

import dataclasses

import pytest

from billing import ledger
from billing.approval import ProposalChanged, finalize_proposal, propose_month, record_decision
from billing.config import parse_organization
from billing.errors import ConfigError
from billing.months import Month
from billing.notify import approval_refused, approval_request
from billing.pipeline import RunOptions
from billing.status import statuses
from helpers import small_focus_rows, small_org_data, write_focus_csv

JANUARY = Month.parse("2022-01")


@pytest.fixture()
def setup(tmp_path, ledger_url):
    write_focus_csv(tmp_path / "focus" / "2022.csv", small_focus_rows())   # January, and one row of February
    org = parse_organization(small_org_data(approval="required"), "org.yaml", tmp_path)
    opts = RunOptions(out_dir=tmp_path / "out", ledger_url=ledger_url, workers=1, issue_on_closing_day=True)
    return org, opts


def documents(opts) -> list:
    engine = ledger.open_ledger(opts.ledger_url)
    try:
        return ledger.month_invoices(engine, "2022-01")
    finally:
        engine.dispose()


def test_drafts_for_review_then_exactly_those_are_finalized(setup):
    org, opts = setup
    proposal = propose_month(org, JANUARY, opts)
    assert proposal.pending
    assert [d.status for d in documents(opts)] == ["draft"] * 3
    invoices = opts.out_dir / "2022-01" / "invoices"
    assert sorted(p.name for p in invoices.glob("*.pdf")) == ["DRAFT-community-alpha.pdf", "DRAFT-community-beta.pdf",
                                                              "DRAFT-funder-grant.pdf"]
    engine = ledger.open_ledger(opts.ledger_url)
    assert ledger.latest_runs(engine, org.org_id)["2022-01"].outcome == "pending"
    [status] = statuses(org, engine, JANUARY, JANUARY)
    engine.dispose()
    assert (status.state, status.detail) == ("draft", "waiting for approval")
    result = finalize_proposal(org, proposal, opts, approver="maria", reason="checked against the AWS bill")
    assert sorted(result.created) == ["TST-2022-0001", "TST-2022-0002", "TST-ST-2022-0001"]
    assert {d.status for d in documents(opts)} == {"finalized"}
    assert sorted(p.name for p in invoices.glob("*.pdf")) == ["TST-2022-0001.pdf", "TST-2022-0002.pdf",
                                                              "TST-ST-2022-0001.pdf"]
    engine = ledger.open_ledger(opts.ledger_url)
    run = ledger.latest_runs(engine, org.org_id)["2022-01"]
    [finalized] = [e for e in ledger.history(engine, "TST-2022-0001") if e.event == "finalized"]
    engine.dispose()
    assert (run.outcome, run.actor, run.details["approval_reason"]) == ("finalized", "maria",
                                                                        "checked against the AWS bill")
    assert finalized.actor == "maria"


def test_nothing_is_finalized_when_the_documents_changed_since_the_review(setup):
    org, opts = setup
    proposal = propose_month(org, JANUARY, opts)
    alpha = next(d for d in proposal.review.invoices if d.party_id == "alpha")
    line = dataclasses.replace(alpha.lines[0], amount=alpha.lines[0].amount + 1)
    reviewed = [dataclasses.replace(d, lines=(line,) + d.lines[1:]) if d is alpha else d
                for d in proposal.review.invoices]
    proposal.review = dataclasses.replace(proposal.review, invoices=reviewed)
    with pytest.raises(ProposalChanged, match=r"2022-01: the documents changed since they were reviewed \(community "
                                              r"alpha: reviewed 2023.60 USD, now 2022.60 USD\); nothing was finalized"):
        finalize_proposal(org, proposal, opts, approver="maria")
    assert {d.status for d in documents(opts)} == {"draft"}


def test_a_rejection_is_kept_with_its_reason_and_nothing_is_finalized(setup):
    org, opts = setup
    proposal = propose_month(org, JANUARY, opts)
    record_decision(org, proposal, opts, outcome="rejected", message="AWS credits missing", actor="maria")
    engine = ledger.open_ledger(opts.ledger_url)
    run = ledger.latest_runs(engine, org.org_id)["2022-01"]
    [status] = statuses(org, engine, JANUARY, JANUARY)
    engine.dispose()
    assert (run.command, run.outcome, run.message, run.actor) == ("approve", "rejected", "AWS credits missing", "maria")
    assert (status.state, status.detail) == ("draft", "not approved: AWS credits missing")
    assert {d.status for d in documents(opts)} == {"draft"}
    notice = approval_refused("2022-01", "AWS credits missing", "maria")
    assert notice.subject == "2022-01 rejected by maria: nothing finalized"
    assert notice.lines[0] == "2022-01 was rejected by maria: AWS credits missing"


def test_a_finalized_or_unclosed_month_has_nothing_to_approve(setup):
    org, opts = setup
    finalize_proposal(org, propose_month(org, JANUARY, opts), opts, approver=None)
    again = propose_month(org, JANUARY, opts)
    assert not again.pending and sorted(again.review.unchanged) == ["TST-2022-0001", "TST-2022-0002",
                                                                    "TST-ST-2022-0001"]
    preview = propose_month(org, Month.parse("2022-02"), dataclasses.replace(opts, draft=True))
    assert not preview.pending


def test_the_request_says_what_waits_and_how_to_answer(setup):
    org, opts = setup
    proposal = propose_month(org, JANUARY, opts)
    notice = approval_request(proposal.review, opts.out_dir / "2022-01", "clever-fox (1234)", 72)
    assert notice.event == "approval"
    assert notice.subject == "2022-01 waiting for approval: 3 drafts, 3,577.85 USD"
    assert "resuming the paused flow run clever-fox (1234)" in notice.lines[1]


@pytest.mark.parametrize("approval, required, hours", [
    ("required", True, 72), ("none", False, 72), ({"required": True, "timeout_hours": 24}, True, 24),
    (None, False, 72)])
def test_approval_settings(approval, required, hours, tmp_path):
    data = small_org_data() if approval is None else small_org_data(approval=approval)
    org = parse_organization(data, "org.yaml", tmp_path)
    assert (org.approval.required, org.approval.timeout_hours) == (required, hours)


@pytest.mark.parametrize("approval, problem", [
    ("yes", "org.yaml: approval: write required, none, or {required: true, timeout_hours: 72}; got 'yes'"),
    ({"required": True, "timeout_hours": 0}, "org.yaml: approval.timeout_hours: Input should be greater than 0"),
    ({"required": True, "timeout": 3}, "org.yaml: approval.timeout: Extra inputs are not permitted"),
])
def test_a_wrong_approval_block_names_the_field(approval, problem, tmp_path):
    with pytest.raises(ConfigError) as err:
        parse_organization(small_org_data(approval=approval), "org.yaml", tmp_path)
    assert problem in str(err.value)
