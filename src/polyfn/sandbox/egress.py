"""`network: egress` (the default): the outside world, without the host.

Each instance's network namespace is joined to the host's by a veth pair (sandbox/veth.py). One nftables
table, `inet polyfn`, shared by every polyfn server on the host (the rules are the same for all; written
idempotently at start, never removed while another server may use it), decides what may pass:

* nothing addressed to the host itself (input from a `pf*` interface is refused: the node's PostgreSQL,
  Redis, NATS … on any of its addresses, polyfn's own ports included — those are relayed, see relay.py);
* nothing forwarded to loopback, link-local (169.254.0.0/16: cloud metadata), private (10/8, 172.16/12,
  192.168/16), shared (100.64/10: other instances), multicast/reserved ranges, or the node's own networks;
  IPv6 is not routed at all;
* except DNS (port 53) to the resolvers of the node's /etc/resolv.conf, so names resolve;
* everything else leaves masqueraded behind the node's address.

A function's allow-list (`--allow-net HOST:PORT`) is not a hole in these rules: each entry becomes a
listener inside the instance's namespace relayed by the server (sandbox/relay.py), like polyfn's own API.

`plan()` is pure (the ruleset as text, from the host's facts); `install()` applies it with `nft -f -`.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from collections.abc import Iterable

from polyfn.sandbox.veth import HOST_PREFIX, POOL

TABLE = "polyfn"
#: never reachable through the veth: loopback, this-network, private, shared/CGNAT (instances), link-local
#: (cloud metadata), IETF protocol assignments, benchmarking, multicast, reserved, broadcast
REFUSED_V4 = ("0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
              "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4")


def parse_allow(entry: str) -> tuple[str, int]:
    """`HOST:PORT` of a function's allow-list (HOST an IPv4 address or a name). Raises ValueError saying why."""
    host, sep, port = entry.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"allow_net entry {entry!r} must be HOST:PORT (an IPv4 address or a name, a port 1-65535)")
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        if not all(part and len(part) < 64 and part.replace("-", "").isalnum() for part in host.split(".")):
            raise ValueError(f"allow_net entry {entry!r}: {host!r} is neither an IPv4 address nor a host name") from None
    return host, int(port)


def resolve_allow(entries: Iterable[str]) -> list[str]:
    """Each entry as `IP:PORT` (names resolved now, every IPv4 address they have); unresolvable names are
    left out (the function then cannot reach them, as it could not resolve them either)."""
    import socket

    out: list[str] = []
    for entry in entries:
        host, port = parse_allow(entry)
        try:
            ips = [str(ipaddress.IPv4Address(host))]
        except ValueError:
            try:
                ips = sorted(set(socket.gethostbyname_ex(host)[2]))
            except OSError:
                ips = []
        out.extend(f"{ip}:{port}" for ip in ips if f"{ip}:{port}" not in out)
    return out


def resolvers(resolv_conf: str) -> list[str]:
    """IPv4 nameservers of a resolv.conf text (loopback ones cannot be reached from an instance)."""
    out = []
    for line in resolv_conf.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                addr = ipaddress.IPv4Address(parts[1])
            except ValueError:
                continue
            if not addr.is_loopback:
                out.append(str(addr))
    return out


def refused(own_networks: Iterable[str]) -> list[str]:
    """The refused ranges plus the node's own networks, collapsed."""
    nets = [ipaddress.IPv4Network(n, strict=False) for n in (*REFUSED_V4, *own_networks)]
    return [str(n) for n in ipaddress.collapse_addresses(nets)]


