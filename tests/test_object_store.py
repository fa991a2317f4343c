"""Outputs survive the worker: --out s3://bucket/prefix, tested against moto's S3 server on loopback."""
import csv
import io
import shutil
import socket

import boto3
import pytest
import yaml

from billing.cli import main
from helpers import small_focus_rows, small_org_data, write_focus_csv

BUCKET = "billing-outputs"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """One moto S3 server for the test session: fsspec keeps its S3 file systems (and so their endpoint) for the
    life of the process, so a server per module would leave later modules talking to a stopped one."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture()
def s3(s3_server, monkeypatch, tmp_path):
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": s3_server,
                        "BILLING_CACHE_DIR": str(tmp_path / "cache")}.items():
        monkeypatch.setenv(name, value)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    client = boto3.client("s3", endpoint_url=s3_server)
    client.create_bucket(Bucket=BUCKET)
    yield client
    for obj in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=obj["Key"])
    client.delete_bucket(Bucket=BUCKET)


def keys(client, prefix) -> dict[str, bytes]:
    found = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {o["Key"][len(prefix):]: client.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in found}


def test_outputs_go_to_the_object_store_and_a_new_worker_picks_up_from_there(s3, tmp_path, capsys):
    write_focus_csv(tmp_path / "focus" / "2022-01.csv", small_focus_rows())
    org = tmp_path / "org.yaml"
    org.write_text(yaml.safe_dump(small_org_data(), sort_keys=False))
    out, ledger = f"s3://{BUCKET}/hub-billing/", f"sqlite:///{tmp_path / 'ledger' / 'ledger.db'}"
    args = ["--org", str(org), "--out", out, "--ledger", ledger, "--workers", "1", "--issue-date", "2022-02-10"]
    assert main(["run", "--month", "2022-01", *args]) == 0
    stored = keys(s3, "hub-billing/")
    assert {"2022-01/invoices/TST-2022-0001.pdf", "2022-01/invoices/TST-2022-0002.pdf",
            "2022-01/invoices/TST-ST-2022-0001.pdf", "2022-01/invoices.csv", "2022-01/attribution.csv",
            "2022-01/reconciliation.csv"} <= set(stored)
    assert not any(k.startswith(".") or "/." in k for k in stored)       # no staging folder, no lock file
    rows = list(csv.DictReader(io.StringIO(stored["2022-01/invoices.csv"].decode())))
    assert [r["invoice_number"] for r in rows] == ["TST-2022-0001", "TST-ST-2022-0001", "TST-2022-0002"]
    assert stored["2022-01/invoices/TST-2022-0001.pdf"][:5] == b"%PDF-"

    # The worker vanishes: a new one, with an empty cache, reruns the month and takes nothing new.
    shutil.rmtree(tmp_path / "cache")
    assert main(["run", "--month", "2022-01", *args]) == 0
    assert "0 new, 3 unchanged" in capsys.readouterr().out
    assert keys(s3, "hub-billing/") == stored
    assert main(["report", "--org", str(org), "--out", out, "--ledger", ledger]) == 0
    assert {"revenue.csv", "revenue-by-service-month.csv", "revenue.png"} <= set(keys(s3, "hub-billing/"))


def test_an_object_store_needs_a_ledger_that_is_not_on_the_worker(s3, tmp_path, capsys):
    write_focus_csv(tmp_path / "focus" / "2022-01.csv", small_focus_rows())
    org = tmp_path / "org.yaml"
    org.write_text(yaml.safe_dump(small_org_data(), sort_keys=False))
    assert main(["run", "--org", str(org), "--month", "2022-01", "--out", f"s3://{BUCKET}/x"]) == 2
    assert "the ledger must not be a file on this machine" in capsys.readouterr().err
    assert main(["run", "--org", str(org), "--month", "2022-01", "--out", "s3://no-such-bucket/x",
                 "--ledger", f"sqlite:///{tmp_path / 'l.db'}"]) == 2
    assert "s3://no-such-bucket/x: cannot write there" in capsys.readouterr().err
    assert main(["run", "--org", str(org), "--month", "2022-01", "--out", "gs://bucket/x",
                 "--ledger", f"sqlite:///{tmp_path / 'l.db'}"]) == 2
    assert "needs the 'gcsfs' package installed" in capsys.readouterr().err
