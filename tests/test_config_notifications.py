"""The `smtp:` and `notifications:` blocks: defaults, what is refused, and secrets never echoed."""
import pytest
import yaml

from billing.config import load_organization, parse_organization
from billing.errors import ConfigError
from helpers import small_org_data

SMTP = {"host": "smtp.example.org", "from": "Hub Billing <billing@example.org>",
        "username_env": "SMTP_USER", "password_env": "SMTP_PASSWORD"}


def problems(**overrides) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_organization(small_org_data(**overrides), "org.yaml")
    return err.value.problems


def test_defaults_starttls_on_587_and_all_four_events(tmp_path):
    path = tmp_path / "org.yaml"
    text = yaml.safe_dump(small_org_data(smtp=SMTP), sort_keys=False)
    # Written by hand, as the README shows it: YAML 1.1 reads a bare `on` key as the boolean true.
    path.write_text(text + "notifications:\n  email: {to: [finance@example.org], cc: [ops@example.org]}\n"
                           "  webhook: {url_env: BILLING_WEBHOOK_URL}\n  on: [failure, success]\n")
    org = load_organization(path)
    assert (org.smtp.host, org.smtp.port, org.smtp.starttls, org.smtp.ssl, org.smtp.timeout) == (
        "smtp.example.org", 587, True, False, 30)
    assert org.smtp.sender == "Hub Billing <billing@example.org>"
    assert org.notifications.on == ("failure", "success")
    assert org.notifications.email.to == ("finance@example.org",)
    assert org.notifications.webhook.url_env == "BILLING_WEBHOOK_URL"
    assert org.notifications.subject_prefix == "[hub-billing]"
    bare = parse_organization(small_org_data(notifications={"webhook": {"url_env": "HOOK"}}), "org.yaml")
    assert bare.notifications.on == ("failure", "incomplete", "success", "approval") and bare.smtp is None


def test_implicit_tls_defaults_to_465_and_cannot_be_combined_with_starttls():
    org = parse_organization(small_org_data(smtp={**SMTP, "ssl": True}), "org.yaml")
    assert (org.smtp.port, org.smtp.starttls) == (465, False)
    assert problems(smtp={**SMTP, "ssl": True, "starttls": True}) == [
        "org.yaml: smtp: give starttls: true (port 587) or ssl: true (port 465), not both"]


def test_email_needs_the_smtp_block():
    assert problems(notifications={"email": {"to": ["finance@example.org"]}}) == [
        "org.yaml: notifications: email: notifications by e-mail need the top-level smtp block "
        "(host, port, from, ...)"]


def test_a_secret_pasted_where_a_variable_name_belongs_is_never_echoed():
    url = "https://hooks.slack.com/services/T0/B0/s3cretTOKEN"
    found = problems(smtp={**SMTP, "password_env": "hunter2 is my password"},
                     notifications={"webhook": {"url_env": url}})
    assert found == [
        "org.yaml: smtp: password_env: give the name of an environment variable (letters, digits and _, not "
        "starting with a digit), e.g. SMTP_PASSWORD, and set the secret in that variable; the value given is not "
        "shown, in case it is the secret itself",
        "org.yaml: notifications.webhook: url_env: give the name of an environment variable (letters, digits and "
        "_, not starting with a digit), e.g. BILLING_WEBHOOK_URL, and set the secret in that variable; the value "
        "given is not shown, in case it is the secret itself"]
    assert not any("s3cret" in p or "hunter2" in p for p in found)
    written = problems(smtp={**SMTP, "password": "hunter2"}, notifications={"webhook": {"url": url}})
    assert written == [
        "org.yaml: smtp: password: a secret is not written in the configuration; put it in an environment variable "
        "and give that variable's name as password_env, e.g. SMTP_PASSWORD (the value is not shown)",
        "org.yaml: notifications.webhook: url: a secret is not written in the configuration; put it in an "
        "environment variable and give that variable's name as url_env, e.g. BILLING_WEBHOOK_URL (the value is "
        "not shown)"]


@pytest.mark.parametrize("smtp, notifications, expected", [
    ({**SMTP, "from": "billing@example.org, x@example.org"}, None, "smtp.from: not one email address"),
    ({**SMTP, "from": "not an address"}, None, "smtp.from: not one email address"),
    ({**SMTP, "host": "smtp example.org"}, None, "smtp.host: String should match pattern"),
    ({**SMTP, "port": 0}, None, "smtp.port: Input should be greater than or equal to 1"),
    ({**SMTP, "port": "587"}, None, "smtp.port: Input should be a valid integer"),
    ({**SMTP, "password_env": None}, None, "smtp: give both username_env and password_env to log in, or neither"),
    ({**SMTP, "starttls": False}, None, "smtp: a password is only sent over TLS: set starttls: true or ssl: true"),
    (SMTP, {"email": {"to": ["finance@example"]}}, "notifications.email.to[0]: not an email address"),
    (SMTP, {"email": {"to": []}}, "notifications.email: to: give at least one address"),
    (SMTP, {"email": {"to": ["a@example.org"], "cc": ["A@example.org"]}},
     "notifications.email: a@example.org given more than once in to and cc"),
    (None, {"webhook": {"url_env": "HOOK"}, "on": ["sucess"]},
     "notifications.on[0]: Input should be 'failure', 'incomplete', 'success' or 'approval' (got 'sucess')"),
    (None, {"webhook": {"url_env": "HOOK"}, "on": []}, "notifications: on: give at least one of failure"),
    (None, {"webhook": {"url_env": "HOOK"}, "subject_prefix": "x\nBcc: all@example.org"},
     "notifications.subject_prefix: String should match pattern"),
    (None, {"on": ["failure"]}, "notifications: give email, webhook or both"),
])
def test_refused(smtp, notifications, expected):
    overrides = {k: v for k, v in (("smtp", smtp), ("notifications", notifications)) if v is not None}
    found = problems(**overrides)
    assert len(found) == 1 and found[0].startswith(f"org.yaml: {expected}"), found
