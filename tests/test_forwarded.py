"""Issue 11.3: the client address comes from X-Forwarded-For only when the TCP peer is a
configured trusted proxy (default: none)."""

from __future__ import annotations

import pytest

from portal.config import Settings, parse_networks
from portal.forwarded import client_address, client_key

PROXIES = parse_networks("10.0.0.1, 172.16.0.0/12, ::1")


@pytest.mark.parametrize(
    "peer,forwarded,expected",
    [
        # No proxy in between: the peer is the client, whatever the header says.
        ("198.51.100.7", ["203.0.113.1"], "198.51.100.7"),
        # Behind the proxy: the address the proxy appended.
        ("10.0.0.1", ["203.0.113.1"], "203.0.113.1"),
        # The client wrote its own header: only the right-most untrusted entry counts.
        ("10.0.0.1", ["1.2.3.4, 203.0.113.1"], "203.0.113.1"),
        ("10.0.0.1", ["1.2.3.4", "203.0.113.1"], "203.0.113.1"),
        # Two trusted proxies in a row (an edge proxy, then ours).
        ("10.0.0.1", ["6.6.6.6, 203.0.113.1, 172.16.4.2"], "203.0.113.1"),
        # Garbage where the proxy should have written an address: keep the proxy.
        ("10.0.0.1", ["not-an-address"], "10.0.0.1"),
        ("10.0.0.1", [], "10.0.0.1"),
        ("::1", ["2001:db8::5"], "2001:db8::5"),
        ("::ffff:10.0.0.1", ["203.0.113.9"], "203.0.113.9"),
    ],
)
def test_the_client_behind_trusted_proxies(peer, forwarded, expected):
    assert client_address(peer, forwarded, PROXIES) == expected


def test_no_proxy_is_trusted_by_default():
    assert Settings.from_env({"PORTAL_SECRET_KEY": "k"}).trusted_proxies == ()
    assert client_address("10.0.0.1", ["203.0.113.1"], ()) == "10.0.0.1"


def test_trusted_proxies_from_the_environment():
    settings = Settings.from_env(
        {"PORTAL_SECRET_KEY": "k", "PORTAL_TRUSTED_PROXIES": "10.0.0.1, 172.16.0.0/12"}
    )
    assert [str(n) for n in settings.trusted_proxies] == ["10.0.0.1/32", "172.16.0.0/12"]
    with pytest.raises(ValueError, match="'proxy.example' is not an IP address"):
        Settings.from_env({"PORTAL_SECRET_KEY": "k", "PORTAL_TRUSTED_PROXIES": "proxy.example"})


def test_an_ipv6_client_counts_as_its_slash_64():
    assert (
        client_key("2001:db8:1:2:aaaa::1")
        == client_key("2001:db8:1:2:bbbb::9")
        == "2001:db8:1:2::/64"
    )
    assert client_key("203.0.113.1") == "203.0.113.1"
