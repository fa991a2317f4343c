"""The organization's configuration: loaded and validated once, up front.

A plain YAML file that finance staff can read and edit (see
`sample/org.yaml`). `load_organization` returns immutable pydantic objects or
raises `ConfigError` listing every problem with file, path and value.
"""
from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from billing.errors import ConfigError
from billing.money import to_decimal

ID_PATTERN = r"^[a-z0-9][a-z0-9_.-]*$"
Identifier = Annotated[str, Field(pattern=ID_PATTERN, max_length=64)]
CurrencyCode = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
# <project>.<dataset>.gcp_billing_export[_resource]_v1_<ACCOUNT>: a table name cannot be a query parameter.
GCP_EXPORT_TABLE_PATTERN = (r"^[a-z][a-z0-9-]{4,28}[a-z0-9]\.[A-Za-z0-9_]{1,1024}"
                            r"\.gcp_billing_export_(resource_)?v1_[A-Z0-9_]+$")


def _decimal(value: Any) -> Decimal:
    """Config amounts must be written as strings or integers, never floats."""
    if isinstance(value, float):
        raise ValueError(f"write amounts in quotes to keep them exact, e.g. \"{value}\"")
    return to_decimal(value)


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Contact(Frozen):
    name: str
    email: str | None = None
    address: tuple[str, ...] = ()


class Issuer(Frozen):
    name: str
    address: tuple[str, ...] = ()
    email: str | None = None
    website: str | None = None
    tax_id: str | None = None
    payment_terms_days: int = Field(default=30, ge=0, le=365)
    payment_instructions: tuple[str, ...] = ()
    invoice_prefix: Annotated[str, Field(pattern=r"^[A-Z0-9-]{1,12}$")] = "INV"


class Funder(Frozen):
    """A grant or sponsor that pays part or all of some communities' charges."""

    id: Identifier
    name: str
    grant: str | None = None
    currency: CurrencyCode = "USD"
    billing_contact: Contact


class Community(Frozen):
    id: Identifier
    name: str
    kind: Literal["education", "research", "partnership"]
    currency: CurrencyCode = "USD"
    pricing_plan: Identifier
    billing_contact: Contact
    funder: Identifier | None = None
    active_from: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}$")
    active_until: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}$")


# ---- cost sources: where a cluster's spend comes from -------------------------


class FocusFilesSource(Frozen):
    """FOCUS files as the clouds export them: CSV, CSV.gz or Parquet (glob allowed)."""

    type: Literal["focus"]
    path: str
    cost_column: Literal["BilledCost", "EffectiveCost"] = "BilledCost"


class GcpBigQuerySource(Frozen):
    """The BigQuery billing export (standard or detailed table)."""

    type: Literal["gcp_bigquery"]
    table: Annotated[str, Field(pattern=GCP_EXPORT_TABLE_PATTERN)]
    location: str | None = None


class AwsCostExplorerSource(Frozen):
    """Cost Explorer get_cost_and_usage, grouped by the hub tag and service."""

    type: Literal["aws_cost_explorer"]
    metric: Literal["UnblendedCost", "NetUnblendedCost", "AmortizedCost", "BlendedCost"] = "UnblendedCost"
    region: str = "us-east-1"


class AwsFocusS3Source(Frozen):
    """The FOCUS export that AWS Data Exports writes to S3 (Manifest.json + data files)."""

    type: Literal["aws_focus_s3"]
    bucket: str
    prefix: str
    region: str = "us-east-1"


class AzureCostManagementSource(Frozen):
    """Cost Management query (ActualCost, daily, grouped by hub tag and service)."""

    type: Literal["azure_cost_management"]
    scope: Annotated[str, Field(pattern=r"^/(subscriptions|providers/Microsoft\.Billing)/")]
    cost_type: Literal["ActualCost", "AmortizedCost"] = "ActualCost"


CostSourceConfig = Annotated[
    Union[FocusFilesSource, GcpBigQuerySource, AwsCostExplorerSource, AwsFocusS3Source, AzureCostManagementSource],
    Field(discriminator="type"),
]


class SplitRule(Frozen):
    """How a shared cluster's unmatched cost is split among its hubs."""

    rule: Literal["usage", "even", "direct_cost"] = "usage"
    # When every weight is zero (no usage recorded, no direct cost), fall back to this.
    fallback: Literal["even"] = "even"


