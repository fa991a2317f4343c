"""Write the bundled sample organization, deterministically.

    python -m billing.sample.generate sample

The sample imitates a real operator of managed JupyterHubs at the end of
2022 (43 community hubs on 17 clusters on GCP, AWS and Azure, some
communities paid for by a grant) under a fictional name, "Open Hubs
Collaborative". Everything is fictional: communities, people, account ids.

Output, relative to the target folder:

- ``org.yaml``: the organization's configuration (see ``billing/config.py``);
- ``data/focus/gcp/2022-MM.parquet``, ``data/focus/aws/2022-MM.csv.gz``,
  ``data/focus/azure/2022-MM.csv``: FOCUS 1.2 cost files, one per provider
  and month, shaped like each cloud's own FOCUS export (daily rows per
  sub-account x hub tag x service/SKU);
- ``data/usage/daily-usage-2022.csv``: memory requested per hub per day on
  the shared clusters (GiB-hours), to split their shared cost;
- ``data/usage/mau.csv``: monthly active users per hub, and how many of them are staff.

Determinism: every random draw comes from ``random.Random`` seeded with a
string naming what is drawn (seed, entity, month), so output does not depend
on iteration order or on the Python hash seed; amounts are built with
``Decimal`` from integers and strings, never floats; files carry no
timestamp of "now" (gzip mtime is 0). The same code writes the same content
on every run.

Things the sample deliberately contains, so the pipeline's edge cases are
exercised: untagged cluster overhead on every cluster, monthly credits
(GCP sustained-use discount and GKE free tier, AWS research credits), AWS
tax rows, FOCUS Correction rows in June's exports for May (a GCP refund of
one hub's compute on a dedicated cluster; on AWS, an untagged NAT charge of
the shared africa cluster and its sales tax), rows tagged with a
hub that no configuration knows ("ghost-workshop" on the shared AWS
cluster), rows from a GCP project that no cluster claims ("ohc-sandbox"), a
hub with no usage in July, hubs and a cluster that start or stop mid-year,
and a hub identified by its whole AWS account instead of a tag.

And contracts as they really are: a community that changes plan in July
(npu: from the 2022 fee by kind to membership plus a fee per monthly active
user), one whose contract starts on 13 April (hydro: its cluster too, and
April's fees are prorated, "18 of 30 days"; with a one-off setup fee), a
membership billed once a year in July (genomics-alliance), a grant whose
2022 award starts in April and is used up in November (that month the funder
pays what is left, the communities the rest), a prepaid balance that runs
out (bio-obs), staging hubs whose users are not billed and a staff column in
the MAU file, and a partnership plan whose fee and markup are capped.
"""
from __future__ import annotations

import argparse
import calendar
import csv
import datetime as dt
import decimal
import gzip
import hashlib
import io
import json
import os
import random
import re
import sys
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from billing.fileio import atomic_write_bytes


YEAR = 2022
SEED = 2022
MONTHS = tuple(range(1, 13))
UTC = dt.timezone.utc

CONTEXT = decimal.Context(prec=40, rounding=ROUND_HALF_UP,
                          traps=[decimal.InvalidOperation, decimal.Overflow, decimal.DivisionByZero])
Q_MONEY = Decimal("1E-10")     # money: up to 10 decimals, as the clouds export
Q_QTY = Decimal("0.000001")    # consumed quantities
Q_USAGE = Decimal("0.001")     # GiB-hours in the usage file
Q_CENT = Decimal("0.01")
ZERO = Decimal(0)

MONEY_TYPE = pa.decimal128(38, 10)
TS_TYPE = pa.timestamp("us", tz="UTC")

# Columns of every cost file, in this order (FOCUS 1.2 names; one custom x_ column).
FOCUS_COLUMNS = (
    "BilledCost", "EffectiveCost", "ListCost", "ContractedCost",
    "BillingAccountId", "BillingAccountName", "BillingCurrency", "BillingPeriodStart", "BillingPeriodEnd",
    "ChargeCategory", "ChargeClass", "ChargeDescription", "ChargeFrequency", "ChargePeriodStart", "ChargePeriodEnd",
    "ConsumedQuantity", "ConsumedUnit", "InvoiceId", "InvoiceIssuerName", "ProviderName", "PublisherName",
    "RegionId", "ResourceId", "ServiceCategory", "ServiceName", "SkuId", "SubAccountId", "SubAccountName",
    "Tags", "x_ExportId",
)
MONEY_COLUMNS = ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost")
DECIMAL_COLUMNS = MONEY_COLUMNS + ("ConsumedQuantity",)
TIMESTAMP_COLUMNS = ("BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd")
PARQUET_SCHEMA = pa.schema([
    (name, MONEY_TYPE if name in DECIMAL_COLUMNS else TS_TYPE if name in TIMESTAMP_COLUMNS else pa.string())
    for name in FOCUS_COLUMNS
])


class FlowMap(dict):
    """A mapping written on one line in org.yaml ({a: 1, b: 2})."""


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:   # repeat shared values instead of &anchors
        return True


class FlowList(list):
    """A list written on one line in org.yaml ([a, b])."""


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    # Months ("2022-04") and days ("2022-04-13") in quotes, so no YAML reader takes them for anything but text.
    style = "'" if re.fullmatch(r"\d{4}-\d{2}(-\d{2})?", text) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(FlowMap, lambda d, m: d.represent_mapping("tag:yaml.org,2002:map", m, flow_style=True))
_Dumper.add_representer(FlowList, lambda d, s: d.represent_sequence("tag:yaml.org,2002:seq", s, flow_style=True))
_Dumper.add_representer(str, _represent_str)



# =====================================================================================
# The organization
# =====================================================================================

ISSUER = {
    "name": "Open Hubs Collaborative",
    "address": ["c/o Commons Fiscal Sponsorship, Inc.", "1234 Mission Street, Suite 500",
                "San Francisco, CA 94103", "United States"],
    "country": "US",
    "email": "billing@openhubs.example.org",
    "website": "https://openhubs.example.org",
    "fiscal_sponsor": {"name": "Commons Fiscal Sponsorship, Inc.", "tax_id": "EIN 12-3456789",
                       "address": ["1234 Mission Street, Suite 500", "San Francisco, CA 94103", "United States"]},
    "payment_terms_days": 30,
    "payment_instructions": [
        "Pay by ACH or wire transfer to Commons Fiscal Sponsorship, Inc.",
        "Bank: Example Community Bank, routing 000000000, account 0000000000 (SWIFT EXCBUS00)",
    ],
    "invoice_prefix": "OHC",
}

FUNDERS = [{
    "id": "global-communities-grant",
    "name": "Global Communities Grant",
    "grant": "CZI EOSS-5-2022-GC-0417",
    "currency": "USD",
    "billing_contact": {"name": "Grants Office, Global Communities Program",
                        "email": "grants@globalcommunities.example.org",
                        "address": ["2000 Example Avenue", "Redwood City, CA 94063", "United States"]},
    # A pilot award paid the first quarter; the 2022 award starts in April and, with more communities
    # joining than planned, is used up in November: that month the funder pays what is left, the
    # communities the rest, and from then on they pay their own charges.
    "awards": [
        FlowMap({"id": "gc-pilot", "amount": "30000.00", "currency": "USD", "from": "2022-01", "until": "2022-03"}),
        FlowMap({"id": "gc-2022", "amount": "115000.00", "currency": "USD", "from": "2022-04",
                 "until": "2023-03"}),
    ],
}]

GRADUATED_MAU_TIERS = [
    FlowMap(up_to=10, unit_price="10.00"),
    FlowMap(up_to=100, unit_price="5.00"),
    FlowMap(up_to=1000, unit_price="2.50"),
    FlowMap(up_to=10000, unit_price="1.25"),
    FlowMap(up_to=None, unit_price="0.00"),
]
TIER_FEES = {"model": "tier_fee", "fees": FlowMap(education="1000.00", research="1500.00", partnership="4166.67")}

PLANS = [
    {"id": "alpha-2022",
     "name": "Alpha service 2022: monthly fee by community kind, +50% for a dedicated cluster, cloud at cost",
     "currency": "USD",
     "charges": [TIER_FEES, {"model": "dedicated_uplift", "percent": "50"}, {"model": "cloud_passthrough"}]},
    {"id": "alpha-2022-grant",
     "name": "Alpha service 2022, paid in full by the community's grant",
     "currency": "USD",
     "charges": [TIER_FEES, {"model": "cloud_passthrough"},
                 {"model": "subsidy", "share": "100", "applies_to": "all"}]},
    {"id": "usage-2026-pilot",
     "name": "Pilot of the 2026 model: membership plus a fee on monthly active users, cloud at cost",
     "currency": "USD",
     "charges": [{"model": "fixed_fee", "amount": "1250.00", "description": "Membership (general), $15,000 per year"},
                 {"model": "graduated_usage", "tiers": GRADUATED_MAU_TIERS},
                 {"model": "cloud_passthrough"}]},
    {"id": "usage-2026-annual",
     "name": "The 2026 model with the membership billed once a year, in July: a fee on monthly active users, "
             "cloud at cost",
     "currency": "USD",
     "charges": [{"model": "fixed_fee", "amount": "15000.00", "every": "year", "billing_month": 7,
                  "description": "Membership (general), {amount} a year, billed each July"},
                 {"model": "graduated_usage", "tiers": GRADUATED_MAU_TIERS},
                 {"model": "cloud_passthrough"}]},
    {"id": "partner-custom",
     "name": "Custom partnership: a fixed fee, cloud cost plus 10%, fee and markup at most $3,000 per month",
     "currency": "USD",
     # The cap limits what the organization earns (fee and markup), never the cloud cost passed through:
     # it credits part of the markup in the busier months (cloud above $1,500).
     "charges": [{"model": "fixed_fee", "amount": "2850.00", "description": "Partnership fee"},
                 {"model": "cloud_passthrough"}, {"model": "markup", "percent": "10"},
                 {"model": "cap", "amount": "3000.00", "applies_to": "fees"}]},
]


