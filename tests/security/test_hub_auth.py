"""Hub login: admin-made accounts only, bcrypt passwords, mandatory TOTP, lock-out, clear 403 pages."""

from __future__ import annotations

import logging
import re

import httpx
import pyotp
import pytest

from tests.fixtures_hub import PASSWORD

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _client(tre_hub) -> httpx.Client:
    return httpx.Client(base_url=tre_hub.url, timeout=30, follow_redirects=False)


def login(client: httpx.Client, username: str, password: str, code: str | None) -> bool:
    page = client.get("/hub/login")
    assert page.status_code == 200
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
    data = {"username": username, "password": password, "_xsrf": xsrf}
    if code is not None:
        data["otp"] = code
    r = client.post("/hub/login", data=data)
    return r.status_code == 302 and "jupyterhub-hub-login" in client.cookies


def test_login_needs_password_and_totp(tre_hub):
    code = pyotp.TOTP(tre_hub.totp["bob"]).now()
    with _client(tre_hub) as c:
        assert not login(c, "bob", PASSWORD, None)
    with _client(tre_hub) as c:
        assert not login(c, "bob", PASSWORD, "000000" if code != "000000" else "111111")
    with _client(tre_hub) as c:
        assert not login(c, "bob", "wrong password!", code)
    with _client(tre_hub) as c:
        assert login(c, "bob", PASSWORD, code)  # control: the right pair gets in
        assert c.get("/hub/api/user").json()["name"] == "bob"


def test_no_self_signup(tre_hub):
    with _client(tre_hub) as c:
        page = c.get("/hub/login")
        assert page.status_code == 200 and "signup" not in page.text  # control: the page renders
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
        assert c.get("/hub/signup").status_code == 404
        r = c.post("/hub/signup", data={"username": "eve", "signup_password": "x" * 20, "_xsrf": xsrf})
        assert r.status_code == 404
    assert not login(_client(tre_hub), "eve", "x" * 20, None)


def test_password_is_stored_as_bcrypt_hash(tre_hub):
    from sqlalchemy import create_engine, text

    engine = create_engine(tre_hub.settings.hub_db_url)
    with engine.connect() as conn:
        stored = conn.execute(text("select password from users_info where username='alice'")).scalar_one()
    engine.dispose()
    assert stored.startswith(b"$2b$") and PASSWORD.encode() not in stored


def test_lockout_after_repeated_failures(tre_hub):
    totp = pyotp.TOTP(tre_hub.totp["mallory"])
    with _client(tre_hub) as c:
        assert login(c, "mallory", PASSWORD, totp.now())  # control: the account works
    for _ in range(5):  # TRE_LOCKOUT_AFTER=5 in the fixture
        with _client(tre_hub) as c:
            assert not login(c, "mallory", "guess guess guess", totp.now())
    with _client(tre_hub) as c:
        assert not login(c, "mallory", PASSWORD, totp.now()), "correct credentials accepted while locked"
    failed = tre_hub.audit_events("login.failed", "mallory")
    locked = tre_hub.audit_events("login.locked", "mallory")
    assert len(failed) >= 5 and locked


def test_refused_spawn_is_a_clear_403_page(tre_hub):
    with _client(tre_hub) as c:
        assert login(c, "bob", PASSWORD, pyotp.TOTP(tre_hub.totp["bob"]).now())
        home = c.get("/hub/home")
        assert home.status_code == 200, tre_hub.tail()
        assert "proj-b" in home.text and "proj-a" not in home.text
        r = c.get("/hub/spawn/bob/proj-a")
        assert r.status_code == 403
        assert "not a researcher on project proj-a" in r.text
        assert "Back to your projects" in r.text


def test_demo_switch_turns_mfa_off_loudly(monkeypatch, caplog):
    from hub.workspaces.login import TREAuthenticator

    assert TREAuthenticator(add_new_table=False).mfa_required is True
    monkeypatch.setenv("TRE_DEMO_NO_MFA", "1")
    auth = TREAuthenticator(add_new_table=False)
    with caplog.at_level(logging.WARNING):
        assert auth.mfa_required is False
    assert "TOTP two-factor login is OFF" in caplog.text
