"""Abuse of the sign-in page and the token endpoint: accounts lock after repeated wrong passwords, and both are rate
limited per client address, on SQLite and PostgreSQL."""
import re
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, update

from app.security.accounts import LOCKOUT, MAX_FAILED_SIGN_INS, add_user, sign_in
from app.security.tables import app_user
from app.web import create_app

PASSWORD = "correct horse battery"


@pytest.fixture
def ana(engine, client):
    client.put("/fhir/Patient/ana-1", json={"resourceType": "Patient", "id": "ana-1"})
    with engine.begin() as connection:
        add_user(connection, "ana", PASSWORD, "Patient/ana-1")


def attempt(client, password: str, username: str = "ana", forwarded_for: str | None = None):
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    page = client.get("/auth/login", headers=headers)
    token = re.search(r'name="csrf_token" value="([^"]*)"', page.text).group(1)
    return client.post("/auth/login", headers=headers,
                       data={"csrf_token": token, "next": "/auth/authorize", "username": username, "password": password})


def test_the_right_password_signs_in_and_goes_back_to_the_authorization_request(client, ana):
    answer = attempt(client, PASSWORD)
    assert answer.status_code == 302 and answer.headers["Location"] == "/auth/authorize"


def test_repeated_wrong_passwords_lock_the_account_even_against_the_right_one(client, ana, engine):
    for _ in range(MAX_FAILED_SIGN_INS - 1):
        assert "Wrong username or password" in attempt(client, "wrong").text
    locked = attempt(client, "wrong")
    assert locked.status_code == 401 and "locked for 15 more minutes" in locked.text
    assert "locked for" in attempt(client, PASSWORD).text
    with engine.begin() as connection:
        connection.execute(update(app_user).values(locked_until=datetime.now(timezone.utc) - timedelta(seconds=1)))
    assert attempt(client, PASSWORD).status_code == 302


def test_a_good_sign_in_forgives_earlier_wrong_passwords(engine, ana):
    now = datetime.now(timezone.utc)
    with engine.begin() as connection:
        for _ in range(MAX_FAILED_SIGN_INS - 1):
            assert sign_in(connection, "ana", "wrong", now).user is None
        assert sign_in(connection, "ana", PASSWORD, now).user.fhir_user == "Patient/ana-1"
        assert connection.execute(select(app_user.c.failed_sign_ins)).scalar_one() == 0
        assert sign_in(connection, "ana", "wrong", now).locked_until is None


def test_a_lock_ends_after_the_lockout(engine, ana):
    now = datetime.now(timezone.utc)
    with engine.begin() as connection:
        outcomes = [sign_in(connection, "ana", "wrong", now) for _ in range(MAX_FAILED_SIGN_INS)]
        assert outcomes[-1].locked_until == now + LOCKOUT
        assert sign_in(connection, "ana", PASSWORD, now + LOCKOUT - timedelta(seconds=1)).user is None
        assert sign_in(connection, "ana", PASSWORD, now + LOCKOUT).user is not None


def test_an_unknown_username_gets_the_same_answer_as_a_wrong_password(client, ana):
    assert "Wrong username or password" in attempt(client, PASSWORD, username="nobody").text


def test_sign_in_attempts_are_rate_limited_per_address(client, ana):
    answers = [attempt(client, "wrong", username="nobody") for _ in range(11)]
    assert [answer.status_code for answer in answers] == [401] * 10 + [429]
    assert int(answers[10].headers["Retry-After"]) > 0


def test_the_token_endpoint_is_rate_limited_per_address(client):
    answers = [client.post("/auth/token", data={"grant_type": "client_credentials"}).status_code for _ in range(301)]
    assert 429 not in answers[:300] and answers[300] == 429


def failed_sign_ins_from(client, address: str, count: int) -> list[int]:
    return [attempt(client, "wrong", username="nobody", forwarded_for=address).status_code for _ in range(count)]


def test_behind_a_trusted_proxy_the_limits_count_per_forwarded_client_address(settings):
    """EHR_TRUSTED_PROXIES=1: the clients of one proxy are limited each on its own, not all together as the proxy."""
    app = create_app(replace(settings, trusted_proxies=1))
    try:
        client = app.test_client()
        assert failed_sign_ins_from(client, "203.0.113.7", 11) == [401] * 10 + [429]
        assert failed_sign_ins_from(client, "198.51.100.2", 1) == [401]
        assert failed_sign_ins_from(client, "198.51.100.2, 203.0.113.7", 1) == [429]  # what the client wrote is not read
    finally:
        app.extensions["ehr.engine"].dispose()


def test_without_a_trusted_proxy_a_forwarded_address_does_not_escape_the_limits(client):
    assert failed_sign_ins_from(client, "203.0.113.7", 10) == [401] * 10
    assert failed_sign_ins_from(client, "198.51.100.2", 1) == [429]


@pytest.mark.parametrize("value", ["-1", "two"])
def test_a_proxy_count_that_is_not_a_count_is_refused(monkeypatch, value):
    from app.config import load_settings

    monkeypatch.setenv("EHR_TRUSTED_PROXIES", value)
    with pytest.raises(ValueError, match="EHR_TRUSTED_PROXIES"):
        load_settings()