@dataclass(frozen=True)
class CommunitySpec:
    id: str
    name: str
    kind: str
    plan: str | tuple[tuple[str, str], ...]    # a plan, or its history: ((from month, plan), ...)
    contact: str
    email: str
    address: tuple[str, ...]
    funder: str | None = None
    active_from: str | None = None       # a month (YYYY-MM) or a day (YYYY-MM-DD)
    active_until: str | None = None


GRANT = "global-communities-grant"

# What some customers' accounts-payable offices need on an invoice (purchase order, legal name, ...).
ACCOUNTS_PAYABLE = {
    "lakeshore": {"legal_name": "Board of Regents of Lakeshore State University", "purchase_order": "4500123456",
                  "customer_reference": "Dept. of Statistics, project 22-117", "einvoice": "factur-x"},
    "cvu": {"purchase_order": "CVU-PO-22-0381"},
}

# Balances bought in advance, drawn down month by month.
PREPAID = {
    "bio-obs": [FlowMap({"id": "bio-obs-2022", "amount": "20000.00", "from": "2022-01", "applies_to": "all"})],
}

# One-off charges and credits, each its own line on the party's invoice of the month.
ONE_OFFS = [
    FlowMap(party="community:hydro", month="2022-04", description="Onboarding and cluster setup",
            amount="2500.00", kind="charge"),
]

# A local test server (aiosmtpd): `billing send` on the sample never reaches anyone.
SMTP = {"host": "localhost", "port": 8025, "starttls": False,
        "from": "Open Hubs Collaborative Billing <billing@openhubs.example>"}

COMMUNITIES = [
    # Latin America (grant-funded, shared GCP cluster "latam")
    CommunitySpec("uca", "Universidade & Ciência Aberta", "research", "alpha-2022-grant", "Mariana Conceição",
                  "financeiro@uca.example.org", ("Rua das Araucárias, 1200", "Curitiba – PR, 80060-000", "Brazil"),
                  funder=GRANT),
    CommunitySpec("uandina", "Universidad Andina de Datos", "education", "alpha-2022-grant", "Jorge Quispe Mamani",
                  "tesoreria@uandina.example.edu", ("Av. Universitaria 455", "Cusco 08003", "Peru"), funder=GRANT),
    CommunitySpec("rmca", "Red Mexicana de Ciencia Abierta", "research", "alpha-2022-grant", "Daniela Ortiz",
                  "administracion@rmca.example.org",
                  ("Av. Insurgentes Sur 1800, Piso 4", "Ciudad de México, CDMX 01030", "Mexico"),
                  funder=GRANT, active_from="2022-05"),
    CommunitySpec("ipc", "Instituto Patagónico del Clima", "research", "alpha-2022-grant", "Tomás Ñancucheo",
                  "compras@ipc.example.org", ("Av. Costanera 250", "Puerto Madryn, Chubut U9120", "Argentina"),
                  funder=GRANT),
    CommunitySpec("ups", "Universidad del Pacífico Sur", "education", "alpha-2022-grant", "Valentina Rojas",
                  "finanzas@ups.example.edu", ("Av. Pedro de Valdivia 1500", "Concepción 4030000", "Chile"),
                  funder=GRANT, active_from="2022-07"),
    CommunitySpec("datos-caribe", "Colectivo Datos del Caribe", "education", "alpha-2022-grant", "Luis Almonte",
                  "hola@datoscaribe.example.org", ("Calle El Conde 54", "Santo Domingo 10210", "Dominican Republic"),
                  funder=GRANT, active_from="2022-09"),
    # Small education hubs on the general shared GCP cluster "edu-shared"
    CommunitySpec("riverbend", "Riverbend Community College", "education", "alpha-2022", "Accounts Payable",
                  "ap@riverbend.example.edu", ("1200 River Road", "Riverbend, OR 97301", "United States")),
    CommunitySpec("lakeshore", "Lakeshore State University", "education", "alpha-2022", "Dana Whitfield",
                  "dwhitfield@lakeshore.example.edu",
                  ("Department of Statistics", "400 Lakeshore Drive", "Duluth, MN 55812", "United States")),
    CommunitySpec("millbrook", "Millbrook College", "education", "alpha-2022", "Priya Raman",
                  "bursar@millbrook.example.edu", ("18 College Green", "Millbrook, NY 12545", "United States")),
    CommunitySpec("pinevalley", "Pine Valley School of Public Health", "education", "alpha-2022", "Marcus Lee",
                  "finance@pinevalley.example.edu", ("77 Health Sciences Way", "Pine Valley, CA 91962", "United States")),
    CommunitySpec("harbor-tech", "Harbor Institute of Technology", "education", "usage-2026-pilot", "Grace Okafor",
                  "procurement@harbortech.example.edu", ("1 Harbor Plaza", "Baltimore, MD 21230", "United States")),
    # Dedicated GCP clusters
    CommunitySpec("cvu", "Central Valley University", "education", "alpha-2022", "Research Computing Office",
                  "rco-billing@cvu.example.edu", ("5200 Valley Parkway", "Merced, CA 95343", "United States")),
    CommunitySpec("climate-commons", "Climate Data Commons", "research", "alpha-2022", "Ingrid Sørensen",
                  "operations@climatecommons.example.org",
                  ("Earth Institute, 61 Route 9W", "Palisades, NY 10964", "United States")),
    CommunitySpec("open-geo", "Open Geoscience Partnership", "partnership", "alpha-2022", "Samuel Adeyemi",
                  "partnership@opengeo.example.org", ("300 Science Drive", "Boulder, CO 80305", "United States")),
    CommunitySpec("hydro", "Hydrology Research Consortium", "research", "alpha-2022", "Emily Tran",
                  "accounts@hydroconsortium.example.org", ("1500 Water Street", "Tuscaloosa, AL 35401", "United States"),
                  active_from="2022-04-13"),
    CommunitySpec("ocean-lab", "Coastal Ocean Modeling Lab", "research", "usage-2026-pilot", "Rafael Moreno",
                  "oceanlab-admin@example.edu", ("School of Oceanography, Box 357940", "Seattle, WA 98195",
                                                 "United States")),
    CommunitySpec("npu", "Northern Plains University", "education",
                  (("2022-01", "alpha-2022"), ("2022-07", "usage-2026-pilot")), "Office of Sponsored Programs",
                  "osp@npu.example.edu", ("1000 University Avenue", "Grand Forks, ND 58202", "United States")),
    CommunitySpec("bio-obs", "Biodiversity Observatory Network", "research", "alpha-2022", "Anke de Vries",
                  "finance@bioobs.example.org", ("Sciencepark 904", "1098 XH Amsterdam", "Netherlands")),
    # Africa (grant-funded, shared AWS cluster "africa")
    CommunitySpec("kilimanjaro", "Kilimanjaro Institute for Data Science", "research", "alpha-2022-grant",
                  "Neema Mushi", "accounts@kids.example.ac.tz", ("P.O. Box 2240", "Moshi", "Tanzania"), funder=GRANT),
    CommunitySpec("sahel-osn", "Réseau Sahélien de Science Ouverte", "research", "alpha-2022-grant",
                  "Aïssatou Maïga", "tresorerie@sahel-osn.example.org",
                  ("Route de l'Aéroport, BP 1520", "Niamey", "Niger"), funder=GRANT, active_from="2022-06"),
    CommunitySpec("volta", "Volta Basin University", "education", "alpha-2022-grant", "Kwame Mensah",
                  "bursary@volta.example.edu.gh", ("PMB 31", "Ho, Volta Region", "Ghana"), funder=GRANT),
    CommunitySpec("gl-bioinfo", "Great Lakes Bioinformatics Hub", "research", "alpha-2022-grant", "Grace Nakato",
                  "admin@glbioinfo.example.org", ("Plot 7, University Road", "Kampala", "Uganda"),
                  funder=GRANT, active_from="2022-04"),
    CommunitySpec("nile-data", "Nile Delta Data Collective", "education", "alpha-2022-grant", "Omar Farouk",
                  "finance@niledata.example.org", ("12 El-Gomhoria Street", "Mansoura, Dakahlia", "Egypt"),
                  funder=GRANT, active_from="2022-08"),
    # Dedicated AWS clusters
    CommunitySpec("earth-fellows", "Earth Data Fellows", "partnership", "alpha-2022", "Julia Stewart",
                  "fellows-admin@earthfellows.example.org", ("PO Box 1148", "Santa Barbara, CA 93102", "United States")),
    CommunitySpec("smithfield", "Smithfield Polytechnic", "education", "alpha-2022", "Accounts Payable",
                  "payables@smithfield.example.edu", ("45 Foundry Street", "Pittsburgh, PA 15222", "United States")),
    CommunitySpec("genomics-alliance", "Genomics Data Alliance", "research", "usage-2026-annual", "Hiroshi Tanaka",
                  "billing@genomicsalliance.example.org", ("415 Main Street", "Cambridge, MA 02142", "United States")),
    CommunitySpec("neuro-school", "Neuroimaging Summer School", "education", "alpha-2022", "Chloé Dubois",
                  "summerschool@neuro.example.org", ("Campus Box 88", "Seattle, WA 98105", "United States"),
                  active_from="2022-06", active_until="2022-09"),
    CommunitySpec("sky-archive", "Sky Survey Archive Group", "research", "alpha-2022", "Dr. Ana Lima",
                  "archive-ops@skysurvey.example.org", ("3700 San Martin Drive", "Baltimore, MD 21218", "United States")),
    # Azure
    CommunitySpec("polar-lab", "Polar Data Lab", "research", "partner-custom", "Erik Lindqvist",
                  "ekonomi@polarlab.example.se", ("Box 50005", "104 05 Stockholm", "Sweden")),
    CommunitySpec("alpine-eco", "Alpine Ecology Group", "research", "alpha-2022", "Lukas Gruber",
                  "sekretariat@alpine-eco.example.at", ("Technikerstraße 25", "6020 Innsbruck", "Austria")),
    CommunitySpec("baltic-obs", "Baltic Sea Observatory", "research", "alpha-2022", "Kristiina Tamm",
                  "finance@balticobs.example.ee", ("Mäealuse 14", "12618 Tallinn", "Estonia")),
]


