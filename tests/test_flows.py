"""Flow wiring without a server: which failures are retried, and that stages become named tasks."""
from types import SimpleNamespace

from billing.errors import InputError, SourceError
from flows.monthly import _transient_only, as_task
from billing.pipeline import close_month, fetch_costs


def test_only_transient_source_errors_are_retried():
    state = lambda exc: SimpleNamespace(data=exc)  # noqa: E731
    assert _transient_only(None, None, state(SourceError("aws", "503", transient=True)))
    assert not _transient_only(None, None, state(SourceError("aws", "AccessDenied")))
    assert not _transient_only(None, None, state(InputError("bad file")))


def test_stages_become_tasks_with_retries_where_fetching():
    fetch, render = as_task(fetch_costs), as_task(close_month)
    assert fetch.name == "fetch_costs" and fetch.retries == 3
    assert render.name == "close_month" and render.retries == 0
