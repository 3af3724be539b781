"""`network: egress` (the default): the outside world, without the host.

Each instance's network namespace is joined to the host's by a veth pair (sandbox/veth.py). One nftables
table, `inet polyfn`, shared by every polyfn server on the host (the rules are the same for all; written
idempotently at start, never removed while another server may use it), decides what may pass:

* nothing addressed to the host itself (input from a `pf*` interface is refused: the node's PostgreSQL,
  Redis, NATS … on any of its addresses, polyfn's own ports included — those are relayed, see relay.py);
* nothing forwarded to (the named set `refused`, which every server adds to) loopback, link-local (169.254.0.0/16: cloud metadata), private (10/8, 172.16/12,
  192.168/16), shared (100.64/10: other instances), multicast/reserved ranges, or the node's own networks;
  IPv6 is not routed at all;
* except DNS (port 53) to the resolvers of the node's /etc/resolv.conf, so names resolve;
* everything else leaves masqueraded behind the node's address.

A function's allow-list (`--allow-net`) takes two kinds of entry:

* `HOST:PORT` (a service on the node itself, its loopback included): not a hole in these rules, but a
  listener inside the instance's namespace relayed by the server (sandbox/relay.py), like polyfn's own API;
* a CIDR, `10.1.2.0/24` (every TCP/UDP port), `10.1.2.0/24:5432` or `10.1.2.0/24:5000-5100`: an element of
  the set `allowed`, keyed by the *interface group* of the instance's host-side veth end. A function's
  ranges get one group number (a hash of them, `group_for`); its instances' veth ends carry it (set by the
  instance's own setup as root, before user code, sandbox/veth.py), and one rule ahead of the refusals
  accepts `iifgroup . daddr . dport` in the set. The node's own control-plane endpoints (set `control`)
  are refused before it: no allow-list opens polyfn's database, queue or store. Ranges that may never be
  opened (loopback, link-local/metadata, this-network, multicast, reserved) are refused at deploy.

`plan()` is pure (the ruleset as text, from the host's facts); `install()` applies it with `nft -f -`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import shutil
import subprocess
from collections.abc import Iterable
from typing import NamedTuple

from polyfn.sandbox.veth import HOST_PREFIX, POOL

TABLE = "polyfn"
#: never reachable through the veth: loopback, this-network, private, shared/CGNAT (instances), link-local
#: (cloud metadata), IETF protocol assignments, benchmarking, multicast, reserved, broadcast
REFUSED_V4 = ("0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
              "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4")


#: never opened by an allow-list entry of either kind: loopback services are `HOST:PORT` (relayed) entries,
#: link-local holds the cloud metadata service (the node's credentials)
NEVER_ALLOWED = {"0.0.0.0/8": "this-network", "127.0.0.0/8": "loopback (a service on the node's loopback is a "
                 "HOST:PORT entry, e.g. 127.0.0.1:5432)", "169.254.0.0/16": "link-local (the cloud metadata "
                 "service)", "224.0.0.0/4": "multicast", "240.0.0.0/4": "reserved"}
ALL_PORTS = (0, 65535)


class Range(NamedTuple):
    """A CIDR entry of an allow-list: every address of `network`, ports `ports` (inclusive), TCP and UDP."""

    network: str
    ports: tuple[int, int]

    def element(self, group: int) -> str:
        lo, hi = self.ports
        return f"{group} . {self.network} . {lo if lo == hi else f'{lo}-{hi}'}"


def _ports(entry: str, text: str) -> tuple[int, int]:
    lo, dash, hi = text.partition("-")
    if not lo.isdigit() or (dash and not hi.isdigit()):
        raise ValueError(f"allow_net entry {entry!r}: the port must be PORT or LOW-HIGH (1-65535), not {text!r}")
    a, b = int(lo), int(hi) if dash else int(lo)
    if not 0 < a <= b < 65536:
        raise ValueError(f"allow_net entry {entry!r}: ports {text!r} out of range (1-65535, LOW <= HIGH)")
    return a, b


def _refuse_never(entry: str, net: ipaddress.IPv4Network) -> None:
    for cidr, why in NEVER_ALLOWED.items():
        if net.overlaps(ipaddress.IPv4Network(cidr)):
            raise ValueError(f"allow_net entry {entry!r} overlaps {cidr}, {why}: no allow-list entry opens it")


def parse_entry(entry: str) -> tuple[str, int] | Range:
    """One allow-list entry: `HOST:PORT` → (host, port), relayed; `CIDR`, `CIDR:PORT` or `CIDR:LOW-HIGH` →
    a Range, routed under the nftables set. Raises ValueError saying what is wrong and what to write."""
    text = entry.strip() if isinstance(entry, str) else ""
    if "/" in text:
        cidr, _, ports = text.partition(":")
        try:
            net = ipaddress.IPv4Network(cidr, strict=True)
        except ValueError as e:
            hint = ""
            if "host bits" in str(e):
                loose = ipaddress.IPv4Network(cidr, strict=False)
                hint = f": write {loose} for the network, or {cidr.partition('/')[0]}/32 for one address"
            elif ":" in cidr or "::" in text:
                hint = ": IPv6 is not routed for functions"
            raise ValueError(f"allow_net entry {entry!r}: {cidr!r} is not an IPv4 network{hint}") from None
        _refuse_never(entry, net)
        return Range(str(net), _ports(entry, ports) if ports else ALL_PORTS)
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"allow_net entry {entry!r} must be HOST:PORT (an IPv4 address or a name, a port 1-65535) "
                         "or a CIDR (10.1.2.0/24, 10.1.2.0/24:5432, 10.1.2.0/24:5000-5100)")
    try:
        addr = ipaddress.IPv4Address(host)
    except ValueError:
        if not all(part and len(part) < 64 and part.replace("-", "").isalnum() for part in host.split(".")):
            raise ValueError(f"allow_net entry {entry!r}: {host!r} is neither an IPv4 address nor a host name") from None
    else:
        if addr.is_link_local:
            raise ValueError(f"allow_net entry {entry!r}: {host} is link-local (the cloud metadata service): "
                             "no allow-list entry opens it")
    return host, int(port)


def parse_allow(entry: str) -> tuple[str, int]:
    """A `HOST:PORT` entry (raises ValueError for anything else, a CIDR included)."""
    parsed = parse_entry(entry)
    if isinstance(parsed, Range):
        raise ValueError(f"allow_net entry {entry!r} is a CIDR, not HOST:PORT")
    return parsed


def ranges(entries: Iterable[str]) -> list[Range]:
    """The CIDR entries of an allow-list, normalised and sorted (their order does not matter)."""
    return sorted({r for r in map(parse_entry, entries) if isinstance(r, Range)})


def group_for(found: Iterable[Range]) -> int:
    """The interface group of the instances whose allow-list has these ranges: the same ranges give the
    same number on every server of the host (the set is shared), 0 (no group) for none. A 31-bit hash:
    two different allow-lists sharing one would each reach the other's ranges, which the deployer of
    either could have asked for anyway."""
    text = ",".join(f"{r.network}:{r.ports[0]}-{r.ports[1]}" for r in sorted(set(found)))
    if not text:
        return 0
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big") % (2**31 - 1) + 1


def elements(group: int, found: Iterable[Range]) -> str:
    """The nft lines adding a group's ranges to the set (idempotent: an element added twice stays one)."""
    items = ", ".join(r.element(group) for r in found)
    return f"add element inet {TABLE} allowed {{ {items} }}\n" if items else ""


