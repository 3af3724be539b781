"""The default network's policy as data (sandbox/egress.py) and the veth addressing (sandbox/veth.py)."""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess

import pytest

from polyfn.sandbox import egress, veth


@pytest.mark.parametrize(("entry", "parsed"), [
    ("127.0.0.1:5432", ("127.0.0.1", 5432)),
    ("db.internal:6379", ("db.internal", 6379)),
    ("10.0.0.5:1", ("10.0.0.5", 1)),
])
def test_allow_entries(entry: str, parsed: tuple[str, int]) -> None:
    assert egress.parse_allow(entry) == parsed


@pytest.mark.parametrize("entry", ["5432", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", ":80", "bad host:80",
                                   "a..b:80", "[::1]:80"])
def test_bad_allow_entries_say_why(entry: str) -> None:
    with pytest.raises(ValueError, match="allow_net entry"):
        egress.parse_allow(entry)


def test_resolve_keeps_literals_and_drops_unknown_names() -> None:
    assert egress.resolve_allow(["127.0.0.1:5432", "localhost:6379", "no-such-host.invalid:1"]) == [
        "127.0.0.1:5432", "127.0.0.1:6379"]


def test_resolvers_skip_loopback_and_ipv6() -> None:
    text = "# x\nnameserver 10.255.255.53\nnameserver 127.0.0.53\nnameserver ::1\nsearch example\n"
    assert egress.resolvers(text) == ["10.255.255.53"]


def test_refused_ranges_cover_metadata_private_and_own_networks() -> None:
    nets = [ipaddress.IPv4Network(n) for n in egress.refused(["192.0.2.0/24", "203.0.113.9/32"])]
    for addr in ("127.0.0.1", "10.1.2.3", "172.20.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.5",
                 "192.0.2.77", "203.0.113.9", "224.0.0.1", "255.255.255.255"):
        assert any(ipaddress.IPv4Address(addr) in n for n in nets), addr
    for addr in ("198.51.100.2", "203.0.113.10", "8.8.8.8"):
        assert not any(ipaddress.IPv4Address(addr) in n for n in nets), addr


def test_plan_refuses_the_host_and_allows_dns() -> None:
    script = egress.plan(["192.0.2.0/24"], ["10.255.255.53"])
    assert 'chain input {\n    iifname "pf*" reject' in script
    assert "ip daddr { 10.255.255.53 } udp dport 53 accept" in script
    assert script.index("udp dport 53 accept") < script.index("192.0.2.0/24")  # DNS before the refusal
    assert 'ip saddr 100.64.0.0/10 oifname != "pf*" masquerade' in script


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft"), reason="nft -c needs root and the nft tool")
def test_nft_accepts_the_script() -> None:
    script = egress.plan(egress.own_networks(), ["10.255.255.53"])
    r = subprocess.run(["nft", "-c", "-f", "-"], input=script, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_endpoint_addresses_of_the_control_plane() -> None:
    urls = ["postgresql+asyncpg://u:p@127.0.0.1:5432/db", "nats://localhost:4222,nats://10.1.2.3:4222",
            "http://198.51.100.7:9000", "s3-host-that-does-not-resolve.invalid:9000"]
    assert egress.endpoint_addresses(urls) == ["10.1.2.3/32", "127.0.0.1/32", "198.51.100.7/32"]


def test_veth_addresses_are_a_slash_31_in_the_shared_pool() -> None:
    host, inst = veth.addresses(4242)
    assert ipaddress.IPv4Address(inst) == ipaddress.IPv4Address(host) + 1
    assert int(ipaddress.IPv4Address(host)) % 2 == 0
    assert ipaddress.IPv4Address(host) in veth.POOL and ipaddress.IPv4Address(inst) in veth.POOL
    assert veth.addresses(4242) != veth.addresses(4243)
    assert len(veth.host_ifname(4_194_304)) <= 15  # IFNAMSIZ - 1, for the largest pid
