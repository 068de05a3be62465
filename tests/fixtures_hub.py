"""A real TRE hub for the integration and security tests, one per test session.

`tre_hub` starts `tre hub` (configurable-http-proxy + JupyterHub + services) on a private TRE_ROOT,
its own workspace network (unique bridge, subnet and firewall chain, removed at the end) and free
ports, with a registry holding:

  alice    researcher on proj-a and proj-c, and on proj-closed (closed) and proj-expired (grant expired)
  bob      researcher on proj-b
  mallory  registered, member of nothing

Servers are started through the hub's REST API with the `tre-admin` service token, exactly as an
operator would. `running` starts alice/proj-a and bob/proj-b once for all the probes.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyotp
import pytest

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery staple"
HUB_START_TIMEOUT = 90
SPAWN_TIMEOUT = 120


def fresh_code(secret: str) -> str:
    """A TOTP code the hub has not accepted yet in this test session: the hub takes each 30 s step of
    a user once (hub.workspaces.throttle.OneUseCodes), so a second login in the same step waits."""
    totp = pyotp.TOTP(secret)
    while True:
        now = int(time.time() // totp.interval)
        step = max(now, _LAST_STEP.get(secret, -1) + 1)
        if step <= now + 1:  # the hub accepts one step of clock drift
            _LAST_STEP[secret] = step
            return totp.generate_otp(step)
        time.sleep((step - 1) * totp.interval - time.time() + 0.2)


_LAST_STEP: dict[str, int] = {}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_subnet() -> str:
    """A /24 in 172.30.0.0/16 that no Docker network uses yet."""
    ids = subprocess.run(["docker", "network", "ls", "-q"], capture_output=True, text=True).stdout.split()
    fmt = "{{range .IPAM.Config}}{{.Subnet}} {{end}}"
    out = subprocess.run(
        ["docker", "network", "inspect", "--format", fmt, *ids], capture_output=True, text=True
    ).stdout.split()
    used = [ipaddress.ip_network(s, strict=False) for s in out if ":" not in s]
    for _ in range(100):
        candidate = ipaddress.ip_network(f"172.30.{secrets.randbelow(256)}.0/24")
        if not any(candidate.overlaps(u) for u in used):
            return str(candidate)
    raise RuntimeError("no free /24 in 172.30.0.0/16 for the test workspace network")


@dataclass
class Hub:
    settings: Any
    env: dict[str, str]
    url: str  # the hub's public URL: https://<domain>:<port>
    token: str  # tre-admin service token
    totp: dict[str, str] = field(default_factory=dict)  # username -> TOTP secret
    log: Path | None = None
    process: Any = None  # the HubProcess running `tre hub`, for the tests that restart it
    pair: dict[str, str] = field(default_factory=dict)  # running_pair's workspaces

    @property
    def gateway(self) -> str:
        from hub.host.network import gateway_ip

        return gateway_ip(self.settings)

    @property
    def egress_url(self) -> str:
        return self.settings.service_url("egress")

    def user_url(self, user: str, project: str) -> str:
        """A workspace's public URL: on the user's own origin."""
        return f"{self.settings.origin(user)}/user/{user}/{project}/"

    def client(self, timeout: float = 30, **kw: Any):
        """A client for the TRE's public names (TLS with the test CA, through the proxy)."""
        from hub.host import tls

        return tls.client(self.settings, timeout=timeout, **kw)

    def api(self, method: str, path: str, token: str | None = None, timeout: float = 30, **kw: Any):
        """The hub's REST API, straight on the bridge gateway as the operator's tools reach it."""
        import httpx

        headers = {"Authorization": f"token {token or self.token}"}
        url = f"http://{self.gateway}:{self.settings.hub_port}/hub/api{path}"
        return httpx.request(method, url, headers=headers, timeout=timeout, **kw)

    def ensure_user(self, name: str) -> None:
        r = self.api("POST", f"/users/{name}")
        assert r.status_code in (201, 409), r.text

    def server(self, user: str, project: str, timeout: float = 30) -> dict | None:
        r = self.api("GET", f"/users/{user}", timeout=timeout)
        r.raise_for_status()
        return r.json().get("servers", {}).get(project)

    def request_start(self, user: str, project: str):
        """POST the start request; returns the response (201 ready, 202 pending, 4xx/5xx refused)."""
        self.ensure_user(user)
        return self.api("POST", f"/users/{user}/servers/{project}")

    def start(self, user: str, project: str, timeout: float = SPAWN_TIMEOUT) -> dict:
        r = self.request_start(user, project)
        assert r.status_code in (201, 202), f"{r.status_code}: {r.text}\n{self.tail()}"
        return self.wait_ready(user, project, timeout)

    def wait_ready(self, user: str, project: str, timeout: float = SPAWN_TIMEOUT) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            server = self.server(user, project)
            if server and server.get("ready"):
                return server
            if server is None:
                raise AssertionError(f"{user}/{project} stopped while starting:\n{self.tail()}")
            time.sleep(0.1)
        raise AssertionError(f"{user}/{project} not ready after {timeout}s:\n{self.tail()}")

    def code(self, user: str) -> str:
        return fresh_code(self.totp[user])

    def tail(self, lines: int = 40) -> str:
        """The end of the hub's log, for failure messages (pytest may delete the file afterwards)."""
        if self.log is None or not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, user: str, project: str, timeout: float = 60) -> None:
        r = self.api("DELETE", f"/users/{user}/servers/{project}")
        assert r.status_code in (202, 204, 404), r.text
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.server(user, project) is not None:
            time.sleep(0.2)

    def user_token(self, user: str) -> str:
        r = self.api("POST", f"/users/{user}/tokens", json={"note": "test", "expires_in": 3600})
        assert r.status_code == 201, r.text
        return r.json()["token"]

    def container(self, user: str, project: str) -> str:
        """The workspace's container: by name on the plain engine; on a swarm its service's task's
        container (the service's name when it has none running)."""
        name = f"{self.settings.container_prefix}-{user}--{project}"
        if self.settings.engine != "swarm":
            return name
        ps = ["docker", "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={name}"]
        found = subprocess.run(ps, capture_output=True, text=True, check=False).stdout.split()
        return found[0] if found else name

    def workspace_exists(self, user: str, project: str) -> bool:
        """A container (or, on a swarm, a service) for the workspace exists, running or not."""
        name = f"{self.settings.container_prefix}-{user}--{project}"
        kind = ["service", "ls", "-q"] if self.settings.engine == "swarm" else ["ps", "-aq"]
        out = subprocess.run(
            ["docker", *kind, "--filter", f"name={name}"], capture_output=True, text=True, check=False
        ).stdout.split()
        return bool(out)

    def audit_events(self, action: str, object_id: str) -> list[Any]:
        from sqlalchemy import select

        from hub.kernel.audit import AuditEvent
        from hub.kernel.db import session_scope

        with session_scope(self.settings) as s:
            rows = s.execute(
                select(AuditEvent).where(AuditEvent.action == action, AuditEvent.object_id == object_id)
            )
            return [(e.actor, e.details) for e in rows.scalars()]