def plan(own_networks: Iterable[str], dns: Iterable[str]) -> str:
    """The nftables script (idempotent: table and chains are created if missing, then flushed and refilled)."""
    iif = f'iifname "{HOST_PREFIX}*"'
    dns = sorted(set(dns))
    dns_rules = ""
    if dns:
        servers = ", ".join(dns)
        dns_rules = (f"    {iif} ip daddr {{ {servers} }} udp dport 53 accept\n"
                     f"    {iif} ip daddr {{ {servers} }} tcp dport 53 accept\n")
    blocked = ", ".join(refused(own_networks))
    return (
        f"add table inet {TABLE}\n"
        f"add chain inet {TABLE} input {{ type filter hook input priority -10; policy accept; }}\n"
        f"add chain inet {TABLE} forward {{ type filter hook forward priority -10; policy accept; }}\n"
        f"add chain inet {TABLE} postrouting {{ type nat hook postrouting priority 100; policy accept; }}\n"
        f"flush chain inet {TABLE} input\n"
        f"flush chain inet {TABLE} forward\n"
        f"flush chain inet {TABLE} postrouting\n"
        f"table inet {TABLE} {{\n"
        f"  chain input {{\n"
        f"    {iif} reject with icmpx type admin-prohibited\n"
        f"  }}\n"
        f"  chain forward {{\n"
        f"    {iif} meta nfproto ipv6 reject with icmpx type admin-prohibited\n"
        f"{dns_rules}"
        f"    {iif} ip daddr {{ {blocked} }} reject with icmpx type admin-prohibited\n"
        f"    {iif} accept\n"
        f'    oifname "{HOST_PREFIX}*" ct state established,related accept\n'
        f'    oifname "{HOST_PREFIX}*" reject with icmpx type admin-prohibited\n'
        f"  }}\n"
        f"  chain postrouting {{\n"
        f'    ip saddr {POOL} oifname != "{HOST_PREFIX}*" masquerade\n'
        f"  }}\n"
        f"}}\n"
    )


def own_networks() -> list[str]:
    """The IPv4 networks of the node's interfaces (its LAN), from `ip -j -4 addr`; [] when unknown."""
    import json

    ip = shutil.which("ip")
    if not ip:
        return []
    try:
        out = subprocess.run([ip, "-j", "-4", "addr"], capture_output=True, text=True, timeout=10, check=True).stdout
        nets = []
        for link in json.loads(out):
            if str(link.get("ifname", "")).startswith(HOST_PREFIX):
                continue
            for a in link.get("addr_info", []):
                nets.append(str(ipaddress.IPv4Network(f"{a['local']}/{a['prefixlen']}", strict=False)))
        return nets
    except (OSError, subprocess.SubprocessError, ValueError, KeyError):
        return []


def unavailable() -> str:
    """Why egress cannot be enforced here ("" when it can): it needs root and the `nft` tool."""
    import os

    if os.geteuid() != 0:
        return "not root (a veth pair and nftables rules need root)"
    if not shutil.which("nft"):
        return "the nft tool is missing (Debian: apt-get install nftables)"
    return ""


def endpoint_addresses(urls: Iterable[str]) -> list[str]:
    """The IPv4 addresses of the hosts in `urls` (the node's PostgreSQL, NATS, upstream S3 …), as /32s:
    refused like the private ranges even when they are public (a managed database, a cloud S3 endpoint)."""
    import socket
    from urllib.parse import urlsplit

    out: set[str] = set()
    for url in urls:
        for part in (url or "").split(","):
            try:
                host = urlsplit(part.strip() if "://" in part else "//" + part.strip()).hostname
            except ValueError:
                continue
            if not host:
                continue
            try:
                out.update(f"{ip}/32" for ip in socket.gethostbyname_ex(host)[2])
            except OSError:
                continue
    return sorted(out)


def install(control_plane: Iterable[str] = ()) -> str:
    """Apply the ruleset and enable forwarding. `control_plane`: URLs of the node's own services, refused
    too. Returns "" or why it failed (egress then stays off)."""
    why = unavailable()
    if why:
        return why
    with open("/etc/resolv.conf") as f:
        script = plan([*own_networks(), *endpoint_addresses(control_plane)], resolvers(f.read()))
    try:
        subprocess.run([shutil.which("nft") or "nft", "-f", "-"], input=script, capture_output=True, text=True,
                       timeout=30, check=True)
        with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
            f.write("1")
    except subprocess.CalledProcessError as e:
        return f"nft refused the ruleset: {(e.stderr or '').strip()[:300]}"
    except (OSError, subprocess.SubprocessError) as e:
        return f"cannot install the egress rules: {e}"
    return ""
