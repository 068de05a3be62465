"""The workspace network and its host firewall: set up idempotently, checked before every spawn.

Workspaces sit on one Docker bridge network that is

- internal (no NAT, no default route: nothing can leave the host),
- without inter-container communication (ICC off: workspaces cannot talk to each other),
- on a fixed bridge name and subnet, so the host firewall can name it.

The host firewall (iptables) then decides what the bridge may reach *on the host itself*: a dedicated
chain hooked into INPUT accepts replies to connections the hub opened (the hub reaches the servers)
and new TCP connections to the hub API on the bridge gateway address; everything else from the
bridge is dropped (the egress service, SSH, the proxy, DNS, ...). Forwarded traffic from or to the
bridge is dropped in DOCKER-USER as a second line behind Docker's own internal-network rules.

A second chain, hooked into OUTPUT, decides what on the host may open connections *to* the bridge:
only processes of the guard's group (TRE_GUARD_GROUP). So every browser byte to or from a workspace
passes the guard: not the proxy, not the hub, not another host process.
"""

from __future__ import annotations

import grp
import ipaddress
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from functools import cached_property

import docker
import docker.errors
from docker.types import IPAMConfig, IPAMPool

from hub.host import swarm
from hub.kernel.settings import Settings

MANAGED_LABEL = "org.tre.managed"
# iptables chain names are limited to 28 characters.
CHAIN_MAX = 28


class NetworkError(RuntimeError):
    """The network or firewall cannot be set up; the message says what to do."""


