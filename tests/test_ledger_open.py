"""Opening the ledger: every wrong URL is one InputError naming it, password hidden."""
from __future__ import annotations

import pytest

from billing.errors import InputError
from billing.ledger import open_ledger


@pytest.fixture()
def a_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a database, not a folder\n" * 20)
    return path


@pytest.mark.parametrize("url,expected", [
    ("foo://x", "ledger foo://x: unknown database type 'foo'; use sqlite:///"),
    ("postgresql+nosuchdriver://u@h/db", "unknown database type 'postgresql+nosuchdriver'"),
    ("mysql://u:s3cret-pw@h/db", "ledger mysql://u:***@h/db: its database driver (Python module 'MySQLdb') "
                                 "is not installed; install it"),
    ("postgresql+pg8000://u:s3cret-pw@h/db", "(Python module 'pg8000') is not installed"),
    ("::not a url s3cret-pw", "ledger <unparseable database URL>: not a database URL"),
    ("sqlite:////proc/no-such-dir/ledger.db", "cannot create its folder /proc/no-such-dir (No such file or "
                                              "directory); choose a place you can write to"),
    ("sqlite:////proc/ledger.db", "cannot open the SQLite file /proc/ledger.db (unable to open database file)"),
    ("postgresql+psycopg://u:s3cret-pw@127.0.0.1:1/db?connect_timeout=3",
     "ledger postgresql+psycopg://u:***@127.0.0.1:1/db?connect_timeout=3: cannot open the database "
     "(OperationalError: "),
])
def test_a_wrong_ledger_url_is_one_input_error_without_the_password(url, expected):
    with pytest.raises(InputError) as info:
        open_ledger(url)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message and "s3cret-pw" not in message


def test_a_sqlite_ledger_must_be_a_database_file_in_a_folder(tmp_path, a_file):
    with pytest.raises(InputError, match=r"cannot create its folder .*notes.txt \((File exists|Not a directory)\)"):
        open_ledger(f"sqlite:///{a_file}/ledger.db")
    with pytest.raises(InputError, match=r"cannot open the SQLite file .*notes.txt \(file is not a database\)"):
        open_ledger(f"sqlite:///{a_file}")
    with pytest.raises(InputError, match=r"cannot open the SQLite file .* \(unable to open database file\)"):
        open_ledger(f"sqlite:///{tmp_path}")
    assert a_file.read_text().startswith("not a database")   # nothing was written over it