@dataclass(frozen=True)
class ClusterSpec:
    id: str
    provider: str
    sub_account: str           # one sub-account per cluster in this sample
    sub_account_name: str
    region: str
    geo: str                   # region word used in SKU descriptions
    price_factor: str          # regional price relative to the list price below
    tenancy: str = "dedicated"
    community: str | None = None
    split: str | None = None
    core_nodes: int = 1
    first: int = 1             # first and last month the cluster runs
    last: int = 12
    start_day: int = 1         # the day of its first month it starts


GCP_BILLING_ACCOUNT = "01B7E2-4C9A3F-D58E61"
AWS_PAYER_ACCOUNT = "318645209771"
AZURE_BILLING_ACCOUNT = "8f3c2a71-5d4e-4b9a-a6c1-2e7d9b0f4a35:1c6e8d02-7b3f-4e95-8a41-d2c7f9e0b8a6_2019-05-31"
BILLING_ACCOUNTS = {"gcp": GCP_BILLING_ACCOUNT, "aws": AWS_PAYER_ACCOUNT, "azure": AZURE_BILLING_ACCOUNT}
HUB_TAG = {"gcp": "k8s-namespace", "aws": "2i2c:hub-name", "azure": "hub"}
FILE_GLOB = {"gcp": "data/focus/gcp/*.parquet", "aws": "data/focus/aws/*.csv.gz", "azure": "data/focus/azure/*.csv"}
UNCLAIMED_GCP_PROJECT = "ohc-sandbox"
GHOST_HUB = "ghost-workshop"

CLUSTERS = [
    # ---- GCP (9)
    ClusterSpec("latam", "gcp", "ohc-latam", "OHC Latin America hubs", "southamerica-east1", "Sao Paulo", "1.45",
                tenancy="shared", split="usage", core_nodes=2),
    ClusterSpec("edu-shared", "gcp", "ohc-edu-shared", "OHC shared education hubs", "us-central1", "Americas", "1",
                tenancy="shared", split="direct_cost", core_nodes=2),
    ClusterSpec("cvu", "gcp", "ohc-cvu", "OHC Central Valley University", "us-west2", "Americas", "1.2",
                community="cvu"),
    ClusterSpec("climate-commons", "gcp", "ohc-climate-commons", "OHC Climate Data Commons", "us-central1",
                "Americas", "1", community="climate-commons", core_nodes=2),
    ClusterSpec("open-geo", "gcp", "ohc-open-geo", "OHC Open Geoscience", "us-central1", "Americas", "1",
                community="open-geo"),
    ClusterSpec("hydro", "gcp", "ohc-hydro", "OHC Hydrology Research", "us-east1", "Americas", "1",
                community="hydro", first=4, start_day=13),
    ClusterSpec("ocean-lab", "gcp", "ohc-ocean-lab", "OHC Coastal Ocean Modeling", "us-west1", "Americas", "1",
                community="ocean-lab"),
    ClusterSpec("npu", "gcp", "ohc-npu", "OHC Northern Plains University", "us-central1", "Americas", "1",
                community="npu"),
    ClusterSpec("bio-obs", "gcp", "ohc-bio-obs", "OHC Biodiversity Observatory", "europe-west1", "Belgium", "1.1",
                community="bio-obs"),
    # ---- AWS (6)
    ClusterSpec("africa", "aws", "604183297152", "ohc-africa", "af-south-1", "AFS1", "1.32",
                tenancy="shared", split="usage", core_nodes=2),
    ClusterSpec("earth-fellows", "aws", "271946385012", "ohc-earth-fellows", "us-west-2", "USW2", "1",
                community="earth-fellows", core_nodes=2),
    ClusterSpec("smithfield", "aws", "538207614493", "ohc-smithfield", "us-east-2", "USE2", "1",
                community="smithfield"),
    ClusterSpec("genomics", "aws", "819364052728", "ohc-genomics", "us-east-1", "USE1", "1",
                community="genomics-alliance"),
    ClusterSpec("neuro-school", "aws", "447590218836", "ohc-neuro-school", "us-west-2", "USW2", "1",
                community="neuro-school", first=6, last=9),
    ClusterSpec("sky-archive", "aws", "962118734405", "sky-archive-prod", "us-east-1", "USE1", "1",
                community="sky-archive"),
    # ---- Azure (2)
    ClusterSpec("polar-lab", "azure", "3d9f6b2e-8a41-4c7d-9e05-6b1f2a7c8d93", "OHC Polar Data Lab", "westeurope",
                "EU West", "1", community="polar-lab"),
    ClusterSpec("eu-research", "azure", "a7c24e91-0f3b-4d68-b5e2-91d8c6f4a017", "OHC EU research hubs",
                "westeurope", "EU West", "1", tenancy="shared", split="even"),
]


@dataclass(frozen=True)
class HubSpec:
    id: str
    cluster: str
    community: str
    tag: str | None            # hub tag value; None = the hub owns its cluster's whole sub-account
    mau: int                   # monthly active users at the start (before season, growth)
    intensity: str             # GiB-hours of memory requested per active user per weekday
    season: str = "research"
    growth: str = "0.3"        # relative growth from January to December
    home_gib: int = 20         # home directory storage (GiB) when it is billed to the hub
    bucket_gib: int = 0        # object storage (GiB), 0 = none
    first: int = 1
    last: int = 12
    start_day: int = 1          # the day of its first month it starts
    idle: tuple[int, ...] = ()  # months with no usage at all


H = HubSpec
HUBS = [
    # latam (shared, GCP, grant)
    H("latam-uca", "latam", "uca", "uca", 60, "10", "research", "0.8", bucket_gib=200),
    H("latam-uandina", "latam", "uandina", "uandina", 120, "4", "edu-south", "0.5"),
    H("latam-rmca", "latam", "rmca", "rmca", 40, "10", "research", "0.4", first=5),
    H("latam-ipc", "latam", "ipc", "ipc", 25, "25", "research", "0.6", bucket_gib=500),
    H("latam-ups", "latam", "ups", "ups", 80, "3", "edu-south", "0.3", first=7),
    H("latam-datos-caribe", "latam", "datos-caribe", "datos-caribe", 15, "4", "edu", "0.2", first=9),
    # edu-shared (shared, GCP)
    H("edu-riverbend", "edu-shared", "riverbend", "riverbend", 150, "5", "edu", "0.2"),
    H("edu-lakeshore", "edu-shared", "lakeshore", "lakeshore", 350, "5", "edu", "0.3"),
    H("edu-millbrook", "edu-shared", "millbrook", "millbrook", 40, "4", "edu", "0.1", idle=(7,)),
    H("edu-pinevalley", "edu-shared", "pinevalley", "pinevalley", 60, "6", "edu", "0.4", bucket_gib=100),
    H("edu-harbor-tech", "edu-shared", "harbor-tech", "harbor-tech", 200, "4", "edu", "0.5"),
    # dedicated GCP
    H("cvu-staging", "cvu", "cvu", "staging", 5, "3", "edu", "0.2", home_gib=10),
    H("cvu-prod", "cvu", "cvu", "prod", 450, "6", "edu", "0.35", home_gib=900),
    H("climate-commons-staging", "climate-commons", "climate-commons", "staging", 8, "10", home_gib=40),
    H("climate-commons-prod", "climate-commons", "climate-commons", "prod", 700, "10", "research", "0.5",
      home_gib=2000, bucket_gib=5000),
    H("open-geo-staging", "open-geo", "open-geo", "staging", 10, "8", home_gib=30),
    H("open-geo-prod", "open-geo", "open-geo", "prod", 300, "15", "research", "0.3", home_gib=1500, bucket_gib=3000),
    H("open-geo-workshop", "open-geo", "open-geo", "workshop", 150, "6", "event", "0", home_gib=200, first=9),
    H("hydro-staging", "hydro", "hydro", "staging", 5, "6", first=4, start_day=13),
    H("hydro-prod", "hydro", "hydro", "prod", 120, "15", "research", "0.6", home_gib=400, bucket_gib=1000, first=4,
      start_day=13),
    H("ocean-lab-staging", "ocean-lab", "ocean-lab", "staging", 5, "5"),
    H("ocean-lab-prod", "ocean-lab", "ocean-lab", "prod", 70, "20", "research", "0.3", home_gib=600, bucket_gib=2000),
    H("npu-staging", "npu", "npu", "staging", 5, "3", "edu"),
    H("npu-prod", "npu", "npu", "prod", 250, "4", "edu", "0.25", home_gib=400),
    H("bio-obs-prod", "bio-obs", "bio-obs", "prod", 90, "8", "research", "0.4", home_gib=300, bucket_gib=800),
    # africa (shared, AWS, grant)
    H("africa-kilimanjaro", "africa", "kilimanjaro", "kilimanjaro", 50, "10", "research", "0.6", home_gib=80),
    H("africa-sahel-osn", "africa", "sahel-osn", "sahel-osn", 30, "8", "research", "0.5", home_gib=40, first=6),
    H("africa-volta", "africa", "volta", "volta", 100, "4", "edu", "0.4", home_gib=60),
    H("africa-gl-bioinfo", "africa", "gl-bioinfo", "gl-bioinfo", 20, "30", "research", "0.5", home_gib=120,
      bucket_gib=300, first=4),
    H("africa-nile-data", "africa", "nile-data", "nile-data", 60, "3", "edu", "0.3", home_gib=30, first=8),
    # dedicated AWS
    H("earth-fellows-staging", "earth-fellows", "earth-fellows", "staging", 10, "4"),
    H("earth-fellows-prod", "earth-fellows", "earth-fellows", "prod", 900, "4.5", "research", "0.6", home_gib=1500,
      bucket_gib=2000),
    H("earth-fellows-workshop", "earth-fellows", "earth-fellows", "workshop", 300, "4", "event", "0.3", home_gib=200),
    H("smithfield-staging", "smithfield", "smithfield", "staging", 5, "3", "edu"),
    H("smithfield-prod", "smithfield", "smithfield", "prod", 180, "5", "edu", "0.2", home_gib=200),
    H("genomics-staging", "genomics", "genomics-alliance", "staging", 6, "6"),
    H("genomics-prod", "genomics", "genomics-alliance", "prod", 220, "12", "research", "0.4", home_gib=800,
      bucket_gib=4000),
    H("neuro-school", "neuro-school", "neuro-school", "neuro-school", 250, "8", "event", "0", home_gib=150,
      first=6, last=9),
    H("sky-archive", "sky-archive", "sky-archive", None, 60, "15", "research", "0.3", home_gib=300, bucket_gib=6000),
    # Azure
    H("polar-lab-staging", "polar-lab", "polar-lab", "staging", 6, "5"),
    H("polar-lab-prod", "polar-lab", "polar-lab", "prod", 140, "18", "research", "0.6", home_gib=500),
    H("eu-alpine-eco", "eu-research", "alpine-eco", "alpine-eco", 30, "8", "research", "0.3", home_gib=50),
    H("eu-baltic-obs", "eu-research", "baltic-obs", "baltic-obs", 45, "10", "research", "0.4", home_gib=80),
]
del H