def egress_login(hub: Hub, user: str) -> Any:
    """A client signed in to the egress service as a person does it: password + TOTP at the hub, then
    OAuth (PKCE) into egress."""
    return service_login(hub, user, "egress", "requests")


def service_login(hub: Hub, user: str, service: str, page_path: str = "") -> Any:
    """A client signed in to a TRE service (egress, portal) as a person does it: password + TOTP at
    the hub, then OAuth (PKCE) into the service, on the service's own origin."""
    import re

    url = hub.settings.service_url(service)
    browser = hub.client(follow_redirects=True)
    page = browser.get(f"{url}{page_path}")
    assert "/hub/login" in str(page.url), f"{service} did not send us to the hub login: {page.url}"
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
    code = hub.code(user)
    page = browser.post(
        str(page.url), data={"username": user, "password": PASSWORD, "otp": code, "_xsrf": xsrf}
    )
    assert page.status_code != 403 or "permission to access" not in page.text, (
        f"the hub refused OAuth to {service}: grant users access:services!service={service} in load_roles"
    )
    assert page.status_code == 200, f"{page.status_code} {page.url}\n{hub.tail()}"
    assert str(page.url) == f"{url}{page_path}"
    # The session lives on the service's origin only, bound to it (__Host-) and sent over TLS only.
    session = next(c for c in browser.cookies.jar if c.name.endswith(f"{service}-session"))
    assert session.name.startswith("__Host-") and session.secure
    assert session.domain == url.split("//")[1].split(":")[0]
    return browser


