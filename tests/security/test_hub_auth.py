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
    return tre_hub.client(base_url=tre_hub.url, follow_redirects=False)


def login(client: httpx.Client, username: str, password: str, code: str | None) -> bool:
    page = client.get("/hub/login")
    assert page.status_code == 200
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
    data = {"username": username, "password": password, "_xsrf": xsrf}
    if code is not None:
        data["otp"] = code
    r = client.post("/hub/login", data=data)
    return r.status_code == 302 and any(c.name.endswith("jupyterhub-hub-login") for c in client.cookies.jar)


def test_login_needs_password_and_totp(tre_hub):
    code = tre_hub.code("bob")
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
        assert login(c, "mallory", PASSWORD, tre_hub.code("mallory"))  # control: the account works
    for _ in range(5):  # lockout_after=5 in the fixture
        with _client(tre_hub) as c:
            assert not login(c, "mallory", "guess guess guess", totp.now())
    with _client(tre_hub) as c:
        code = tre_hub.code("mallory")
        assert not login(c, "mallory", PASSWORD, code), "correct credentials accepted while locked"
    failed = tre_hub.audit_events("login.failed", "mallory")
    locked = tre_hub.audit_events("login.locked", "mallory")
    assert len(failed) >= 5 and locked


def test_nobody_can_keep_another_person_locked_out(tre_hub):
    """Guessing on during the delay neither counts nor extends it: once it has run out the owner
    gets in, however busy the attacker was meanwhile."""
    import time

    victim = "alice"
    for _ in range(5):  # the fifth failure in a row starts the first delay (2 s in the fixture)
        with _client(tre_hub) as c:
            assert not login(c, victim, "guess guess guess", "123456")
    started = time.monotonic()
    while time.monotonic() - started < 1.5:  # the attacker hammers the account during the delay
        with _client(tre_hub) as c:
            assert not login(c, victim, "guess guess guess", "123456")
    time.sleep(max(0.0, 2.2 - (time.monotonic() - started)))
    with _client(tre_hub) as c:
        assert login(c, victim, PASSWORD, tre_hub.code(victim)), "the owner was kept out"
    locked = [d for _, d in tre_hub.audit_events("login.locked", victim)]
    assert locked and all("seconds_left" in d for d in locked)


def test_a_totp_code_logs_in_once(tre_hub):
    code = tre_hub.code("bob")
    with _client(tre_hub) as c:
        assert login(c, "bob", PASSWORD, code)
    with _client(tre_hub) as c:  # the same code again, from another browser: a replay
        assert not login(c, "bob", PASSWORD, code)


def test_unknown_usernames_take_as_long_as_known_ones(tre_hub):
    """A wrong password costs a bcrypt check; an unknown name must cost the same, or timing tells
    who has an account."""
    import statistics
    import time

    def seconds(username: str) -> float:
        with _client(tre_hub) as c:
            page = c.get("/hub/login")
            xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
            data = {
                "username": username,
                "password": "not the password at all",
                "otp": "123456",
                "_xsrf": xsrf,
            }
            started = time.perf_counter()
            c.post("/hub/login", data=data)
            return time.perf_counter() - started

    known = statistics.median(seconds("bob") for _ in range(3))
    unknown = statistics.median(seconds(f"nobody{i}") for i in range(3))
    assert unknown > 0.5 * known, (unknown, known)


def test_no_page_changes_a_password(tre_hub):
    """Logins are issued and reset by administrators; no unthrottled form changes a credential."""
    with _client(tre_hub) as c:
        assert login(c, "bob", PASSWORD, tre_hub.code("bob"))
        for path in ("/hub/change-password", "/hub/change-password/bob"):
            assert c.get(path).status_code == 404
            assert c.post(path, data={"password": "x" * 20}).status_code in (403, 404)


def test_hub_cookies_are_host_bound_and_secure(tre_hub):
    """The hub's login cookie is __Host-: on the hub's own origin only, so no origin below the TRE's
    domain (a workspace) can read, set or replace it (cookie tossing). JupyterHub's session-id cookie
    is shared with the subdomains by design; it is no credential (it names the tokens to revoke at
    logout), and must still be Secure and HttpOnly."""
    with _client(tre_hub) as c:
        page = c.get("/hub/login")
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
        data = {"username": "bob", "password": PASSWORD, "otp": tre_hub.code("bob"), "_xsrf": xsrf}
        r = c.post("/hub/login", data=data)
    set_cookies = [h for k, h in r.headers.multi_items() if k == "set-cookie" and "jupyterhub" in h]
    assert r.status_code == 302 and set_cookies
    login_cookies = 0
    for header in set_cookies:
        name, _, rest = header.partition("=")
        flags = {f.strip().split("=")[0].lower() for f in rest.split(";")[1:]}
        assert {"secure", "httponly"} <= flags, header
        if "hub-login" in name:
            login_cookies += 1
            assert name.startswith("__Host-") and "domain" not in flags, header
            assert "path=/" in header.lower().replace(" ", ""), header
    assert login_cookies == 1


def test_refused_spawn_is_a_clear_403_page(tre_hub):
    with _client(tre_hub) as c:
        assert login(c, "bob", PASSWORD, tre_hub.code("bob"))
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