# Activity by month (1.00 = typical), and on weekends relative to weekdays.
SEASONS = {
    "edu":       ("0.80 1.00 1.05 1.10 0.90 0.45 0.35 0.60 1.10 1.15 1.15 0.70", "0.35"),
    "edu-south": ("0.35 0.40 1.00 1.10 1.10 1.00 0.60 1.05 1.10 1.15 1.10 0.60", "0.35"),
    "research":  ("0.90 0.95 1.00 1.00 1.00 0.95 0.85 0.85 1.00 1.05 1.05 0.85", "0.70"),
    "event":     ("1.00 1.00 1.00 1.00 1.00 0.60 1.30 1.00 1.20 1.00 0.70 0.50", "0.50"),
}
SEASON_FACTORS = {k: [Decimal(x) for x in months.split()] for k, (months, _) in SEASONS.items()}
WEEKEND_FACTORS = {k: Decimal(weekend) for k, (_, weekend) in SEASONS.items()}


# =====================================================================================
# Deterministic draws
# =====================================================================================


def _rng(*parts: object) -> random.Random:
    """A generator seeded by a string naming what is drawn (stable across runs and orderings)."""
    return random.Random("|".join([str(SEED), *map(str, parts)]))


def _factor(rng: random.Random, low_permille: int, high_permille: int) -> Decimal:
    return Decimal(rng.randint(low_permille, high_permille)) / 1000


def _hex(*parts: object, n: int = 8) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:n]


def _days(month: int) -> list[dt.date]:
    return [dt.date(YEAR, month, d) for d in range(1, calendar.monthrange(YEAR, month)[1] + 1)]


def _ts(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=UTC)


def _month_start(month: int) -> dt.date:
    return dt.date(YEAR, month, 1)


def _month_end(month: int) -> dt.date:
    return dt.date(YEAR + (month == 12), month % 12 + 1, 1)


# =====================================================================================
# Usage: monthly active users and memory requested
# =====================================================================================


def _growth(hub: HubSpec, month: int) -> Decimal:
    return 1 + Decimal(hub.growth) * (month - 1) / 11


def _ramp(hub: HubSpec, month: int) -> Decimal:
    """A new hub takes a couple of months to reach its size."""
    if hub.first == 1:   # already running when the year starts
        return Decimal(1)
    return {0: Decimal("0.4"), 1: Decimal("0.7")}.get(month - hub.first, Decimal(1))


def hub_mau(hub: HubSpec, month: int) -> int | None:
    """Monthly active users; None when the hub does not exist that month."""
    if not hub.first <= month <= hub.last:
        return None
    if month in hub.idle:
        return 0
    factor = SEASON_FACTORS[hub.season][month - 1] * _growth(hub, month) * _ramp(hub, month)
    value = (hub.mau * factor * _factor(_rng("mau", hub.id, month), 900, 1100)).to_integral_value(ROUND_HALF_UP)
    return max(5, int(value))


def hub_staff(hub: HubSpec, month: int, mau: int) -> int:
    """How many of a hub's monthly active users are the operator's staff: all of a staging hub's, else a few."""
    if hub.tag == "staging":
        return mau
    return min(mau, _rng("staff", hub.id, month).randint(0, 3))


def hub_daily_usage(hub: HubSpec, month: int) -> dict[dt.date, Decimal]:
    """Memory requested per day (GiB-hours); empty when the hub does not exist that month."""
    mau = hub_mau(hub, month)
    if mau is None:
        return {}
    rng = _rng("usage", hub.id, month)
    out = {}
    for day in _days(month):
        if not _started(hub, day):
            continue
        weekday = Decimal(1) if day.weekday() < 5 else WEEKEND_FACTORS[hub.season]
        noise = _factor(rng, 800, 1200)
        out[day] = (mau * Decimal(hub.intensity) * weekday * noise).quantize(Q_USAGE)
    return out


# =====================================================================================
# Cost rows
# =====================================================================================


@dataclass(frozen=True)
class Sku:
    service: str
    description: str           # may contain {geo} and {price}
    unit: str
    price: str                 # list price per unit, before the regional factor
    regional: bool = True      # False: same price in every region (control-plane fees)


GCP_SKUS = {
    "user_ram": Sku("Compute Engine", "N2D AMD Instance Ram running in {geo}", "gibibyte hour", "0.004237"),
    "user_cpu": Sku("Compute Engine", "N2D AMD Instance Core running in {geo}", "hour", "0.031611"),
    "home": Sku("Compute Engine", "Storage PD Capacity", "gibibyte month", "0.040"),
    "bucket": Sku("Cloud Storage", "Standard Storage {geo}", "gibibyte month", "0.020"),
    "control": Sku("Kubernetes Engine", "Regional Kubernetes Clusters", "hour", "0.10", regional=False),
    "core_cpu": Sku("Compute Engine", "E2 Instance Core running in {geo}", "hour", "0.021811"),
    "core_ram": Sku("Compute Engine", "E2 Instance Ram running in {geo}", "gibibyte hour", "0.002923"),
    "nat": Sku("Networking", "Cloud NAT Gateway uptime charge", "hour", "0.044"),
    "egress": Sku("Networking", "Network Internet Data Transfer Out from {geo} to Americas", "gibibyte", "0.12"),
    "filestore": Sku("Cloud Filestore", "Filestore Capacity Basic HDD", "gibibyte month", "0.20"),
}
AWS_SKUS = {
    "user": Sku("Amazon Elastic Compute Cloud", "${price} per On Demand Linux r5.xlarge Instance Hour", "Hrs", "0.252"),
    "home": Sku("Amazon Elastic File System", "${price} per GB-Mo for Standard storage", "GB-Mo", "0.30"),
    "bucket": Sku("Amazon Simple Storage Service", "${price} per GB - first 50 TB / month of storage used",
                  "GB-Mo", "0.023"),
    "control": Sku("Amazon Elastic Kubernetes Service", "$0.10 per hour per EKS cluster", "Hrs", "0.10",
                   regional=False),
    "core": Sku("Amazon Elastic Compute Cloud", "${price} per On Demand Linux r5.xlarge Instance Hour", "Hrs", "0.252"),
    "nat": Sku("Amazon Virtual Private Cloud", "${price} per NAT Gateway Hour", "Hrs", "0.045"),
    "nat_bytes": Sku("Amazon Virtual Private Cloud", "${price} per GB Data Processed by NAT Gateways", "GB", "0.045"),
    "backup": Sku("Amazon Simple Storage Service", "${price} per GB - first 50 TB / month of storage used",
                  "GB-Mo", "0.023"),
}
AZURE_SKUS = {
    "user": Sku("Virtual Machines", "E4s v3", "Hours", "0.296"),
    "home": Sku("Storage", "Premium LRS Provisioned (Azure Files)", "GB/Month", "0.192"),
    "control": Sku("Azure Kubernetes Service", "Standard Uptime SLA", "Hours", "0.10", regional=False),
    "core": Sku("Virtual Machines", "D4s v3", "Hours", "0.230"),
    "egress": Sku("Bandwidth", "Standard Data Transfer Out", "GB", "0.087"),
    "backup": Sku("Storage", "Hot LRS Data Stored", "GB/Month", "0.0208"),
}

PROVIDER_INFO = {
    "gcp": {"ProviderName": "Google Cloud", "PublisherName": "Google Cloud", "InvoiceIssuerName": "Google LLC",
            "BillingAccountName": "Open Hubs Collaborative"},
    "aws": {"ProviderName": "AWS", "PublisherName": "Amazon Web Services, Inc.",
            "InvoiceIssuerName": "Amazon Web Services, Inc.",
            "BillingAccountName": "Open Hubs Collaborative (management account)"},
    "azure": {"ProviderName": "Microsoft", "PublisherName": "Microsoft", "InvoiceIssuerName": "Microsoft",
              "BillingAccountName": "Open Hubs Collaborative"},
}
GIB_PER_NODE_HOUR = {"gcp": Decimal(8), "aws": Decimal(32), "azure": Decimal(32)}  # memory per billed unit
# FOCUS ServiceCategory as each cloud's own export sets it (the file carries it; ingest does not guess).
SERVICE_CATEGORIES = {
    "Compute Engine": "Compute", "Kubernetes Engine": "Compute", "Cloud Storage": "Storage",
    "Cloud Filestore": "Storage", "Networking": "Networking",
    "Amazon Elastic Compute Cloud": "Compute", "Amazon Elastic Kubernetes Service": "Compute",
    "Amazon Elastic File System": "Storage", "Amazon Simple Storage Service": "Storage",
    "Amazon Virtual Private Cloud": "Networking", "Tax": "Other",
    "Virtual Machines": "Compute", "Azure Kubernetes Service": "Compute", "Storage": "Storage",
    "Bandwidth": "Networking",
}
AWS_TAX_RATE = Decimal("0.0725")
GCP_SUSTAINED_USE_SHARE = Decimal("0.12")
GKE_FREE_TIER_CREDIT = Decimal("74.40")
AWS_RESEARCH_CREDIT = Decimal("250.00")