@dataclass(frozen=True)
class NetworkPlan:
    name: str
    bridge: str
    subnet: str
    gateway: str
    hub_port: int
    guard_gid: int | None  # None: the guard's group does not exist yet (setup creates it)
    # Swarm only: the bridge of the network sealed runs and jobs get, which reaches nothing at all.
    sealed_bridge: str | None = None
    sealed_subnet: str | None = None

    @property
    def sealed_options(self) -> dict[str, str]:
        return {**self.docker_options, "com.docker.network.bridge.name": self.sealed_bridge or ""}

    @property
    def chain(self) -> str:
        return f"TRE-{self.bridge}"[:CHAIN_MAX]

    @property
    def out_chain(self) -> str:
        return f"TREO-{self.bridge}"[:CHAIN_MAX]

    @property
    def docker_options(self) -> dict[str, str]:
        return {
            "com.docker.network.bridge.name": self.bridge,
            "com.docker.network.bridge.enable_icc": "false",
            "com.docker.network.bridge.enable_ip_masquerade": "false",
        }

    def chain_rules(self) -> list[list[str]]:
        """The rules of the dedicated INPUT chain, in order (iptables -A arguments)."""
        accept = ["-j", "ACCEPT"]
        return [
            ["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
            ["-d", f"{self.gateway}/32", "-p", "tcp", "-m", "tcp", "--dport", str(self.hub_port), *accept],
            ["-j", "DROP"],
        ]

    def out_rules(self) -> list[list[str]]:
        """The rules of the OUTPUT chain (as `iptables -S` prints them): only the guard connects."""
        return [
            ["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
            ["-m", "owner", "--gid-owner", str(self.guard_gid), "-j", "ACCEPT"],
            ["-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"],
            ["-j", "REJECT", "--reject-with", "icmp-port-unreachable"],
        ]

    def hooks(self) -> list[tuple[str, list[str]]]:
        """(chain, rule) pairs that send the bridge's traffic to our rules."""
        return [
            ("INPUT", ["-i", self.bridge, "-j", self.chain]),
            ("OUTPUT", ["-o", self.bridge, "-j", self.out_chain]),
            (self.forward_chain, ["-i", self.bridge, "-j", "DROP"]),
            (self.forward_chain, ["-o", self.bridge, "-j", "DROP"]),
            *self.sealed_hooks(),
        ]

    def sealed_hooks(self) -> list[tuple[str, list[str]]]:
        """Nothing in or out of the sealed bridge: not the host, not the hub, not the guard."""
        if not self.sealed_bridge:
            return []
        return [
            ("INPUT", ["-i", self.sealed_bridge, "-j", "DROP"]),
            ("OUTPUT", ["-o", self.sealed_bridge, "-j", "REJECT"]),
            (self.forward_chain, ["-i", self.sealed_bridge, "-j", "DROP"]),
            (self.forward_chain, ["-o", self.sealed_bridge, "-j", "DROP"]),
        ]

    @cached_property
    def forward_chain(self) -> str:
        # DOCKER-USER is evaluated before Docker's own FORWARD rules and survives dockerd restarts.
        return "DOCKER-USER" if _iptables_ok(["-S", "DOCKER-USER"]) else "FORWARD"


def guard_gid(settings: Settings) -> int | None:
    """The guard's group id (the only one whose processes may connect to workspaces), if it exists."""
    try:
        return grp.getgrnam(settings.guard_group).gr_gid
    except KeyError:
        return None


def plan(settings: Settings) -> NetworkPlan:
    net = ipaddress.ip_network(settings.subnet, strict=True)
    gateway = str(next(net.hosts()))
    sealed = settings.engine == "swarm"
    return NetworkPlan(
        settings.network,
        settings.bridge,
        str(net),
        gateway,
        settings.hub_port,
        guard_gid(settings),
        sealed_bridge=f"{settings.bridge[:13]}-s" if sealed else None,  # Linux allows 15 characters
        sealed_subnet=str(ipaddress.ip_network(settings.sealed_subnet, strict=True)) if sealed else None,
    )


def _ensure_guard_group(settings: Settings) -> int:
    gid = guard_gid(settings)
    if gid is None:
        result = subprocess.run(
            ["groupadd", "--system", settings.guard_group], capture_output=True, text=True, check=False
        )
        gid = guard_gid(settings)
        if gid is None:
            raise NetworkError(f"could not create the group {settings.guard_group}: {result.stderr.strip()}")
    return gid


def gateway_ip(settings: Settings) -> str:
    """The bridge gateway address: where the hub API binds and the only host address workspaces reach."""
    return plan(settings).gateway


# --- iptables -------------------------------------------------------------------------------------


def _iptables_bin() -> str:
    path = shutil.which("iptables") or next(
        (p for p in ("/usr/sbin/iptables", "/sbin/iptables") if shutil.which(p)), None
    )
    if not path:
        raise NetworkError("iptables is not installed; install it (apt-get install iptables) and retry")
    return path


def _iptables(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_iptables_bin(), "-w", "10", *args], capture_output=True, text=True, check=False)


def _iptables_ok(args: list[str]) -> bool:
    return _iptables(args).returncode == 0


def _iptables_must(args: list[str]) -> None:
    result = _iptables(args)
    if result.returncode != 0:
        raise NetworkError(f"iptables {' '.join(args)} failed: {result.stderr.strip()} (run as root)")


def _chain_rules_now(chain: str) -> list[str] | None:
    result = _iptables(["-S", chain])
    if result.returncode != 0:
        return None
    return [line for line in result.stdout.splitlines() if line.startswith("-A ")]


def _expected_chain_rules(p: NetworkPlan) -> list[str]:
    return [" ".join(["-A", p.chain, *rule]) for rule in p.chain_rules()]


def _expected_out_rules(p: NetworkPlan) -> list[str]:
    return [" ".join(["-A", p.out_chain, *rule]) for rule in p.out_rules()]


def _own_chains(p: NetworkPlan) -> list[tuple[str, list[str], list[list[str]]]]:
    """(chain, expected `-S` lines, rules) of each chain the TRE owns."""
    return [
        (p.chain, _expected_chain_rules(p), p.chain_rules()),
        (p.out_chain, _expected_out_rules(p), p.out_rules()),
    ]


# --- Docker ---------------------------------------------------------------------------------------


def _docker() -> docker.DockerClient:
    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except Exception as exc:
        raise NetworkError(f"cannot reach the Docker engine ({exc}); start dockerd and retry") from exc
    return client


def _network_problems(
    net_attrs: dict,
    p: NetworkPlan,
    name: str | None = None,
    options: dict[str, str] | None = None,
    subnet: str | None = None,
) -> list[str]:
    """What differs from the plan in a local bridge network (or, on Swarm, a config network `name`
    with its own options and subnet, whose swarm network carries the internal flag)."""
    problems = []
    if name is None and not net_attrs.get("Internal"):
        problems.append(f"Docker network {p.name} is not internal")
    name, options, subnet = name or p.name, options or p.docker_options, subnet or p.subnet
    have = net_attrs.get("Options") or {}
    for key, want in options.items():
        if have.get(key) != want:
            problems.append(f"Docker network {name} has {key}={have.get(key)!r}, expected {want!r}")
    configs = (net_attrs.get("IPAM") or {}).get("Config") or []
    subnets = {c.get("Subnet") for c in configs}
    if subnets != {subnet}:
        found = sorted(s for s in subnets if s)
        problems.append(f"Docker network {name} has subnets {found}, expected {subnet}")
    return problems


def bridge_has_gateway(p: NetworkPlan) -> bool:
    result = subprocess.run(
        ["ip", "-o", "-4", "addr", "show", "dev", p.bridge], capture_output=True, text=True, check=False
    )
    return result.returncode == 0 and f" {p.gateway}/" in result.stdout


# --- public operations ----------------------------------------------------------------------------


@dataclass
class Status:
    plan: NetworkPlan
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def status(settings: Settings, this_node_only: bool = False) -> Status:
    """Check the network and the firewall are exactly as `setup` leaves them (on a swarm manager, on
    every node unless `this_node_only`)."""
    p = plan(settings)
    st = Status(p)
    try:
        client = _docker()
        if settings.engine == "swarm":
            st.problems += _swarm_problems(client, settings, p, this_node_only)
        else:
            st.problems += _network_problems(client.networks.get(p.name).attrs, p)
    except docker.errors.NotFound:
        st.problems.append(f"Docker network {p.name} does not exist")
    except (NetworkError, swarm.SwarmError) as exc:
        st.problems.append(str(exc))
    if not bridge_has_gateway(p):
        st.problems.append(f"bridge {p.bridge} does not carry the gateway address {p.gateway}")
    if p.guard_gid is None:
        st.problems.append(f"the guard's group {settings.guard_group} does not exist")
    try:
        for chain, expected, _ in _own_chains(p):
            rules = _chain_rules_now(chain)
            if rules is None:
                st.problems.append(f"iptables chain {chain} does not exist")
            elif rules != expected:
                st.problems.append(f"iptables chain {chain} differs from the expected rules")
        for chain, rule in p.hooks():
            if not _iptables_ok(["-C", chain, *rule]):
                st.problems.append(f"iptables rule missing in {chain}: {' '.join(rule)}")
    except NetworkError as exc:
        st.problems.append(str(exc))
    return st


def _swarm_networks(settings: Settings, p: NetworkPlan) -> list[tuple[str, dict[str, str], str, str]]:
    """(swarm network, bridge options, subnet, gateway): the workspaces' and the sealed runs'."""
    sealed = ipaddress.ip_network(p.sealed_subnet or "")
    return [
        (p.name, p.docker_options, p.subnet, p.gateway),
        (swarm.sealed_network(settings), p.sealed_options, str(sealed), str(next(sealed.hosts()))),
    ]


def _swarm_problems(
    client: docker.DockerClient, settings: Settings, p: NetworkPlan, this_node_only: bool = False
) -> list[str]:
    node = swarm.node_state(client)
    problems = []
    for network, options, subnet, _ in _swarm_networks(settings, p):
        try:
            config = client.networks.get(swarm.config_network(network))
            problems += _network_problems(config.attrs, p, config.name, options, subnet)
        except docker.errors.NotFound:
            problems.append(f"config network {swarm.config_network(network)} does not exist on this node")
        problems += swarm.swarm_network_problems(client, network, node.manager)
    problems += swarm.gwbridge_problems(
        client, [ipaddress.ip_network(n[2]) for n in _swarm_networks(settings, p)]
    )
    if node.manager:
        problems += swarm.anchor_problems(client, settings, node.node_id if this_node_only else None)
        if not this_node_only:
            problems += swarm.link_problems(client, settings, node.node_id)
    return problems


def _setup_swarm(client: docker.DockerClient, settings: Settings, p: NetworkPlan) -> list[str]:
    """This node's config networks; on a manager the swarm networks and the anchor too."""
    node = swarm.node_state(client)
    done = []
    for network, options, subnet, gateway in _swarm_networks(settings, p):
        name = swarm.config_network(network)
        if swarm.ensure_config_network(client, network, options, subnet, gateway):
            bridge = options["com.docker.network.bridge.name"]
            done.append(f"config network {name}: created (bridge {bridge}, ICC off, no NAT, {subnet})")
        problems = _network_problems(client.networks.get(name).attrs, p, name, options, subnet)
        if problems:
            raise NetworkError("; ".join(problems) + "; run `tre network teardown` and set up again")
        if node.manager and swarm.ensure_swarm_network(client, network):
            done.append(f"swarm network {network}: created internal, from {name}")
    if node.manager and swarm.ensure_anchor(client, settings):
        done.append(f"anchor service {swarm.anchor_service(settings)}: created (one task per node)")
    deadline = time.monotonic() + 90

    def anchored() -> bool:
        # A manager also waits for its anchor's report, which `status` checks.
        return bridge_has_gateway(p) and (
            not node.manager or bool(swarm.anchor_reports(client, settings).get(node.node_id))
        )

    while not anchored():
        if time.monotonic() > deadline:
            raise NetworkError(
                f"bridge {p.bridge} did not come up: the anchor task has not started on this node "
                f"(see `docker service ps {swarm.anchor_service(settings)}` on a manager)"
            )
        time.sleep(0.2)
    done.append(f"swarm network {p.name} on this node: bridge {p.bridge}, gateway {p.gateway}")
    return done


def setup(settings: Settings) -> list[str]:
    """Create what is missing and fix what drifted; return one line per thing done or checked."""
    _ensure_guard_group(settings)
    p = plan(settings)
    client = _docker()
    done: list[str] = []
    if settings.engine == "swarm":
        try:
            done += _setup_swarm(client, settings, p)
        except swarm.SwarmError as exc:
            raise NetworkError(str(exc)) from exc
    else:
        done += _setup_bridge(client, p)
    _setup_firewall(settings, p, done)
    # This node's part is checked here. On a swarm manager, nodes that joined but have not run
    # setup yet are reported, not failed: Ansible sets the manager up first, then the others.
    # Until they have, `status` fails and no workspace starts.
    st = status(settings, this_node_only=True)
    if not st.ok:
        raise NetworkError("setup finished but checks fail: " + "; ".join(st.problems))
    if settings.engine == "swarm" and swarm.node_state(client).manager:
        # This node's checks passed, so any anchor problem left is another node's.
        done += [
            f"waiting: {problem}; no workspace starts until it is fixed"
            for problem in swarm.anchor_problems(client, settings)
        ]
    return done


def _setup_bridge(client: docker.DockerClient, p: NetworkPlan) -> list[str]:
    done: list[str] = []
    try:
        net = client.networks.get(p.name)
        problems = _network_problems(net.attrs, p)
        if problems:
            raise NetworkError(
                "; ".join(problems) + "; run `tre network teardown` (stop workspaces first) and set up again"
            )
        done.append(f"Docker network {p.name}: present (internal, ICC off, bridge {p.bridge}, {p.subnet})")
    except docker.errors.NotFound:
        try:
            client.networks.create(
                p.name,
                driver="bridge",
                internal=True,
                options=p.docker_options,
                ipam=IPAMConfig(pool_configs=[IPAMPool(subnet=p.subnet, gateway=p.gateway)]),
                labels={MANAGED_LABEL: "1"},
            )
        except docker.errors.APIError as exc:
            raise NetworkError(f"could not create Docker network {p.name}: {exc.explanation}") from exc
        done.append(
            f"Docker network {p.name}: created internal (no NAT, no route out), ICC off, "
            f"bridge {p.bridge}, subnet {p.subnet}, gateway {p.gateway}"
        )
    if not bridge_has_gateway(p):
        raise NetworkError(f"bridge {p.bridge} has no address {p.gateway} after setup; check `ip addr`")
    return done


def _setup_firewall(settings: Settings, p: NetworkPlan, done: list[str]) -> None:
    # Chains are rebuilt in place (flush + append) so rule drift is repaired; hooks are added once.
    for chain, expected, rules in _own_chains(p):
        if _chain_rules_now(chain) is None:
            _iptables_must(["-N", chain])
        if _chain_rules_now(chain) != expected:
            _iptables_must(["-F", chain])
            for rule in rules:
                _iptables_must(["-A", chain, *rule])
    done.append(
        f"iptables chain {p.chain}: from {p.bridge} accept replies and tcp to {p.gateway}:{p.hub_port} "
        "(hub API), drop everything else"
    )
    done.append(
        f"iptables chain {p.out_chain}: to {p.bridge} only the guard (group {settings.guard_group}, "
        f"gid {p.guard_gid}) opens connections"
    )
    for chain, rule in p.hooks():
        if not _iptables_ok(["-C", chain, *rule]):
            _iptables_must(["-I", chain, "1", *rule])
        done.append(f"iptables {chain}: {' '.join(rule)}")


def teardown(settings: Settings) -> list[str]:
    """Remove the firewall rules and the network (fails while workspaces are still attached)."""
    p = plan(settings)
    done: list[str] = []
    # The network goes first: removing it fails while workspaces are attached, and then the firewall
    # must stay in place.
    if settings.engine == "swarm":
        try:
            done += swarm.remove(_docker(), settings, lambda: not bridge_has_gateway(p))
        except swarm.SwarmError as exc:
            raise NetworkError(str(exc)) from exc
    try:
        _docker().networks.get(p.name).remove()
        done.append(f"Docker network {p.name}: removed")
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        raise NetworkError(
            f"could not remove Docker network {p.name} (stop the workspaces first): {exc.explanation}"
        ) from exc
    for chain, rule in p.hooks():
        while _iptables_ok(["-C", chain, *rule]):
            _iptables_must(["-D", chain, *rule])
            done.append(f"iptables {chain}: removed {' '.join(rule)}")
    for chain, _, _ in _own_chains(p):
        if _chain_rules_now(chain) is not None:
            _iptables_must(["-F", chain])
            _iptables_must(["-X", chain])
            done.append(f"iptables chain {chain}: removed")
    return done


@dataclass(frozen=True)
class DnsProbe:
    name: str  # a name this host resolves
    checked: bool  # False: the probe could not run (the reason says why); proves nothing
    leaks: bool  # True: the name resolved from inside the network
    detail: str


DNS_PROBE = (
    "import socket, sys\n"
    "try:\n"
    "    socket.getaddrinfo(sys.argv[1], 443)\n"
    "    print('resolved')\n"
    "except OSError as e:\n"
    "    print('failed', e)\n"
)


def dns_probe(settings: Settings, network: str | None = None, name: str | None = None) -> DnsProbe:
    """Ask, from a throwaway container on the workspace network, for a name this host resolves.

    Docker engines before 26.0.0 / 25.0.5 / 23.0.11 forward such queries from internal networks to
    the host's resolvers (CVE-2024-29018): a DNS channel out of a network that has no other. The
    container runs the notebook image as a workspace would: uid 1000, no capabilities, read-only.
    """
    from urllib.parse import urlparse

    network = network or settings.network
    name = name or urlparse(settings.debian_mirror).hostname or "deb.debian.org"
    try:
        import socket

        socket.getaddrinfo(name, 443)
    except OSError:
        return DnsProbe(
            name, False, False, f"this host cannot resolve {name} either, so the probe proves nothing"
        )
    try:
        _docker().images.get(settings.image)
    except docker.errors.ImageNotFound:
        return DnsProbe(
            name, False, False, f"the image {settings.image} is not built yet (`tre images build`)"
        )
    run = subprocess.run(
        [
            "docker", "run", "--rm", "--network", network, "--user", "1000:1000", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", "--read-only", "--entrypoint", "python3",
            settings.image, "-c", DNS_PROBE, name,
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if run.returncode != 0:
        return DnsProbe(name, False, False, f"the probe container failed: {run.stderr.strip()[-300:]}")
    if run.stdout.startswith("resolved"):
        return DnsProbe(
            name,
            True,
            True,
            f"{name} resolves from inside {network}: this Docker engine forwards external DNS for internal "
            "networks (CVE-2024-29018); upgrade it to 26.0.0, 25.0.5 or 23.0.11 or later",
        )
    return DnsProbe(
        name, True, False, f"{name}, which this host resolves, does not resolve from inside {network}"
    )