class Cluster(Frozen):
    id: Identifier
    provider: Literal["gcp", "aws", "azure"]
    billing_account: str
    sub_accounts: tuple[str, ...] = Field(min_length=1)
    tenancy: Literal["dedicated", "shared"]
    community: Identifier | None = None
    hub_tag: str = Field(description="tag / label key whose value names the hub")
    # Tag values that are the cluster's own system namespaces, not hubs: their cost is overhead.
    overhead_tag_values: tuple[str, ...] = ("kube-system", "support")
    split: SplitRule | None = None
    source: CostSourceConfig
    # True when the cluster's cost really carries no hub tag (all of it is overhead); otherwise a month in which
    # not one of its rows carries hub_tag is refused, since that is almost always a misspelled hub_tag.
    untagged_ok: bool = False

    # Sub-account ids compare case-insensitively (Azure subscription GUIDs come in both cases).
    _lower_subs = field_validator("sub_accounts", mode="after")(lambda v: tuple(s.lower() for s in v))


class Hub(Frozen):
    id: Identifier
    cluster: Identifier
    community: Identifier
    # How its cost rows are recognized: a tag value (key from the cluster), or a whole sub-account.
    tag_value: str | None = None
    sub_account: str | None = None

    _lower_sub = field_validator("sub_account", mode="after")(lambda v: v.lower() if v else v)

    @property
    def match_value(self) -> str:
        return self.tag_value if self.tag_value is not None else self.id


class ChargeSpec(Frozen):
    """One pricing model in a plan: its registered name and its parameters."""

    model_config = ConfigDict(frozen=True, extra="allow")
    model: str

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class PricingPlan(Frozen):
    id: Identifier
    name: str
    currency: CurrencyCode = "USD"
    charges: tuple[ChargeSpec, ...] = Field(min_length=1)


class ExchangeRate(Frozen):
    month: str = Field(pattern=r"^\d{4}-\d{2}$")
    source: CurrencyCode = Field(alias="from")
    target: CurrencyCode = Field(alias="to")
    rate: Decimal

    _check_rate = field_validator("rate", mode="before")(_decimal)


class UsageData(Frozen):
    """Per-hub usage: daily measure for splitting shared clusters, monthly active users."""

    daily: str | None = None
    mau: str | None = None
    measure: str = "memory requested (GiB-hours)"


class Organization(Frozen):
    name: str
    issuer: Issuer
    ledger_url: str | None = None
    funders: tuple[Funder, ...] = ()
    communities: tuple[Community, ...]
    clusters: tuple[Cluster, ...]
    hubs: tuple[Hub, ...]
    pricing_plans: tuple[PricingPlan, ...]
    usage: UsageData = UsageData()
    exchange_rates: tuple[ExchangeRate, ...] = ()
    # The folder the configuration was read from; relative paths resolve against it.
    base_dir: Path = Field(default=Path("."), exclude=True)

    @model_validator(mode="after")
    def _check_references(self) -> "Organization":
        problems = list(_cross_reference_problems(self))
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # ---- lookups -------------------------------------------------------------

    def community(self, community_id: str) -> Community:
        return _by_id(self.communities)[community_id]

    def funder(self, funder_id: str) -> Funder:
        return _by_id(self.funders)[funder_id]

    def cluster(self, cluster_id: str) -> Cluster:
        return _by_id(self.clusters)[cluster_id]

    def plan(self, plan_id: str) -> PricingPlan:
        return _by_id(self.pricing_plans)[plan_id]

    def hubs_of_cluster(self, cluster_id: str) -> list[Hub]:
        return [h for h in self.hubs if h.cluster == cluster_id]

    def resolve(self, path: str) -> str:
        """A path from the configuration, relative to the configuration's folder."""
        expanded = os.path.expanduser(path)
        return expanded if os.path.isabs(expanded) else str(self.base_dir / expanded)

    def rate(self, month: str, source: str, target: str) -> Decimal | None:
        for r in self.exchange_rates:
            if r.month == month and r.source == source and r.target == target:
                return r.rate
        return None

    def is_active(self, community: Community, month: str) -> bool:
        return (community.active_from or "0000-00") <= month <= (community.active_until or "9999-99")


def _by_id(items) -> dict[str, Any]:
    return {item.id: item for item in items}


def _duplicates(values) -> list[str]:
    seen, dups = set(), []
    for v in values:
        if v in seen and v not in dups:
            dups.append(v)
        seen.add(v)
    return dups