class MonthWriter:
    """Collects one provider's cost rows for one month."""

    def __init__(self, provider: str, month: int):
        self.provider = provider
        self.month = month
        self.rows: list[dict[str, Any]] = []
        self.skus = {"gcp": GCP_SKUS, "aws": AWS_SKUS, "azure": AZURE_SKUS}[provider]
        info = PROVIDER_INFO[provider]
        inv_rng = _rng("invoice", provider, month)
        invoice = {"gcp": f"5{inv_rng.randint(10**8, 10**9 - 1)}",
                   "aws": f"{inv_rng.randint(10**9, 10**10 - 1)}",
                   "azure": f"G0{inv_rng.randint(10**7, 10**8 - 1)}"}[provider]
        last_day = _month_end(month) - dt.timedelta(days=1)
        export = {"gcp": f"gcp_billing_export_focus_{GCP_BILLING_ACCOUNT.replace('-', '_')}/{YEAR}{month:02d}",
                  "aws": f"ohc-focus/data/BILLING_PERIOD={YEAR}-{month:02d}/ohc-focus-00001",
                  "azure": f"ohc-focuscost/{YEAR}{month:02d}01-{last_day:%Y%m%d}/part_0_0001"}[provider]
        self.common = {
            "BillingAccountId": BILLING_ACCOUNTS[provider], "BillingAccountName": info["BillingAccountName"],
            "BillingCurrency": "USD", "BillingPeriodStart": _ts(_month_start(month)),
            "BillingPeriodEnd": _ts(_month_end(month)), "InvoiceId": invoice,
            "InvoiceIssuerName": info["InvoiceIssuerName"], "ProviderName": info["ProviderName"],
            "PublisherName": info["PublisherName"], "x_ExportId": export,
        }

    def price(self, sku: Sku, cluster: ClusterSpec | None) -> Decimal:
        factor = Decimal(cluster.price_factor) if (cluster is not None and sku.regional) else 1
        return Decimal(sku.price) * factor

    def sku_id(self, key: str, region: str) -> str:
        if self.provider == "gcp":
            h = _hex("sku", key, region, n=12).upper()
            return f"{h[:4]}-{h[4:8]}-{h[8:]}"
        if self.provider == "aws":
            return _hex("sku", key, region, n=16).upper().replace("0", "Q").replace("1", "Z")
        h = _hex("meter", key, region, n=32)
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def usage(self, *, key: str, cluster: ClusterSpec | None, sub: str, sub_name: str, region: str,
              geo: str, day: dt.date, quantity: Decimal, tags: dict, resource: str | None,
              price: Decimal | None = None) -> Decimal:
        """Add a daily Usage row; returns its cost."""
        sku = self.skus[key]
        unit_price = price if price is not None else self.price(sku, cluster)
        quantity = quantity.quantize(Q_QTY)
        cost = (quantity * unit_price).quantize(Q_MONEY)
        self.add(cost=cost, category="Usage", frequency="Usage-Based", service=sku.service,
                 description=sku.description.format(geo=geo, price=_plain(unit_price.normalize())),
                 quantity=quantity, unit=sku.unit, region=region, resource=resource,
                 sku=self.sku_id(key, region), sub=sub, sub_name=sub_name, tags=tags,
                 start=_ts(day), end=_ts(day + dt.timedelta(days=1)))
        return cost

    def add(self, *, cost: Decimal, category: str, frequency: str, service: str, description: str,
            quantity: Decimal | None, unit: str | None, region: str | None, resource: str | None, sku: str | None,
            sub: str, sub_name: str, tags: dict, start: dt.datetime, end: dt.datetime,
            charge_class: str | None = None, list_cost: Decimal | None = None) -> None:
        row = {
            "BilledCost": cost, "EffectiveCost": cost,
            "ListCost": cost if list_cost is None else list_cost,
            "ContractedCost": cost if list_cost is None else list_cost,
            **self.common,
            "ChargeCategory": category, "ChargeClass": charge_class, "ChargeDescription": description,
            "ChargeFrequency": frequency, "ChargePeriodStart": start, "ChargePeriodEnd": end,
            "ConsumedQuantity": quantity, "ConsumedUnit": unit, "RegionId": region, "ResourceId": resource,
            "ServiceCategory": SERVICE_CATEGORIES[service], "ServiceName": service, "SkuId": sku,
            "SubAccountId": sub, "SubAccountName": sub_name,
            "Tags": json.dumps(tags, ensure_ascii=False),
        }
        self.rows.append({name: row[name] for name in FOCUS_COLUMNS})

    def monthly(self, **kwargs: Any) -> None:
        """A row for the whole month (credits, tax)."""
        self.add(start=_ts(_month_start(self.month)), end=_ts(_month_end(self.month)), quantity=None, unit=None,
                 **kwargs)


def _plain(d: Decimal) -> str:
    """A Decimal as plain digits (no exponent), trailing zeros kept as they are."""
    return format(d, "f")


# ---- per-provider resource names and tags ---------------------------------------------


def _zone(cluster: ClusterSpec) -> str:
    return f"{cluster.region}-b"


def _gcp_hub_rows(w: MonthWriter, c: ClusterSpec, hub: HubSpec, day: dt.date, usage: Decimal,
                  per_project: dict[str, Decimal]) -> None:
    proj, labels = c.sub_account, {"goog-k8s-cluster-name": c.id, "k8s-namespace": hub.tag}
    base = dict(cluster=c, sub=proj, sub_name=c.sub_account_name, region=c.region, geo=c.geo, day=day)
    if usage > 0:
        rng = _rng("overprovision", hub.id, day)
        node_gib_hours = usage * _factor(rng, 1250, 1350)
        pool = f"//compute.googleapis.com/projects/{proj}/zones/{_zone(c)}/instanceGroups/gke-{c.id}-nb-{hub.tag}"
        user_labels = {**labels, "goog-k8s-node-pool-name": f"nb-{hub.tag}"}
        per_project[proj] += w.usage(key="user_ram", quantity=node_gib_hours, tags=user_labels, resource=pool, **base)
        per_project[proj] += w.usage(key="user_cpu", quantity=node_gib_hours / GIB_PER_NODE_HOUR["gcp"],
                                     tags=user_labels, resource=pool, **base)
    days = Decimal(calendar.monthrange(YEAR, day.month)[1])
    if c.tenancy == "dedicated":   # home directories: a disk per hub (shared clusters use one Filestore)
        gib = hub.home_gib * _growth(hub, day.month)
        w.usage(key="home", quantity=gib / days, tags=labels,
                resource=f"//compute.googleapis.com/projects/{proj}/zones/{_zone(c)}/disks/{c.id}-{hub.tag}-home-nfs",
                **base)
    if hub.bucket_gib:
        gib = hub.bucket_gib * _growth(hub, day.month)
        w.usage(key="bucket", quantity=gib / days, tags=labels,
                resource=f"//storage.googleapis.com/projects/_/buckets/ohc-{c.id}-scratch-{hub.tag}", **base)


def _gcp_overhead_rows(w: MonthWriter, c: ClusterSpec, day: dt.date) -> None:
    proj = c.sub_account
    base = dict(cluster=c, sub=proj, sub_name=c.sub_account_name, region=c.region, geo=c.geo, day=day)
    cluster_label = {"goog-k8s-cluster-name": c.id}
    w.usage(key="control", quantity=Decimal(24), tags=cluster_label,
            resource=f"//container.googleapis.com/projects/{proj}/locations/{c.region}/clusters/{c.id}", **base)
    core = {**cluster_label, "goog-k8s-node-pool-name": "core-pool", "node-purpose": "core"}
    pool = f"//compute.googleapis.com/projects/{proj}/zones/{_zone(c)}/instanceGroups/gke-{c.id}-core-pool"
    w.usage(key="core_cpu", quantity=Decimal(24 * 4 * c.core_nodes), tags=core, resource=pool, **base)
    w.usage(key="core_ram", quantity=Decimal(24 * 32 * c.core_nodes), tags=core, resource=pool, **base)
    router = f"//compute.googleapis.com/projects/{proj}/regions/{c.region}/routers/{c.id}-router"
    w.usage(key="nat", quantity=Decimal(24), tags={}, resource=router, **base)
    rng = _rng("egress", c.id, day)
    w.usage(key="egress", quantity=Decimal(rng.randint(4000, 30000 * c.core_nodes)) / 1000, tags={},
            resource=router, **base)
    days = Decimal(calendar.monthrange(YEAR, day.month)[1])
    if c.tenancy == "shared":
        w.usage(key="filestore", quantity=Decimal(1024) / days, tags=cluster_label,
                resource=f"//file.googleapis.com/projects/{proj}/locations/{_zone(c)}/instances/{c.id}-homedirs",
                **base)
    else:
        w.usage(key="bucket", quantity=Decimal(150) / days, tags={},
                resource=f"//storage.googleapis.com/projects/_/buckets/ohc-{c.id}-prometheus-backups", **base)


def _aws_user_tags(c: ClusterSpec, hub_tag_value: str | None, purpose: str) -> dict:
    tags: dict[str, str] = {}
    if hub_tag_value is not None:
        tags["2i2c:hub-name"] = hub_tag_value
    tags["2i2c:node-purpose"] = purpose
    tags["2i2c.org/cluster-name"] = c.id
    return tags


