"""IP addresses as the service reads them."""

from __future__ import annotations

import ipaddress

IP = ipaddress.IPv4Address | ipaddress.IPv6Address


def ip_address(text: str) -> IP:
    """`ipaddress.ip_address`, with an IPv4-mapped IPv6 address (a dual-stack socket's IPv4
    client, `::ffff:203.0.113.7`) read as the IPv4 address it is. ValueError if it is none."""
    ip = ipaddress.ip_address(text)
    return (ip.ipv4_mapped or ip) if isinstance(ip, ipaddress.IPv6Address) else ip