def resolve_allow(entries: Iterable[str]) -> list[str]:
    """Each `HOST:PORT` entry as `IP:PORT` (names resolved now, every IPv4 address they have); unresolvable names are
    left out (the function then cannot reach them, as it could not resolve them either)."""
    import socket

    out: list[str] = []
    for entry in entries:
        parsed = parse_entry(entry)
        if isinstance(parsed, Range):  # routed, not relayed
            continue
        host, port = parsed
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


def plan(own_networks: Iterable[str], dns: Iterable[str], control: Iterable[str] = ()) -> str:
    """The nftables script. Idempotent, and additive where servers differ: the chains are created if missing,
    flushed and refilled with the same rules; the refused addresses are named sets every server *adds* its
    own networks and endpoints to (never removes), so a server starting later cannot reopen what another
    one refused. `control`: the node's own endpoints (/32s), refused even where an allow-list range covers
    them; allow-list ranges are elements of the set `allowed` (`elements`), added by the servers too."""
    iif = f'iifname "{HOST_PREFIX}*"'
    dns = sorted(set(dns))
    control = sorted(set(control))
    dns_rules = ""
    if dns:
        servers = ", ".join(dns)
        dns_rules = (f"    {iif} ip daddr {{ {servers} }} udp dport 53 accept\n"
                     f"    {iif} ip daddr {{ {servers} }} tcp dport 53 accept\n")
    blocked = ", ".join(refused([*own_networks, *control]))
    return (
        f"add table inet {TABLE}\n"
        f"add set inet {TABLE} refused {{ type ipv4_addr; flags interval; auto-merge; }}\n"
        f"add element inet {TABLE} refused {{ {blocked} }}\n"
        f"add set inet {TABLE} control {{ type ipv4_addr; flags interval; auto-merge; }}\n"
        + (f"add element inet {TABLE} control {{ {', '.join(control)} }}\n" if control else "")
        + f"add set inet {TABLE} allowed {{ typeof iifgroup . ip daddr . th dport; flags interval; }}\n"
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
        f"    {iif} ip daddr @control reject with icmpx type admin-prohibited\n"
        f"    {iif} meta l4proto {{ tcp, udp }} iifgroup . ip daddr . th dport @allowed accept\n"
        f"{dns_rules}"
        f"    {iif} ip daddr @refused reject with icmpx type admin-prohibited\n"
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


def ruleset(control_plane: Iterable[str] = ()) -> str:
    """The script for this host: its networks, its resolvers, `control_plane` (URLs of the node's own
    services: PostgreSQL, NATS, upstream S3 …) refused before any allow-list range."""
    with open("/etc/resolv.conf") as f:
        return plan(own_networks(), resolvers(f.read()), endpoint_addresses(control_plane))


def apply(script: str) -> str:
    """Run an nft script (one transaction: all of it or nothing). Returns "" or why it failed."""
    try:
        subprocess.run([shutil.which("nft") or "nft", "-f", "-"], input=script, capture_output=True, text=True,
                       timeout=30, check=True)
    except subprocess.CalledProcessError as e:
        return f"nft refused the ruleset: {(e.stderr or '').strip()[:300]}"
    except (OSError, subprocess.SubprocessError) as e:
        return f"cannot install the egress rules: {e}"
    return ""


def install(script: str) -> str:
    """Apply the ruleset (`ruleset()`) and enable forwarding. Returns "" or why it failed (egress then
    stays off)."""
    why = unavailable() or apply(script)
    if why:
        return why
    try:
        with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
            f.write("1")
    except OSError as e:
        return f"cannot enable forwarding: {e}"
    return ""