def own_workspace(hub: Hub, name: str, start: bool = True, **limits: Any) -> tuple[str, str, str]:
    """A fresh user `<name>-user` with a project of their own `<name>-project` (approved grant,
    published release, a hub login, the given project limits), started unless `start` is False.
    Returns (user, project, grant id)."""
    from hub import registry as reg
    from hub.kernel.db import session_scope
    from hub.workspaces.login import create_login
    from tests.fixtures_registry import ADMIN, CUSTODIAN, LEAD, publish_release

    user, project = f"{name}-user", f"{name}-project"
    with session_scope(hub.settings) as s:
        reg.add_user(s, ADMIN, user, name.title())
        reg.create_project(s, ADMIN, project, f"Project {name}", LEAD, datetime.now(UTC) + timedelta(days=30))
        reg.add_member(s, LEAD, project, user)
        if limits:
            reg.set_project_limits(s, ADMIN, project, **limits)
        grant = reg.request_grant(s, LEAD, project, "diabetes", {"patients": ["*"]})
        reg.decide_grant(s, CUSTODIAN, grant.id, approve=True)
        grant_id = grant.id
    publish_release(hub.settings, project)
    hub.totp[user] = create_login(user, PASSWORD, hub.settings)
    if start:
        hub.start(user, project)
    return user, project, grant_id


def process_pids(hub: Hub, module: str) -> list[int]:
    """Processes of this hub's TRE (by its TRE_ROOT) whose command line runs `python -m <module>`."""
    mine = f"TRE_ROOT={hub.settings.root}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            env = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if module.encode() in cmd and mine in env:
            found.append(int(proc.name))
    return found


def children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (a supervisor's workers)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(proc.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def docker_exec(
    container: str, *cmd: str, user: str = "1000:1000", timeout: float = 30, stdin: str | None = None
):
    """Run a command in a workspace as its unprivileged user."""
    return subprocess.run(
        ["docker", "exec", "-i", "-u", user, container, *cmd],
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
        check=False,
    )


def docker_out(*args: str) -> str:
    """`docker <args>`'s output; CalledProcessError when it fails."""
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True, timeout=60).stdout


