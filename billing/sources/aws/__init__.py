"""AWS cost sources, one module per source type.

- `cost_explorer`: the Cost Explorer API (`aws_cost_explorer`), quick, not invoice grade;
- `focus_s3`: the FOCUS export AWS Data Exports writes to S3 (`aws_focus_s3`);
- `athena`: a FOCUS or CUR 2.0 table of that export, summed by Amazon Athena (`aws_athena`);
- `common`: what they share: the boto3 client factory, error classification
  for retries, actionable messages for permanent errors, scrubbing of ids.

Each reads one cluster's month and hands back rows in the normalized record
schema; `LiveSource` snapshots them with a content hash, so a rerun does not
call AWS again unless asked (`refresh=True`).

Credentials come only from boto3's default chain (environment, AWS_PROFILE,
SSO, instance or task role); the configuration never holds keys. Every
client is made by `common.make_client`, which the tests replace; boto3 itself
honours AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL_COST_EXPLORER
for local emulators such as moto's server mode.

Nothing is imported here, so using one source does not load another's
dependencies (DuckDB for the S3 export).
"""
