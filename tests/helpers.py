"""Small inline organizations and FOCUS files for tests."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from billing.config import parse_organization

FOCUS_HEADER = ["ProviderName", "BillingAccountId", "SubAccountId", "BillingPeriodStart", "ChargePeriodStart",
                "ChargeCategory", "ChargeClass", "ServiceName", "ServiceCategory", "BilledCost", "EffectiveCost",
                "BillingCurrency", "Tags"]


def focus_row(sub: str, cost: str, *, tags: dict | None = None, category: str = "Usage",
              service: str = "Amazon Elastic Compute Cloud", service_category: str = "Compute",
              period: str = "2022-01-01T00:00:00Z", provider: str = "AWS", account: str = "999900000000",
              currency: str = "USD") -> list[str]:
    return [provider, account, sub, period, period, category, "", service, service_category, cost, cost, currency,
            json.dumps(tags or {})]


def write_focus_csv(path: Path, rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(FOCUS_HEADER)
        writer.writerows(rows)
    return path


def small_org_data(focus_glob: str = "focus/*.csv", **overrides) -> dict:
    """Two communities on a shared AWS cluster, one with a dedicated cluster; one funder."""
    contact = {"name": "Billing Office", "email": "billing@example.edu", "address": ["1 Main St", "Springfield"]}
    data = {
        "name": "Test Org",
        "issuer": {"name": "Test Hubs Inc.", "address": ["2 Side St"], "email": "ar@example.org",
                   "invoice_prefix": "TST", "payment_terms_days": 30},
        "funders": [{"id": "grant", "name": "Big Grant", "grant": "G-1", "billing_contact": contact}],
        "communities": [
            {"id": "alpha", "name": "Alpha University", "kind": "education", "pricing_plan": "alpha-2022",
             "billing_contact": contact},
            {"id": "beta", "name": "Beta Lab", "kind": "research", "pricing_plan": "grant-plan",
             "billing_contact": contact, "funder": "grant"},
        ],
        "clusters": [
            {"id": "shared", "provider": "aws", "billing_account": "999900000000", "sub_accounts": ["111100000000"],
             "tenancy": "shared", "hub_tag": "2i2c:hub-name", "split": {"rule": "even"},
             "source": {"type": "focus", "path": focus_glob}},
            {"id": "alpha-dedicated", "provider": "aws", "billing_account": "999900000000",
             "sub_accounts": ["222200000000"], "tenancy": "dedicated", "community": "alpha",
             "hub_tag": "2i2c:hub-name", "source": {"type": "focus", "path": focus_glob}},
        ],
        "hubs": [
            {"id": "alpha-shared", "cluster": "shared", "community": "alpha", "tag_value": "alpha"},
            {"id": "beta-shared", "cluster": "shared", "community": "beta", "tag_value": "beta"},
            {"id": "alpha-prod", "cluster": "alpha-dedicated", "community": "alpha", "tag_value": "prod"},
        ],
        "pricing_plans": [
            {"id": "alpha-2022", "name": "Alpha 2022", "charges": [
                {"model": "tier_fee", "fees": {"education": "1000.00", "research": "1500.00",
                                               "partnership": "4166.67"}},
                {"model": "dedicated_uplift", "percent": "50"},
                {"model": "cloud_passthrough"}]},
            {"id": "grant-plan", "name": "Grant", "charges": [
                {"model": "tier_fee", "fees": {"education": "1000.00", "research": "1500.00",
                                               "partnership": "4166.67"}},
                {"model": "cloud_passthrough"},
                {"model": "subsidy", "share": "100"}]},
        ],
    }
    data.update(overrides)
    return data


def small_org(tmp_path: Path, **overrides):
    return parse_organization(small_org_data(**overrides), "test-org.yaml", tmp_path)


def small_focus_rows() -> list[list[str]]:
    return [
        focus_row("111100000000", "100.0000000001", tags={"2i2c:hub-name": "alpha"}),
        focus_row("111100000000", "50.25", tags={"2i2c:hub-name": "beta"}),
        focus_row("111100000000", "10.00", tags={}, service="Amazon Virtual Private Cloud",
                  service_category="Networking"),  # shared overhead: split evenly
        focus_row("111100000000", "3.33", tags={"2i2c:hub-name": "ghost"}),  # unknown hub: unattributed
        focus_row("222200000000", "400.10", tags={"2i2c:hub-name": "prod"}),
        focus_row("222200000000", "20.00", tags={}, service="Amazon Elastic Kubernetes Service"),
        focus_row("222200000000", "5.00", category="Tax", service="Tax", service_category="Other"),
        focus_row("222200000000", "-7.50", category="Credit"),
        focus_row("333300000000", "1.00"),  # sub-account no cluster claims: unattributed
        focus_row("111100000000", "999.00", period="2022-02-01T00:00:00Z"),  # another month
    ]


def read_csv(path: Path) -> list[dict]:
    """A CSV output's rows, as dicts of text."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def two_month_world(tmp_path: Path, ledger_url: str) -> dict:
    """The small organization with cost files for January and February 2022 (February without the last row)."""
    import yaml

    write_focus_csv(tmp_path / "focus" / "2022-01.csv", small_focus_rows())
    feb = [r[:3] + ["2022-02-01T00:00:00Z"] * 2 + r[5:] for r in small_focus_rows()[:-1]]
    write_focus_csv(tmp_path / "focus" / "2022-02.csv", feb)
    path = tmp_path / "org.yaml"
    path.write_text(yaml.safe_dump(small_org_data(), sort_keys=False))
    return {"org": path, "out": tmp_path / "out", "ledger": ledger_url, "tmp": tmp_path}


def billing_in(world: dict, *args: str, words: int = 1) -> int:
    """`billing` with the world's --org, --out and --ledger after the command (`words` long: export journal is 2)."""
    from billing.cli import main

    return main([*args[:words], "--org", str(world["org"]), "--out", str(world["out"]), "--ledger", world["ledger"],
                 *args[words:]])