def _aws_hub_rows(w: MonthWriter, c: ClusterSpec, hub: HubSpec, day: dt.date, usage: Decimal) -> None:
    acct, region = c.sub_account, c.region
    base = dict(cluster=c, sub=acct, sub_name=c.sub_account_name, region=region, geo=c.geo, day=day)
    name = hub.tag if hub.tag is not None else hub.id
    if usage > 0:
        rng = _rng("overprovision", hub.id, day)
        node_gib_hours = usage * _factor(rng, 1250, 1350)
        w.usage(key="user", quantity=node_gib_hours / GIB_PER_NODE_HOUR["aws"],
                tags=_aws_user_tags(c, hub.tag, "user"),
                resource=f"arn:aws:eks:{region}:{acct}:nodegroup/{c.id}/nb-{name}/{_hex('ng', c.id, name, n=8)}",
                **base)
    days = Decimal(calendar.monthrange(YEAR, day.month)[1])
    home_tags = {"2i2c:hub-name": hub.tag, "2i2c:volume-purpose": "home-nfs"} if hub.tag else \
        {"2i2c:volume-purpose": "home-nfs"}
    w.usage(key="home", quantity=hub.home_gib * _growth(hub, day.month) / days, tags=home_tags,
            resource=f"arn:aws:elasticfilesystem:{region}:{acct}:file-system/fs-{_hex('efs', c.id, name, n=17)}",
            **base)
    if hub.bucket_gib:
        w.usage(key="bucket", quantity=hub.bucket_gib * _growth(hub, day.month) / days,
                tags={"2i2c:hub-name": hub.tag} if hub.tag else {},
                resource=f"arn:aws:s3:::ohc-{c.id}-scratch-{name}", **base)


def _aws_overhead_rows(w: MonthWriter, c: ClusterSpec, day: dt.date) -> None:
    acct, region = c.sub_account, c.region
    base = dict(cluster=c, sub=acct, sub_name=c.sub_account_name, region=region, geo=c.geo, day=day)
    cluster_tag = {"2i2c.org/cluster-name": c.id}
    w.usage(key="control", quantity=Decimal(24), tags=cluster_tag,
            resource=f"arn:aws:eks:{region}:{acct}:cluster/{c.id}", **base)
    w.usage(key="core", quantity=Decimal(24 * c.core_nodes), tags=_aws_user_tags(c, None, "core"),
            resource=f"arn:aws:eks:{region}:{acct}:nodegroup/{c.id}/core-b/{_hex('ng', c.id, 'core', n=8)}", **base)
    nat = f"arn:aws:ec2:{region}:{acct}:natgateway/nat-{_hex('nat', c.id, n=17)}"
    w.usage(key="nat", quantity=Decimal(24), tags={}, resource=nat, **base)
    rng = _rng("nat-bytes", c.id, day)
    w.usage(key="nat_bytes", quantity=Decimal(rng.randint(3000, 25000 * c.core_nodes)) / 1000, tags={},
            resource=nat, **base)
    days = Decimal(calendar.monthrange(YEAR, day.month)[1])
    w.usage(key="backup", quantity=Decimal(300) / days, tags=cluster_tag,
            resource=f"arn:aws:s3:::ohc-{c.id}-prometheus-backups", **base)


def _azure_rg(c: ClusterSpec) -> str:
    return f"/subscriptions/{c.sub_account}/resourcegroups/mc_{c.id}_{c.id}_{c.region}"


def _azure_hub_rows(w: MonthWriter, c: ClusterSpec, hub: HubSpec, day: dt.date, usage: Decimal) -> None:
    base = dict(cluster=c, sub=c.sub_account, sub_name=c.sub_account_name, region=c.region, geo=c.geo, day=day)
    if usage > 0:
        rng = _rng("overprovision", hub.id, day)
        node_gib_hours = usage * _factor(rng, 1250, 1350)
        w.usage(key="user", quantity=node_gib_hours / GIB_PER_NODE_HOUR["azure"],
                tags={"hub": hub.tag, "node-purpose": "user"},
                resource=f"{_azure_rg(c)}/providers/microsoft.compute/virtualmachinescalesets/"
                         f"aks-nb{hub.tag.replace('-', '')}-{_hex('vmss', c.id, hub.tag, n=8)}-vmss",
                **base)
    days = Decimal(calendar.monthrange(YEAR, day.month)[1])
    w.usage(key="home", quantity=hub.home_gib * _growth(hub, day.month) / days,
            tags={"hub": hub.tag, "volume-purpose": "home-nfs"},
            resource=f"/subscriptions/{c.sub_account}/resourcegroups/{c.id}/providers/microsoft.storage/"
                     f"storageaccounts/ohc{c.id.replace('-', '')}homes/fileservices/default/shares/{hub.tag}",
            **base)


def _azure_overhead_rows(w: MonthWriter, c: ClusterSpec, day: dt.date) -> None:
    base = dict(cluster=c, sub=c.sub_account, sub_name=c.sub_account_name, region=c.region, geo=c.geo, day=day)
    w.usage(key="control", quantity=Decimal(24), tags={},
            resource=f"/subscriptions/{c.sub_account}/resourcegroups/{c.id}/providers/"
                     f"microsoft.containerservice/managedclusters/{c.id}", **base)
    w.usage(key="core", quantity=Decimal(24 * c.core_nodes), tags={"node-purpose": "core"},
            resource=f"{_azure_rg(c)}/providers/microsoft.compute/virtualmachinescalesets/"
                     f"aks-core-{_hex('vmss', c.id, 'core', n=8)}-vmss", **base)
    rng = _rng("egress", c.id, day)
    w.usage(key="egress", quantity=Decimal(rng.randint(2000, 20000)) / 1000, tags={},
            resource=f"{_azure_rg(c)}/providers/microsoft.network/loadbalancers/kubernetes", **base)
    days = Decimal(calendar.monthrange(YEAR, day.month)[1])
    w.usage(key="backup", quantity=Decimal(200) / days, tags={},
            resource=f"/subscriptions/{c.sub_account}/resourcegroups/{c.id}/providers/microsoft.storage/"
                     f"storageaccounts/ohc{c.id.replace('-', '')}backups", **base)


def _cluster_runs(c: ClusterSpec, month: int) -> bool:
    return c.first <= month <= c.last


def _started(spec: ClusterSpec | HubSpec, day: dt.date) -> bool:
    """Whether a cluster or hub has started by `day` (one that starts mid-month has no cost before)."""
    return (day.month, day.day) >= (spec.first, spec.start_day)


def cost_rows(provider: str, month: int, usage: dict[str, dict[dt.date, Decimal]]) -> list[dict[str, Any]]:
    """Every FOCUS row of one provider's export for one month."""
    w = MonthWriter(provider, month)
    clusters = [c for c in CLUSTERS if c.provider == provider and _cluster_runs(c, month)]
    hubs = {c.id: [h for h in HUBS if h.cluster == c.id and h.first <= month <= h.last] for c in clusters}
    n2d_cost = {c.sub_account: ZERO for c in clusters}   # GCP: base of the sustained-use discount
    usage_cost = {c.sub_account: ZERO for c in clusters}  # AWS: base of the tax
    for day in _days(month):
        for c in clusters:
            if not _started(c, day):
                continue
            running = [h for h in hubs[c.id] if _started(h, day)]
            before = len(w.rows)
            if provider == "gcp":
                _gcp_overhead_rows(w, c, day)
                for h in running:
                    _gcp_hub_rows(w, c, h, day, usage[h.id][day], n2d_cost)
            elif provider == "aws":
                _aws_overhead_rows(w, c, day)
                for h in running:
                    _aws_hub_rows(w, c, h, day, usage[h.id][day])
            else:
                _azure_overhead_rows(w, c, day)
                for h in running:
                    _azure_hub_rows(w, c, h, day, usage[h.id][day])
            usage_cost[c.sub_account] += sum((r["BilledCost"] for r in w.rows[before:]), ZERO)
        if provider == "gcp":
            _gcp_unclaimed_project_rows(w, day)
        if provider == "aws":
            _aws_unknown_hub_rows(w, day, usage_cost)
    # ---- monthly rows: credits, tax, the correction
    if provider == "gcp":
        for c in clusters:
            if n2d_cost[c.sub_account] > 0:
                w.monthly(cost=-(n2d_cost[c.sub_account] * GCP_SUSTAINED_USE_SHARE).quantize(Q_QTY),
                          category="Credit", frequency="Usage-Based", service="Compute Engine",
                          description="Sustained Usage Discount", region=c.region, resource=None,
                          sku=w.sku_id("sud", c.region), sub=c.sub_account, sub_name=c.sub_account_name, tags={},
                          list_cost=ZERO)
        edu = next(c for c in clusters if c.id == "edu-shared")
        w.monthly(cost=-GKE_FREE_TIER_CREDIT, category="Credit", frequency="Usage-Based",
                  service="Kubernetes Engine", description="GKE free tier: one cluster's management fee",
                  region=edu.region, resource=None, sku=w.sku_id("gke-free-tier", "global"), sub=edu.sub_account,
                  sub_name=edu.sub_account_name, tags={}, list_cost=ZERO)
        if month == 6:
            _gcp_correction_row(w)
    if provider == "aws":
        africa = next(c for c in clusters if c.id == "africa")
        if month >= 7:
            w.monthly(cost=-AWS_RESEARCH_CREDIT, category="Credit", frequency="One-Time",
                      service="Amazon Elastic Compute Cloud", description="AWS Research Credits (promotional credit)",
                      region=None, resource=None, sku=None, sub=africa.sub_account, sub_name=africa.sub_account_name,
                      tags={}, list_cost=ZERO)
        for c in clusters:
            w.monthly(cost=(usage_cost[c.sub_account] * AWS_TAX_RATE).quantize(Q_CENT), category="Tax",
                      frequency="One-Time", service="Tax", description="Sales tax", region=None, resource=None,
                      sku=None, sub=c.sub_account, sub_name=c.sub_account_name, tags={})
        if month == 6:
            _aws_correction_rows(w)
    return w.rows


