//! The SSRF guard: which addresses outbound deliveries may connect to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Refuses private, loopback, link-local, CGNAT, unique-local, multicast and
/// reserved addresses (also when wrapped in IPv4-mapped, NAT64 or 6to4 IPv6),
/// except those on the allow-list.
///
/// It is applied to the address the connector actually dials, after DNS, so
/// a public name resolving to 127.0.0.1 is refused too and a rebinding DNS
/// server cannot slip a second answer past it.
///
/// ```
/// use webhook_armor::deliver::SsrfPolicy;
///
/// let policy = SsrfPolicy::default();
/// assert!(!policy.permits("169.254.169.254".parse().unwrap()));
/// assert!(policy.permits("93.184.216.34".parse().unwrap()));
/// let local = SsrfPolicy::default().allow("127.0.0.1/32").unwrap();
/// assert!(local.permits("127.0.0.1".parse().unwrap()));
/// ```
#[derive(Debug, Clone, Default)]
pub struct SsrfPolicy {
    allowed: Vec<(IpAddr, u8)>,
}

impl SsrfPolicy {
    /// Also permits the network `cidr` (`127.0.0.1/32`, `::1/128`, `10.0.0.0/8`).
    pub fn allow(mut self, cidr: &str) -> Result<Self, String> {
        let (address, bits) = cidr.split_once('/').unwrap_or((cidr, ""));
        let address: IpAddr = address
            .parse()
            .map_err(|_| format!("bad address in {cidr:?}"))?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let bits = if bits.is_empty() {
            max
        } else {
            bits.parse()
                .map_err(|_| format!("bad prefix in {cidr:?}"))?
        };
        if bits > max {
            return Err(format!("prefix longer than the address in {cidr:?}"));
        }
        self.allowed.push((address, bits));
        Ok(self)
    }

    /// Whether a connection to `address` is allowed.
    pub fn permits(&self, address: IpAddr) -> bool {
        self.allowed
            .iter()
            .any(|(network, bits)| in_network(address, *network, *bits))
            || is_public(address)
    }
}

fn in_network(address: IpAddr, network: IpAddr, bits: u8) -> bool {
    match (address, network) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

fn is_public(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64.0.0/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    // IPv6 forms that carry an IPv4 address are judged by that address.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let segments = ip.segments();
    if segments[0] == 0x0064 && segments[1] == 0xff9b && segments[2..6] == [0, 0, 0, 0] {
        let [.., hi, lo] = segments;
        return is_public_v4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo))); // NAT64
    }
    if segments[0] == 0x2002 {
        return is_public_v4(Ipv4Addr::from(
            (u32::from(segments[1]) << 16) | u32::from(segments[2]),
        )); // 6to4
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (segments[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (segments[0] & 0xffc0) == 0xfe80 // link local fe80::/10
        || (segments[0] & 0xffc0) == 0xfec0 // site local (deprecated)
        || segments[..6] == [0, 0, 0, 0, 0, 0] // IPv4-compatible ::a.b.c.d
        || (segments[0] == 0x2001 && segments[1] == 0x0db8)) // documentation
}

#[cfg(test)]
mod tests {
    use super::*;

    fn permitted(text: &str) -> bool {
        SsrfPolicy::default().permits(text.parse().unwrap())
    }

    #[test]
    fn refuses_every_internal_range() {
        for address in [
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "127.0.0.1",
            "127.255.0.9",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "2002:a00:1::1",
            "::127.0.0.1",
        ] {
            assert!(!permitted(address), "{address} must be refused");
        }
    }

    #[test]
    fn permits_public_addresses() {
        for address in [
            "93.184.216.34",
            "1.1.1.1",
            "100.128.0.1",
            "2606:4700:4700::1111",
            "::ffff:93.184.216.34",
        ] {
            assert!(permitted(address), "{address} must be permitted");
        }
    }

    #[test]
    fn the_allow_list_opens_exactly_its_networks() {
        let policy = SsrfPolicy::default()
            .allow("127.0.0.1/32")
            .unwrap()
            .allow("10.1.0.0/16")
            .unwrap();
        assert!(policy.permits("127.0.0.1".parse().unwrap()));
        assert!(!policy.permits("127.0.0.2".parse().unwrap()));
        assert!(policy.permits("10.1.200.3".parse().unwrap()));
        assert!(!policy.permits("10.2.0.1".parse().unwrap()));
        assert!(!policy.permits("::1".parse().unwrap()));
        assert!(SsrfPolicy::default().allow("127.0.0.1/33").is_err());
        assert!(SsrfPolicy::default().allow("nonsense").is_err());
    }
}