def wait_until(check: Callable[[], bool], seconds: float, what: str) -> float:
    """Seconds until `check()` is true (errors count as not yet)."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        try:
            if check():
                return time.monotonic() - started
        except Exception:  # what is checked is still coming up: not yet
            pass
        time.sleep(0.25)
    raise AssertionError(f"{what} not within {seconds}s")


def end_process(proc: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if it has not ended within `timeout` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def docker_inspect(container: str) -> dict:
    import json

    out = subprocess.run(["docker", "inspect", container], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)[0]


def _build_registry(settings: Any, hub_logins: dict[str, str]) -> None:
    from sqlalchemy import update

    from hub import registry as reg
    from hub.kernel.db import session_scope, upgrade
    from hub.registry.models import Grant
    from hub.workspaces.login import create_login
    from tests.fixtures_registry import ADMIN, CUSTODIAN, LEAD, publish_release, write_cohort

    upgrade(settings)
    files = write_cohort(settings.root / "sources", 10)
    far = datetime.now(UTC) + timedelta(days=365)
    projects = {
        "proj-a": "alice",
        "proj-b": "bob",
        "proj-c": "alice",  # for tests that abuse their own workspace (fork bomb)
        "proj-closed": "alice",
        "proj-expired": "alice",
    }
    with session_scope(settings) as s:
        reg.add_user(s, ADMIN, ADMIN, "Admin", is_admin=True)
        reg.add_user(s, ADMIN, CUSTODIAN, "Custodian", is_custodian=True)
        for name in (LEAD, "alice", "bob", "mallory"):
            reg.add_user(s, ADMIN, name, name.title())
        reg.register_dataset(
            s, CUSTODIAN, "diabetes", [reg.SourceFile(k, v) for k, v in files.items()], "national_id"
        )
        for slug, member in projects.items():
            reg.create_project(s, ADMIN, slug, f"Project {slug}", LEAD, far)
            reg.add_member(s, LEAD, slug, member)
            grant = reg.request_grant(s, LEAD, slug, "diabetes", {"patients": ["*"]})
            reg.decide_grant(s, CUSTODIAN, grant.id, approve=True)
            if slug == "proj-expired":  # time passes: the grant ran out yesterday
                s.execute(
                    update(Grant)
                    .where(Grant.id == grant.id)
                    .values(expires_at=datetime.now(UTC) - timedelta(days=1))
                )
        reg.change_project_status(s, ADMIN, "proj-closed", "close", "test")
    for slug in projects:
        release = publish_release(settings, slug)
        (release / "data" / "secret.csv").write_text(f"project,{slug}\n")
        (release / "catalog.duckdb").write_bytes(b"")
    for name in ("alice", "bob", "mallory", LEAD):
        hub_logins[name] = create_login(name, PASSWORD, settings)


@functools.cache
def test_ca() -> Path:
    """One local CA for every TRE of this test session (the test browser trusts it); its folder."""
    from hub.host.tls import create_ca

    folder = Path(tempfile.mkdtemp(prefix="tre-test-ca-"))
    create_ca(folder / "ca.crt", folder / "ca.key")
    return folder


def issue_test_certificate(settings: Any) -> None:
    """The TRE's certificate for its names, from the session's test CA."""
    from hub.host import tls

    target = tls.ca_path(settings).parent
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name in ("ca.crt", "ca.key"):
        shutil.copy2(test_ca() / name, target / name)
    tls.local_certificate(settings)


def isolated_settings(root: Path, name: str, **overrides: Any) -> Any:
    """Settings of a TRE of its own on this machine: its root, free ports, its own workspace network
    (bridge, subnet, firewall chain) and container prefix, beside any other hub on the engine."""
    from hub.kernel.settings import Settings

    suffix = secrets.token_hex(3)
    subnet, sealed = free_subnet(), free_subnet()
    while sealed == subnet:
        sealed = free_subnet()
    return Settings(
        root=root,
        network=f"tre-{name}-{suffix}",
        bridge=f"tr{name[:2]}{suffix}",
        subnet=subnet,
        sealed_subnet=sealed,
        public_port=free_port(),
        http_port=free_port(),
        proxy_api_port_override=free_port(),
        egress_port=free_port(),
        portal_port=free_port(),
        hub_port=free_port(),
        guard_port=free_port(),
        link_port=free_port(),
        container_prefix=f"tre{suffix}",
        **overrides,
    )


def start_hub(root: Path, image: str, **overrides: Any) -> Iterator[Hub]:
    """Network + registry + `tre hub` (hub.workspaces.hub_process, as the demo runs it); yields a
    ready Hub and tears everything down afterwards. `overrides` are Settings fields."""
    from hub.host import network
    from hub.workspaces.hub_api import admin_token
    from hub.workspaces.hub_process import HubProcess

    # A short login throttle, so the tests can wait a delay out.
    throttle = {"lockout_after": 5, "lockout_delay": 2, "lockout_seconds": 4}
    settings = isolated_settings(root, "test", image=image, **{**throttle, **overrides})
    process = HubProcess(settings, log=root / "hub.log")
    try:
        network.setup(settings)
        issue_test_certificate(settings)
        hub = Hub(
            settings, settings.to_env(), process.url, admin_token(settings), log=process.log, process=process
        )
        _build_registry(settings, hub.totp)
        process.start(timeout=HUB_START_TIMEOUT)
        yield hub
    finally:
        process.stop(timeout=45)
        with contextlib.suppress(Exception):
            network.teardown(settings)


@pytest.fixture(scope="session")
def hub_image(request, docker_available) -> str:
    """TRE_TEST_IMAGE when set (a quick local image for development), else the real notebook image."""
    return os.environ.get("TRE_TEST_IMAGE") or request.getfixturevalue("notebook_image")


def hub_of_its_own(tmp_path_factory, hub_image, name: str, **overrides: Any) -> Iterator[Hub]:
    """A running hub in a fresh TRE root (for a fixture to yield from)."""
    if os.geteuid() != 0:
        pytest.skip("the hub tests need root (Docker, iptables)")
    root = tmp_path_factory.mktemp(name) / "tre"
    root.mkdir()
    yield from start_hub(root, hub_image, **overrides)


@pytest.fixture(scope="session")
def tre_hub(tmp_path_factory, hub_image) -> Iterator[Hub]:
    yield from hub_of_its_own(tmp_path_factory, hub_image, "hub")


def running_pair(hub: Hub) -> dict[str, str]:
    """alice's proj-a and bob's proj-b workspaces, started once per hub: {"alice": container, ...}."""
    if not hub.pair:
        hub.start("alice", "proj-a")
        hub.start("bob", "proj-b")
        hub.pair = {"alice": hub.container("alice", "proj-a"), "bob": hub.container("bob", "proj-b")}
    return hub.pair


@pytest.fixture(scope="session")
def running(tre_hub) -> dict[str, str]:
    return running_pair(tre_hub)


GWBRIDGE_SUBNET = "10.211.0.0/16"


def create_gwbridge(docker: list[str]) -> subprocess.CompletedProcess:
    """The engine `docker` names gets its swarm gateway bridge in a range of its own, before it joins
    a swarm (left to itself it may take the TRE's 172.31.0.0/16: docs/operations.md)."""
    return subprocess.run(
        [
            *docker, "network", "create", "--subnet", GWBRIDGE_SUBNET,
            "-o", "com.docker.network.bridge.name=docker_gwbridge",
            "-o", "com.docker.network.bridge.enable_icc=false",
            "-o", "com.docker.network.bridge.enable_ip_masquerade=true", "docker_gwbridge",
        ],
        capture_output=True,
    )  # fmt: skip


@contextlib.contextmanager
def single_node_swarm() -> Iterator[None]:
    """This engine as a single-node swarm; left as it was found (a swarm made here is left again)."""
    state = subprocess.run(
        ["docker", "info", "--format", "{{.Swarm.LocalNodeState}}"], capture_output=True, text=True
    ).stdout.strip()
    if state == "active":
        yield
        return
    # Swarm makes docker_gwbridge with the first free /16 of Docker's pools (172.17-31.0.0/16, where the
    # test and the TRE's default subnets are) unless it exists: made first, with its own range.
    create_gwbridge(["docker"])
    route = subprocess.run(["ip", "-4", "route", "get", "192.0.2.1"], capture_output=True, text=True).stdout
    addr = route.split(" src ")[1].split()[0] if " src " in route else "127.0.0.1"
    init = subprocess.run(
        ["docker", "swarm", "init", "--advertise-addr", addr], capture_output=True, text=True
    )
    assert init.returncode == 0, init.stderr
    try:
        yield
    finally:
        subprocess.run(["docker", "swarm", "leave", "--force"], capture_output=True)
        # The swarm's gateway bridge stays behind a swarm that is left.
        subprocess.run(["docker", "network", "rm", "docker_gwbridge"], capture_output=True)
        # Config networks a test hub's teardown had to keep (hub.host.swarm.remove says why) go now.
        ls = [
            "docker",
            "network",
            "ls",
            "-q",
            "--filter",
            "label=org.tre.managed=1",
            "--filter",
            "driver=null",
        ]
        kept = subprocess.run(ls, capture_output=True, text=True).stdout.split()
        if kept:
            subprocess.run(["docker", "network", "rm", *kept], capture_output=True)


@pytest.fixture(scope="session")
def swarm(docker_available) -> Iterator[None]:
    with single_node_swarm():
        yield


@pytest.fixture(scope="session")
def swarm_hub(tmp_path_factory, hub_image, swarm) -> Iterator[Hub]:
    """A hub whose workspaces run as services on the swarm (TRE_ENGINE=swarm)."""
    yield from hub_of_its_own(tmp_path_factory, hub_image, "swarm", engine="swarm")


ENGINES = ["tre_hub", "swarm_hub"]  # the plain engine and a single-node swarm (TRE_ENGINE=swarm)


def hub_on_each_engine(request) -> Hub:
    """For a module that runs on both engines, as its `hub` fixture:
    `hub = pytest.fixture(hub_on_each_engine, scope="module", params=ENGINES, name="hub")`, with
    `workspaces = pytest.fixture(running_pair, scope="module", name="workspaces")` beside it."""
    return request.getfixturevalue(request.param)


PROBE = """
import errno, json, socket, sys
def tcp(host, port, timeout=2.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
        return "open"
    except OSError as e:
        return errno.errorcode.get(e.errno, "timeout" if isinstance(e, TimeoutError) else str(e))
    finally:
        s.close()
print(json.dumps([tcp(h, p) for h, p in json.loads(sys.argv[1])]))
"""


def probe_tcp(container: str, targets: list[tuple[str, int]]) -> list[str]:
    """From inside the workspace (as uid 1000): "open" or the errno name for each (host, port)."""
    import json

    r = docker_exec(container, "python3", "-c", PROBE, json.dumps(targets), timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


TCP_PROBE = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)"


def tcp_from_host(settings: Any, host: str, port: int, as_guard: bool) -> subprocess.CompletedProcess:
    """Connect from a host process, as root (any host process) or in the guard's group (the guard)."""
    from hub.host.network import guard_gid

    cmd = ["python3", "-c", TCP_PROBE, host, str(port)]
    if as_guard:
        cmd = ["setpriv", f"--regid={guard_gid(settings)}", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)


def host_tcp(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