def _gcp_unclaimed_project_rows(w: MonthWriter, day: dt.date) -> None:
    """An operator's sandbox project on the same billing account that no cluster claims."""
    rng = _rng("sandbox", day)
    if rng.random() < 0.4:
        return
    base = dict(cluster=None, sub=UNCLAIMED_GCP_PROJECT, sub_name="OHC sandbox", region="us-central1",
                geo="Americas", day=day)
    vm = f"//compute.googleapis.com/projects/{UNCLAIMED_GCP_PROJECT}/zones/us-central1-a/instances/scratch-vm"
    hours = Decimal(rng.randint(2, 16))
    w.usage(key="core_cpu", quantity=hours * 2, tags={"purpose": "experiments"}, resource=vm, **base)
    w.usage(key="core_ram", quantity=hours * 8, tags={"purpose": "experiments"}, resource=vm, **base)


def _aws_unknown_hub_rows(w: MonthWriter, day: dt.date, usage_cost: dict[str, Decimal]) -> None:
    """A workshop hub someone ran on the shared AWS cluster without adding it to the configuration."""
    workshop_days = {3: range(14, 19), 4: range(4, 7), 10: range(24, 29)}
    if day.day not in workshop_days.get(day.month, ()):
        return
    c = next(c for c in CLUSTERS if c.id == "africa")
    rng = _rng("ghost", day)
    usage_cost[c.sub_account] += w.usage(
        key="user", cluster=c, sub=c.sub_account, sub_name=c.sub_account_name, region=c.region, geo=c.geo, day=day,
        quantity=Decimal(rng.randint(20000, 80000)) / 1000, tags=_aws_user_tags(c, GHOST_HUB, "user"),
        resource=f"arn:aws:eks:{c.region}:{c.sub_account}:nodegroup/{c.id}/nb-{GHOST_HUB}/{_hex('ng', GHOST_HUB)}")


def _gcp_correction_row(w: MonthWriter) -> None:
    """June's export corrects an over-charge of May (FOCUS ChargeClass "Correction")."""
    c = next(c for c in CLUSTERS if c.id == "cvu")
    sku = GCP_SKUS["user_ram"]
    unit_price = w.price(sku, c)
    quantity = Decimal("-8120.5")
    cost = (quantity * unit_price).quantize(Q_MONEY)
    w.add(cost=cost, category="Usage", frequency="Usage-Based", service=sku.service,
          description=sku.description.format(geo=c.geo) + " (correction of 2022-05-17 usage)",
          quantity=quantity, unit=sku.unit, region=c.region,
          resource=f"//compute.googleapis.com/projects/{c.sub_account}/zones/{_zone(c)}/instanceGroups/gke-cvu-nb-prod",
          sku=w.sku_id("user_ram", c.region), sub=c.sub_account, sub_name=c.sub_account_name,
          tags={"goog-k8s-cluster-name": "cvu", "k8s-namespace": "prod", "goog-k8s-node-pool-name": "nb-prod"},
          start=_ts(dt.date(YEAR, 5, 17)), end=_ts(dt.date(YEAR, 5, 18)), charge_class="Correction")


def _aws_correction_rows(w: MonthWriter) -> None:
    """June's export corrects May's NAT data processing on the shared africa cluster (under-counted), with its tax.

    Untagged, so it is the shared cluster's overhead: split among the hubs
    that were active in May (FOCUS ChargeClass "Correction").
    """
    c = next(c for c in CLUSTERS if c.id == "africa")
    sku = AWS_SKUS["nat_bytes"]
    unit_price = w.price(sku, c)
    quantity = Decimal("148.25")
    cost = (quantity * unit_price).quantize(Q_MONEY)
    base = dict(sub=c.sub_account, sub_name=c.sub_account_name, tags={}, charge_class="Correction")
    nat = f"arn:aws:ec2:{c.region}:{c.sub_account}:natgateway/nat-{_hex('nat', c.id, n=17)}"
    w.add(cost=cost, category="Usage", frequency="Usage-Based", service=sku.service, region=c.region,
          description=sku.description.format(price=_plain(unit_price.normalize())) + " (correction of 2022-05-23 usage)",
          quantity=quantity, unit=sku.unit, resource=nat, sku=w.sku_id("nat_bytes", c.region),
          start=_ts(dt.date(YEAR, 5, 23)), end=_ts(dt.date(YEAR, 5, 24)), **base)
    w.add(cost=(cost * AWS_TAX_RATE).quantize(Q_CENT), category="Tax", frequency="One-Time", service="Tax",
          description="Sales tax (correction of May 2022)", quantity=None, unit=None, region=None, resource=None,
          sku=None, start=_ts(_month_start(5)), end=_ts(_month_end(5)), **base)


# =====================================================================================
# File formats
# =====================================================================================


def _money_text(value: Decimal | None, provider: str) -> str:
    if value is None:
        return ""
    if provider == "azure":   # Azure writes as many digits as needed
        text = _plain(value)
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return "0" if text in ("", "-0") else text
    return _plain(value)


def _timestamp_text(value: dt.datetime | None, provider: str) -> str:
    if value is None:
        return ""
    if provider == "azure":
        return value.strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def csv_bytes(rows: list[dict[str, Any]], provider: str) -> bytes:
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(FOCUS_COLUMNS)
    for row in rows:
        cells = []
        for name in FOCUS_COLUMNS:
            value = row[name]
            if name in DECIMAL_COLUMNS:
                cells.append(_money_text(value, provider))
            elif name in TIMESTAMP_COLUMNS:
                cells.append(_timestamp_text(value, provider))
            else:
                cells.append("" if value is None else value)
        out.writerow(cells)
    return buf.getvalue().encode("utf-8")


def parquet_table(rows: list[dict[str, Any]]) -> pa.Table:
    columns = {name: [row[name] for row in rows] for name in FOCUS_COLUMNS}
    return pa.table(columns, schema=PARQUET_SCHEMA)


def parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", row_group_size=1 << 20)
    return sink.getvalue().to_pybytes()


def _write(path: Path, data: bytes) -> None:
    """Write a file atomically; leave it untouched when the content is the same."""
    if path.exists() and path.read_bytes() == data:
        return
    atomic_write_bytes(path, data)


# =====================================================================================
# The configuration
# =====================================================================================


def organization_data() -> dict[str, Any]:
    """The configuration as plain data (what org.yaml holds)."""
    communities = []
    for c in COMMUNITIES:
        plan = c.plan if isinstance(c.plan, str) else [FlowMap({"from": start, "plan": p}) for start, p in c.plan]
        entry: dict[str, Any] = {"id": c.id, "name": c.name, "kind": c.kind, "currency": "USD",
                                 "pricing_plan": plan}
        if c.funder:
            entry["funder"] = c.funder
        if c.active_from:
            entry["active_from"] = c.active_from
        if c.active_until:
            entry["active_until"] = c.active_until
        if c.id in PREPAID:
            entry["prepaid"] = PREPAID[c.id]
        entry.update(ACCOUNTS_PAYABLE.get(c.id, {}))
        entry["billing_contact"] = {"name": c.contact, "email": c.email, "address": list(c.address)}
        communities.append(entry)
    clusters = []
    for c in CLUSTERS:
        entry = {"id": c.id, "provider": c.provider, "billing_account": BILLING_ACCOUNTS[c.provider],
                 "sub_accounts": FlowList([c.sub_account]), "tenancy": c.tenancy}
        if c.community:
            entry["community"] = c.community
        if c.split:
            entry["split"] = FlowMap(rule=c.split)
        entry["hub_tag"] = HUB_TAG[c.provider]
        entry["source"] = FlowMap(type="focus", path=FILE_GLOB[c.provider])
        clusters.append(entry)
    cluster_by_id = {c.id: c for c in CLUSTERS}
    hubs = []
    for h in HUBS:
        entry = FlowMap(id=h.id, cluster=h.cluster, community=h.community)
        if h.tag is None:
            entry["sub_account"] = cluster_by_id[h.cluster].sub_account
        else:
            entry["tag_value"] = h.tag
        if h.tag == "staging":   # staff test changes there: its users are not billed
            entry["billable_users"] = False
        hubs.append(entry)
    return {
        "name": "Open Hubs Collaborative",
        "issuer": ISSUER,
        "funders": FUNDERS,
        "pricing_plans": PLANS,
        "communities": communities,
        "one_offs": ONE_OFFS,
        "smtp": SMTP,
        "clusters": clusters,
        "hubs": hubs,
        "usage": {"daily": "data/usage/daily-usage-*.csv", "mau": "data/usage/mau.csv",
                  "measure": "memory requested (GiB-hours)"},
    }


HEADER = """\
# Open Hubs Collaborative: the bundled sample organization (fictional).
#
# It imitates an operator of managed JupyterHubs at the end of 2022: 43 community
# hubs on 17 Kubernetes clusters on Google Cloud, AWS and Azure. Every name, person,
# address and account number in it is made up.
#
# Written by `python -m billing.sample.generate sample`: change the generator
# (billing/sample/generate.py), not this file, or your edits will be overwritten.
#
# Sections:
#   issuer         who sends the invoices, and how to pay them
#   funders        grants that pay some communities' charges
#   pricing_plans  how a community's monthly charges are computed (a list of pricing models)
#   communities    who is invoiced: kind, plan (or plan history), contract dates, currency, billing contact,
#                  funder, prepaid balances
#   one_offs       one-off charges and credits (a setup fee, a goodwill credit) for a party and month
#   clusters       where the hubs run and where each cluster's cloud costs come from
#   hubs           which community each hub belongs to, and how its cost rows are recognized
#   usage          per-hub usage: splits shared clusters' costs, and monthly active users
#
# Amounts are written in quotes ("1000.00") so they stay exact. Paths are relative
# to this file's folder.
"""

