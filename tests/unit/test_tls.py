"""The certificate check `tre hub` relies on, and the local CA for demos and tests."""

from __future__ import annotations

import ssl
import stat

import pytest
from typer.testing import CliRunner

from hub.cli import app
from hub.host import tls
from hub.kernel.settings import Settings


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(root=tmp_path, domain="tre.test")


def test_a_local_certificate_serves_the_domain_and_every_origin_below_it(settings):
    assert tls.check(settings)  # nothing installed yet: says what to do
    ca = tls.local_certificate(settings)
    assert tls.check(settings) == []
    assert set(tls.facts(settings).names) == {"tre.test", "*.tre.test"}
    assert stat.S_IMODE(settings.tls_key.stat().st_mode) == 0o600
    context = ssl.create_default_context(cafile=ca)  # the CA verifies the served chain
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    before = settings.tls_cert.read_bytes()
    tls.local_certificate(settings)
    assert settings.tls_cert.read_bytes() == before  # kept while it is right


def test_a_certificate_for_another_domain_or_key_is_refused(settings, tmp_path):
    tls.local_certificate(settings)
    other = Settings(root=tmp_path, domain="elsewhere.test")
    assert any("does not name elsewhere.test, *.elsewhere.test" in p for p in tls.check(other))
    second = Settings(root=tmp_path / "second", domain="tre.test")
    tls.local_certificate(second)
    settings.tls_key.write_bytes(second.tls_key.read_bytes())
    assert any("is not the key of" in p for p in tls.check(settings))


def test_a_malformed_certificate_is_a_clear_problem(settings):
    settings.tls_cert.parent.mkdir(parents=True)
    settings.tls_cert.write_text("not a certificate")
    settings.tls_key.write_text("not a key")
    [problem] = tls.check(settings)
    assert "cannot be read as PEM" in problem


def test_a_site_certificate_is_never_replaced_by_a_local_one(tmp_path):
    site = Settings(root=tmp_path, domain="tre.test", tls_cert_override=tmp_path / "site.crt")
    with pytest.raises(tls.TLSError, match="renew it there"):
        tls.local_certificate(site)
    assert not (tmp_path / "site.crt").exists()


def test_tls_status_exits_1_until_a_certificate_serves(settings, monkeypatch):
    monkeypatch.setenv("TRE_ROOT", str(settings.root))
    monkeypatch.setenv("TRE_DOMAIN", settings.domain)
    runner = CliRunner()
    refused = runner.invoke(app, ["tls", "status"])
    assert refused.exit_code == 1 and "tre tls local" in refused.output
    assert runner.invoke(app, ["tls", "local"]).exit_code == 0
    ok = runner.invoke(app, ["tls", "status", "--json"])
    assert ok.exit_code == 0 and '"ok": true' in ok.output
