"""A network namespace on this host behind a veth pair: another "machine" on the tests' own link."""

from __future__ import annotations

import contextlib
import ipaddress
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Namespace:
    name: str
    host_address: str  # this host's end of the link
    address: str  # the namespace's end, its default route pointing back at this host


def enter(name: str) -> list[str]:
    """The command prefix that runs a command in the namespace `name`. nsenter enters only its
    network: `ip netns exec` also remounts /sys, which hides the cgroup mounts (dockerd needs them)."""
    return ["nsenter", f"--net=/run/netns/{name}"]


def _link_in_use(net: ipaddress.IPv4Network) -> bool:
    routes = subprocess.run(["ip", "-4", "route", "show"], capture_output=True, text=True).stdout
    ours = [ipaddress.ip_network(r.split()[0]) for r in routes.splitlines() if r[:1].isdigit()]
    return any(n.overlaps(net) for n in ours)


def _sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)


@contextlib.contextmanager
def namespace_behind_veth(prefix: str, link: str) -> Iterator[Namespace]:
    """A namespace `<prefix>-<tag>` joined to this host by the two addresses of the /30 `link`;
    removed afterwards (its end of the link goes with it)."""
    tag = secrets.token_hex(2)
    name, host_if, ns_if = f"{prefix}-{tag}", f"{prefix[:8]}{tag}a", f"{prefix[:8]}{tag}b"
    net = ipaddress.ip_network(link)
    if _link_in_use(net):
        raise AssertionError(f"{link} is routed on this machine already; the namespace's link needs it")
    host_ip, ns_ip = (str(a) for a in net.hosts())
    try:
        _sh("ip", "netns", "add", name)
        _sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _sh("ip", "link", "set", ns_if, "netns", name)
        _sh("ip", "addr", "add", f"{host_ip}/{net.prefixlen}", "dev", host_if)
        _sh("ip", "link", "set", host_if, "up")
        for cmd in (
            ["ip", "addr", "add", f"{ns_ip}/{net.prefixlen}", "dev", ns_if],
            ["ip", "link", "set", ns_if, "up"],
            ["ip", "link", "set", "lo", "up"],
            ["ip", "route", "add", "default", "via", host_ip],
        ):
            _sh("ip", "netns", "exec", name, *cmd)
        yield Namespace(name, host_ip, ns_ip)
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