SECTION_COMMENTS = {
    "issuer": "Who sends the invoices. Payment terms are in days after the invoice date. country sets the\n"
              "paper (Letter in the US, A4 in most countries; page_size: a4 | letter overrides it); a fiscal\n"
              "sponsor is the seller of record, and its name and tax id are printed on every document.",
    "funders": "Grants and sponsors. A community with `funder:` has (part of) its charges paid by it,\n"
               "as its plan's `subsidy` charge says. `awards` are the amounts granted, each for a period\n"
               "(from / until, months included): subsidies draw from the award in force until it is used up;\n"
               "in the month it runs out the funder pays what is left, the community the rest.",
    "pricing_plans": "Pricing plans. Each charge names a pricing model and its parameters:\n"
                     "  cloud_passthrough  cloud cost at cost\n"
                     "  tier_fee           a monthly fee by community kind\n"
                     "  dedicated_uplift   +percent on fees when the community has a dedicated cluster\n"
                     "  fixed_fee          a fixed monthly amount, or once a year (every: year, in billing_month)\n"
                     "  graduated_usage    a monthly fee on monthly active users, by tiers (up_to: null = no limit)\n"
                     "  subsidy            the community's funder pays this percentage of its charges\n"
                     "  markup             +percent on cloud cost\n"
                     "  cap                the community never pays more than this per month for its fees and\n"
                     "                     markup (applies_to: fees, the default) or for everything (all)\n"
                     "Fixed fees of a month the contract covers only in part are prorated by days.",
    "communities": "Communities: the customers. kind is education, research or partnership.\n"
                   "pricing_plan is a plan, or a history ([{from: YYYY-MM, plan: ID}, ...]: each month uses the\n"
                   "plan in force). active_from / active_until (a month YYYY-MM, or a day YYYY-MM-DD) limit what\n"
                   "is billed; fixed fees of a month covered only in part are prorated by days. prepaid: balances\n"
                   "bought in advance, drawn down month by month. purchase_order, customer_reference, legal_name\n"
                   "and tax_id are printed on their invoices when given.",
    "one_offs": "One-off charges and credits (kind: charge | credit), each its own line on the party's invoice\n"
                "of that month (`billing adjust` records more).",
    "smtp": "The mail server `billing send` e-mails the documents through. The sample's is a test server\n"
            "on this machine that keeps what it receives (start one: .venv/bin/python -m aiosmtpd -n -l\n"
            "localhost:8025); a real one takes starttls: true (the default) and username_env / password_env,\n"
            "the names of the environment variables that hold the login.",
    "clusters": "Clusters. tenancy: dedicated (one community pays it all) or shared (several communities;\n"
                "`split` says how cost that carries no hub tag is divided: usage = by each hub's share of\n"
                "memory requested, even = equal parts, direct_cost = in proportion to each hub's own cost).\n"
                "hub_tag is the tag / label key whose value names the hub in the cost rows.",
    "hubs": "Hubs. tag_value is the value of the cluster's hub_tag in cost rows; a hub with\n"
            "`sub_account` instead owns a whole cloud account. billable_users: false (staging hubs): its\n"
            "monthly active users are not billed.",
    "usage": "Usage data: daily memory requested per hub on shared clusters (GiB-hours), and\n"
             "monthly active users per hub (its `staff` column: how many of them are staff, never billed).",
}

PROVIDER_TITLES = {"gcp": "Google Cloud", "aws": "AWS", "azure": "Microsoft Azure"}


def _dump(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False,
                     width=200)


def _indent(text: str, spaces: int) -> str:
    return "".join(" " * spaces + line if line.strip() else line for line in text.splitlines(keepends=True))


def _comment(text: str, spaces: int = 0) -> str:
    return "".join(" " * spaces + ("# " + line if line else "#") + "\n" for line in text.split("\n"))


def organization_yaml(data: dict[str, Any]) -> str:
    parts = [HEADER, "\n", _dump({"name": data["name"]})]
    for key in ("issuer", "funders", "pricing_plans", "communities", "one_offs", "smtp"):
        parts += ["\n", _comment(SECTION_COMMENTS[key]), _dump({key: data[key]})]
    # clusters, grouped by provider
    parts += ["\n", _comment(SECTION_COMMENTS["clusters"]), "clusters:\n"]
    for provider in ("gcp", "aws", "azure"):
        group = [c for c in data["clusters"] if c["provider"] == provider]
        parts += [_comment(f"{PROVIDER_TITLES[provider]}: {len(group)} clusters", 2), _indent(_dump(group), 2)]
    # hubs, grouped by cluster, one line each
    parts += ["\n", _comment(SECTION_COMMENTS["hubs"]), "hubs:\n"]
    for c in data["clusters"]:
        group = [h for h in data["hubs"] if h["cluster"] == c["id"]]
        what = (f"dedicated to {c['community']}" if c["tenancy"] == "dedicated"
                else f"shared, split rule: {c['split']['rule']}")
        parts += [_comment(f"{c['id']} ({PROVIDER_TITLES[c['provider']]}, {what})", 2), _indent(_dump(group), 2)]
    parts += ["\n", _comment(SECTION_COMMENTS["usage"]), _dump({"usage": data["usage"]})]
    return "".join(parts)


# =====================================================================================
# Usage files
# =====================================================================================


def usage_files(usage: dict[str, dict[dt.date, Decimal]]) -> tuple[bytes, bytes]:
    shared = {c.id for c in CLUSTERS if c.tenancy == "shared"}
    daily = io.StringIO()
    out = csv.writer(daily, lineterminator="\n")
    out.writerow(["date", "cluster", "hub", "value"])
    for month in MONTHS:
        for day in _days(month):
            for h in HUBS:
                if h.cluster in shared and day in usage[h.id]:
                    out.writerow([day.isoformat(), h.cluster, h.id, _plain(usage[h.id][day])])
    mau = io.StringIO()
    out = csv.writer(mau, lineterminator="\n")
    out.writerow(["month", "hub", "mau", "staff"])
    for month in MONTHS:
        for h in HUBS:
            value = hub_mau(h, month)
            if value is not None:
                out.writerow([f"{YEAR}-{month:02d}", h.id, value, hub_staff(h, month, value)])
    return daily.getvalue().encode(), mau.getvalue().encode()


# =====================================================================================
# Entry point
# =====================================================================================


def cost_file_name(provider: str, month: int) -> str:
    ext = {"gcp": "parquet", "aws": "csv.gz", "azure": "csv"}[provider]
    return f"data/focus/{provider}/{YEAR}-{month:02d}.{ext}"


def generate(out_dir: str | os.PathLike) -> list[Path]:
    """Write the whole sample into `out_dir`; returns the files written (relative paths)."""
    out = Path(out_dir)
    written: list[Path] = []

    def put(rel: str, data: bytes) -> None:
        _write(out / rel, data)
        written.append(Path(rel))

    with decimal.localcontext(CONTEXT):
        data = organization_data()
        text = organization_yaml(data)
        if yaml.safe_load(text) != data:   # the hand-arranged YAML must say exactly what the data says
            raise AssertionError("org.yaml does not round-trip to the organization data")
        _check_organization(data, out)
        put("org.yaml", text.encode("utf-8"))

        usage: dict[str, dict[dt.date, Decimal]] = {h.id: {} for h in HUBS}
        for h in HUBS:
            for month in MONTHS:
                usage[h.id].update(hub_daily_usage(h, month))
        daily, mau = usage_files(usage)
        put(f"data/usage/daily-usage-{YEAR}.csv", daily)
        put("data/usage/mau.csv", mau)

        for provider in ("gcp", "aws", "azure"):
            for month in MONTHS:
                rows = cost_rows(provider, month, usage)
                rel = cost_file_name(provider, month)
                if provider == "gcp":
                    put(rel, parquet_bytes(parquet_table(rows)))
                elif provider == "aws":
                    put(rel, gzip.compress(csv_bytes(rows, provider), compresslevel=9, mtime=0))
                else:
                    put(rel, csv_bytes(rows, provider))

    # Remove stale files this generator once wrote (e.g. a month or provider no longer produced).
    keep = {out / p for p in written}
    stale = [p for provider in ("gcp", "aws", "azure") for p in (out / "data" / "focus" / provider).glob("????-??.*")]
    stale += list((out / "data" / "usage").glob("*.csv"))
    for path in sorted(stale):
        if path.is_file() and path not in keep:
            path.unlink()
    return written


def _check_organization(data: dict[str, Any], base_dir: Path) -> None:
    """Validate the configuration with the project's own schema before writing it."""
    # The cost data must agree with the communities' billed months: a hub has cost rows only
    # while its community is active, and on a shared cluster from the first month it is active.
    communities = {c.id: c for c in COMMUNITIES}
    clusters = {c.id: c for c in CLUSTERS}
    for h in HUBS:
        c, cl = communities[h.community], clusters[h.cluster]
        first, last = int((c.active_from or "2022-01")[5:7]), int((c.active_until or "2022-12")[5:7])
        if not (first <= h.first <= h.last <= last and cl.first <= h.first and h.last <= cl.last):
            raise AssertionError(f"hub {h.id}: months {h.first}-{h.last} outside its community or cluster")
        if cl.tenancy == "shared" and h.first != first:
            raise AssertionError(f"hub {h.id}: on a shared cluster, starts with its community ({first})")
        if c.active_from and len(c.active_from) == 10 and h.first == first and h.start_day < int(c.active_from[8:]):
            raise AssertionError(f"hub {h.id}: has cost before its community's contract starts ({c.active_from})")
    from billing.config import parse_organization

    try:
        parse_organization(data, "org.yaml", base_dir)
    except ImportError:   # pricing_models not available: check the schema and references only
        from billing.config import Organization

        Organization.model_validate({**data, "base_dir": base_dir})


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m billing.sample.generate",
                                     description="Write the bundled sample organization into a folder.")
    parser.add_argument("out_dir", nargs="?", default="sample", help="target folder (default: sample)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    files = generate(args.out_dir)
    size = sum((Path(args.out_dir) / f).stat().st_size for f in files)
    print(f"wrote {len(files)} files ({size / 1e6:.1f} MB) into {args.out_dir}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
