"""The instance's way out for `network: egress`: a veth pair between its network namespace and the host's.

Made with a few rtnetlink messages from the child (root, before the uid drop; no `ip` process, ~0.3 ms):
the host end `pf<host pid>` and the instance's `eth0` get the two addresses of a /31 out of 100.64.0.0/10
(derived from the host pid, which is unique on the host while the instance lives), and the instance's default
route points at the host end. What may leave through it is the host's nftables table `inet polyfn`
(sandbox/egress.py): NAT to the outside, refusal of the host itself and of loopback, link-local, private and
the node's own networks. The pair disappears with the namespace: nothing to clean up after a crash.

A function with CIDR entries in its allow-list has its host end in an *interface group* (`group`): the
nftables set `allowed` is keyed by it (sandbox/egress.py). The group is set here, as root before any
user code; the instance cannot change it (the host end lives in the host's namespace).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import struct
from collections.abc import Iterator

from polyfn.sandbox import linux

POOL = ipaddress.IPv4Network("100.64.0.0/10")
_POOL_BASE, _POOL_PAIRS = int(POOL.network_address), POOL.num_addresses // 2  # (plain ints for the blanks)
HOST_PREFIX = "pf"

RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR, RTM_NEWROUTE = 16, 17, 20, 24
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 1, 4, 0x200, 0x400
NLMSG_ERROR = 2
IFLA_IFNAME, IFLA_LINKINFO, IFLA_GROUP, IFLA_NET_NS_FD = 3, 18, 27, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_GATEWAY, RTA_OIF = 5, 4
IFF_UP = 1


def addresses(host_pid: int) -> tuple[str, str]:
    """(host end, instance end) of the instance's /31."""
    base = _POOL_BASE + 2 * (host_pid % _POOL_PAIRS)
    return socket.inet_ntoa(base.to_bytes(4, "big")), socket.inet_ntoa((base + 1).to_bytes(4, "big"))


def host_ifname(host_pid: int) -> str:
    return f"{HOST_PREFIX}{host_pid}"


def _attr(kind: int, data: bytes) -> bytes:
    size = 4 + len(data)
    return struct.pack("=HH", size, kind) + data + b"\0" * ((4 - size % 4) % 4)


def _ifinfo(index: int = 0, flags: int = 0, change: int = 0) -> bytes:
    return struct.pack("=BxHiII", socket.AF_UNSPEC, 0, index, flags, change)


class _Netlink:
    """One rtnetlink socket in the current network namespace; every request waits for its ack."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)  # NETLINK_ROUTE
        self.sock.bind((0, 0))
        self.seq = 0

    def request(self, kind: int, flags: int, body: bytes) -> None:
        self.seq += 1
        msg = struct.pack("=IHHII", 16 + len(body), kind, NLM_F_REQUEST | NLM_F_ACK | flags, self.seq, 0) + body
        self.sock.send(msg)
        while True:
            data = self.sock.recv(65536)
            off = 0
            while off + 16 <= len(data):
                length, mtype, _, seq, _ = struct.unpack_from("=IHHII", data, off)
                if mtype == NLMSG_ERROR and seq == self.seq:
                    err = -struct.unpack_from("=i", data, off + 16)[0]
                    if err:
                        raise OSError(err, f"rtnetlink {kind}: {os.strerror(err)}")
                    return
                off += max(length, 16)

    def close(self) -> None:
        self.sock.close()


def _link_up(nl: _Netlink, name: str) -> None:
    nl.request(RTM_NEWLINK, 0, _ifinfo(socket.if_nametoindex(name), IFF_UP, IFF_UP))


def _address(nl: _Netlink, name: str, local: str, prefix: int) -> None:
    body = struct.pack("=BBBBI", socket.AF_INET, prefix, 0, 0, socket.if_nametoindex(name))
    raw = socket.inet_aton(local)
    nl.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body + _attr(IFA_LOCAL, raw) + _attr(IFA_ADDRESS, raw))


def add_local_address(address: str) -> None:
    """Make `address` local to this namespace (on lo), so a relay listener can bind it (sandbox/relay.py)."""
    nl = _Netlink()
    try:
        _address(nl, "lo", address, 32)
    except FileExistsError:
        pass
    finally:
        nl.close()


def remove() -> None:
    """Delete the instance's end (which deletes the pair): for a function that is not `egress`."""
    nl = _Netlink()
    try:
        nl.request(RTM_DELLINK, 0, _ifinfo(socket.if_nametoindex("eth0")))
    finally:
        nl.close()


@contextlib.contextmanager
def _host_side(host_netns_fd: int) -> Iterator[tuple[_Netlink, int]]:
    """An rtnetlink socket in the host's network namespace and a descriptor of our own; back in our own after."""
    own = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        linux.setns(host_netns_fd, linux.CLONE_NEWNET)
        try:
            nl = _Netlink()
            try:
                yield nl, own
            finally:
                nl.close()
        finally:
            linux.setns(own, linux.CLONE_NEWNET)
    finally:
        os.close(own)


def set_group(host_netns_fd: int, host_pid: int, group: int) -> None:
    """Put the host end of this instance's pair (made earlier, by a pre-forked blank) in `group`."""
    with _host_side(host_netns_fd) as (nl, _):
        nl.request(RTM_NEWLINK, 0, _ifinfo(socket.if_nametoindex(host_ifname(host_pid)))
                   + _attr(IFLA_GROUP, struct.pack("=I", group)))


def connect(host_netns_fd: int, host_pid: int, group: int = 0) -> str:
    """In the instance's fresh network namespace, holding a descriptor of the host's: create the pair
    (the host end in interface group `group`), address both ends, route the instance's traffic to the
    host end. Returns the instance's address."""
    host_addr, inst_addr = addresses(host_pid)
    name = host_ifname(host_pid)
    with _host_side(host_netns_fd) as (nl, own):
        peer = _ifinfo() + _attr(IFLA_IFNAME, b"eth0\0") + _attr(IFLA_NET_NS_FD, struct.pack("=I", own))
        info = _attr(IFLA_INFO_KIND, b"veth\0") + _attr(IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer))
        grouped = _attr(IFLA_GROUP, struct.pack("=I", group)) if group else b""
        nl.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL,
                   _ifinfo() + _attr(IFLA_IFNAME, name.encode() + b"\0") + grouped + _attr(IFLA_LINKINFO, info))
        _address(nl, name, host_addr, 31)
        _link_up(nl, name)
    nl = _Netlink()
    try:
        _address(nl, "eth0", inst_addr, 31)
        _link_up(nl, "eth0")
        route = struct.pack("=BBBBBBBBI", socket.AF_INET, 0, 0, 0, 254, 3, 0, 1, 0)  # main, boot, universe, unicast
        nl.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, route + _attr(RTA_GATEWAY, socket.inet_aton(host_addr))
                   + _attr(RTA_OIF, struct.pack("=I", socket.if_nametoindex("eth0"))))
    finally:
        nl.close()
    return inst_addr