def _cross_reference_problems(org: Organization):
    """Every reference between entities must resolve; yields readable problems."""
    for kind, items in (("funders", org.funders), ("communities", org.communities), ("clusters", org.clusters),
                        ("hubs", org.hubs), ("pricing_plans", org.pricing_plans)):
        for dup in _duplicates(i.id for i in items):
            yield f"{kind}: id {dup!r} is used more than once"
    communities, funders, plans = _by_id(org.communities), _by_id(org.funders), _by_id(org.pricing_plans)
    clusters = _by_id(org.clusters)
    for i, c in enumerate(org.communities):
        if c.pricing_plan not in plans:
            yield f"communities[{i}] ({c.id}).pricing_plan: no plan {c.pricing_plan!r}; known: {sorted(plans)}"
        elif plans[c.pricing_plan].currency != c.currency:
            yield (f"communities[{i}] ({c.id}).currency: {c.currency} but plan {c.pricing_plan!r} "
                   f"is priced in {plans[c.pricing_plan].currency}")
        if c.funder is not None and c.funder not in funders:
            yield f"communities[{i}] ({c.id}).funder: no funder {c.funder!r}; known: {sorted(funders)}"
    claimed: dict[tuple[str, str], str] = {}
    for i, cl in enumerate(org.clusters):
        where = f"clusters[{i}] ({cl.id})"
        if cl.tenancy == "dedicated":
            if cl.community is None:
                yield f"{where}.community: a dedicated cluster names the community it serves"
            elif cl.community not in communities:
                yield f"{where}.community: no community {cl.community!r}"
        if cl.tenancy == "shared" and cl.split is None:
            yield f"{where}.split: a shared cluster states how its shared cost is split (rule: usage, even or direct_cost)"
        if cl.tenancy == "shared" and cl.community is not None:
            yield f"{where}.community: only a dedicated cluster has one community; remove it or set tenancy: dedicated"
        for sub in cl.sub_accounts:
            key = (cl.provider, sub)
            if key in claimed:
                yield f"{where}.sub_accounts: {sub!r} is already claimed by cluster {claimed[key]!r}"
            claimed[key] = cl.id
        if not any(h.cluster == cl.id for h in org.hubs):
            yield f"{where}: no hub runs on this cluster"
    tag_values: dict[tuple[str, str], str] = {}
    for i, h in enumerate(org.hubs):
        where = f"hubs[{i}] ({h.id})"
        if h.community not in communities:
            yield f"{where}.community: no community {h.community!r}"
        cl = clusters.get(h.cluster)
        if cl is None:
            yield f"{where}.cluster: no cluster {h.cluster!r}; known: {sorted(clusters)}"
            continue
        if cl.tenancy == "dedicated" and cl.community is not None and h.community != cl.community:
            yield f"{where}.community: {h.community!r} but cluster {cl.id!r} is dedicated to {cl.community!r}"
        if h.tag_value is not None and h.sub_account is not None:
            yield f"{where}: give either tag_value or sub_account, not both"
        if h.sub_account is not None and h.sub_account not in cl.sub_accounts:
            yield f"{where}.sub_account: {h.sub_account!r} is not one of cluster {cl.id!r}'s sub_accounts {list(cl.sub_accounts)}"
        if h.sub_account is None:
            key = (h.cluster, h.match_value)
            if key in tag_values:
                yield f"{where}.tag_value: {h.match_value!r} already names hub {tag_values[key]!r} on cluster {h.cluster!r}"
            tag_values[key] = h.id


def _format_validation_error(source: str, err: ValidationError) -> list[str]:
    problems = []
    for e in err.errors():
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e["loc"]).lstrip(".")
        value = e.get("input")
        shown = "" if isinstance(value, (dict, list)) or loc == "" else f" (got {value!r})"
        msg = e["msg"].removeprefix("Value error, ")
        problems.append(f"{source}: {loc or '(top level)'}: {msg}{shown}")
    return problems


def parse_organization(data: Any, source: str = "<inline>", base_dir: Path | None = None) -> Organization:
    """Validate configuration data (already parsed YAML) into an Organization."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the configuration must be a mapping at the top level")
    try:
        org = Organization.model_validate({**data, "base_dir": base_dir or Path(".")})
    except ValidationError as err:
        raise ConfigError(f"{source}: the configuration is invalid", _format_validation_error(source, err)) from None
    # Pricing-model parameters are validated by the models themselves.
    from pricing_models import validate_plan  # late import: pricing_models depends on billing.config

    problems = []
    for i, plan in enumerate(org.pricing_plans):
        problems += [f"{source}: pricing_plans[{i}] ({plan.id}).{p}" for p in validate_plan(plan)]
    if problems:
        raise ConfigError(f"{source}: the configuration is invalid", problems)
    return org


def load_organization(path: str | os.PathLike) -> Organization:
    """Read and validate the organization's YAML configuration."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the configuration: {err.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(err, 'problem', err)}") from None
    return parse_organization(data, str(path), path.resolve().parent)


def default_organization_path() -> Path:
    """The bundled sample organization."""
    return Path(__file__).resolve().parent.parent / "sample" / "org.yaml"
