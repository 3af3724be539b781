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
    assert egress.resolve_allow(["127.0.0.1:5432", "localhost:6379", "no-such-host.invalid:1", "10.0.0.0/8"]) == [
        "127.0.0.1:5432", "127.0.0.1:6379"]


@pytest.mark.parametrize(("entry", "parsed"), [
    ("10.1.2.0/24", egress.Range("10.1.2.0/24", (0, 65535))),
    ("10.1.2.0/24:5432", egress.Range("10.1.2.0/24", (5432, 5432))),
    (" 192.168.7.0/24:5000-5100", egress.Range("192.168.7.0/24", (5000, 5100))),
    ("10.9.9.9/32:1", egress.Range("10.9.9.9/32", (1, 1))),
    ("100.64.0.0/10:80", egress.Range("100.64.0.0/10", (80, 80))),
])
def test_cidr_entries(entry: str, parsed: egress.Range) -> None:
    assert egress.parse_entry(entry) == parsed


@pytest.mark.parametrize(("entry", "why"), [
    ("10.1.2.5/24:5432", "write 10.1.2.0/24 for the network, or 10.1.2.5/32"),
    ("10.1.2.0/33", "not an IPv4 network"),
    ("10.1.2.0/24:0", "out of range"),
    ("10.1.2.0/24:70000", "out of range"),
    ("10.1.2.0/24:6000-5000", "LOW <= HIGH"),
    ("10.1.2.0/24:http", "PORT or LOW-HIGH"),
    ("10.1.2.0/24:1-", "PORT or LOW-HIGH"),
    ("fd00::/8", "not an IPv4 network"),
    ("0.0.0.0/0", "overlaps 0.0.0.0/8"),
    ("127.0.0.0/8:5432", "a service on the node's loopback is a HOST:PORT entry"),
    ("127.0.0.1/32", "loopback"),
    ("169.254.169.254/32:80", "cloud metadata"),
    ("169.254.169.254:80", "cloud metadata"),
    ("224.0.0.0/8", "multicast"),
    ("240.0.0.0/5", "reserved"),
    ("128.0.0.0/1", "link-local"),
])
def test_bad_cidr_entries_say_why(entry: str, why: str) -> None:
    with pytest.raises(ValueError, match="allow_net entry") as e:
        egress.parse_entry(entry)
    assert why in str(e.value)


def test_ranges_group_and_set_elements() -> None:
    entries = ["127.0.0.1:5432", "10.1.2.0/24:5432", "10.8.0.0/16", "10.1.2.0/24:5432"]
    found = egress.ranges(entries)
    assert found == [egress.Range("10.1.2.0/24", (5432, 5432)), egress.Range("10.8.0.0/16", (0, 65535))]
    group = egress.group_for(found)
    assert 0 < group < 2**31
    assert group == egress.group_for(reversed(found))  # order does not matter
    assert group != egress.group_for(found[:1])
    assert egress.group_for([]) == 0
    assert egress.elements(group, found) == (
        f"add element inet polyfn allowed {{ {group} . 10.1.2.0/24 . 5432, {group} . 10.8.0.0/16 . 0-65535 }}\n")
    assert egress.elements(group, []) == ""


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
    assert script.index("udp dport 53 accept") < script.index("@refused reject")  # DNS before the refusal
    assert "add element inet polyfn refused {" in script and "192.0.2.0/24" in script
    assert "flush set" not in script  # servers add to the refused set, never shrink it
    assert 'ip saddr 100.64.0.0/10 oifname != "pf*" masquerade' in script


def test_allow_list_ranges_come_after_the_control_plane_and_before_the_refusals() -> None:
    script = egress.plan(["192.0.2.0/24"], ["10.255.255.53"], ["10.7.0.5/32"])
    assert "add element inet polyfn control { 10.7.0.5/32 }" in script
    control, allowed, refused = (script.index(x) for x in ("@control reject", "@allowed accept", "@refused reject"))
    assert control < allowed < refused
    assert "iifgroup . ip daddr . th dport @allowed" in script
    assert "flush set" not in script
    assert "add element inet polyfn control" not in egress.plan([], [])  # no empty element list


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft"), reason="nft -c needs root and the nft tool")
def test_nft_accepts_the_script() -> None:
    script = egress.plan(egress.own_networks(), ["10.255.255.53"], ["10.7.0.5/32"])
    found = egress.ranges(["10.1.2.0/24:5432", "10.8.0.0/16"])
    script += egress.elements(egress.group_for(found), found)
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
