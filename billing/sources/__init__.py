"""Cost sources: where a cluster's spend comes from.

Every source delivers the month's spend as files in one shape, the
normalized cost-record schema (`billing.sources.base.RECORD_SCHEMA`, a FOCUS
subset): FOCUS files are used as they are; the live cloud connectors fetch,
normalize and keep a snapshot file with a content hash. Ingest then reads all
of them the same way, so the rest of the pipeline cannot tell them apart.

Sources are registered by their configuration `type` and imported lazily, so
a cloud SDK is imported only when a cluster uses it.
"""
from __future__ import annotations

import importlib

from billing.sources.base import CheckResult, CostFiles, CostSource, SnapshotStore

# configuration `type` -> "module:Class"; modules import their SDK only when used.
SOURCE_TYPES: dict[str, str] = {
    "focus": "billing.sources.focus:FocusFiles",
    "gcp_bigquery": "billing.sources.gcp:BigQueryExport",
    "aws_cost_explorer": "billing.sources.aws.cost_explorer:CostExplorer",
    "aws_focus_s3": "billing.sources.aws.focus_s3:FocusExportS3",
    "aws_athena": "billing.sources.aws.athena:AthenaQuery",
    "azure_cost_management": "billing.sources.azure:CostManagementQuery",
}


def make_source(cluster, org, snapshots: SnapshotStore) -> CostSource:
    """Build the source that serves `cluster` from its configuration."""
    kind = cluster.source.type
    try:
        module_name, class_name = SOURCE_TYPES[kind].split(":")
    except KeyError:
        raise ValueError(f"unknown source type {kind!r}; known: {sorted(SOURCE_TYPES)}") from None
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(cluster=cluster, org=org, snapshots=snapshots)


__all__ = ["CheckResult", "CostFiles", "CostSource", "SnapshotStore", "SOURCE_TYPES", "make_source"]
