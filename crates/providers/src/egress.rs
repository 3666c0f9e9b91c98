//! The egress guard: mail servers named by API users must be public hosts unless the
//! operator allows private ranges. We resolve once, vet every address, then connect to a
//! vetted address (so a DNS answer cannot change between the check and the connection).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::failure::{MailError, Protocol};

/// Whether `ip` is a public unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let seg = ip.segments();
    let embedded =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    // Addresses that carry an IPv4 address inside: judge the IPv4 one.
    if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6] == [0, 0, 0, 0] {
        return is_public_v4(embedded(seg[6], seg[7])); // NAT64 64:ff9b::/96
    }
    if seg[0] == 0x2002 {
        return is_public_v4(embedded(seg[1], seg[2])); // 6to4 2002::/16
    }
    if seg[..6] == [0, 0, 0, 0, 0, 0] {
        return is_public_v4(embedded(seg[6], seg[7])); // IPv4-compatible ::/96 (and ::, ::1)
    }
    let first = seg[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || first == 0x2001 && ip.segments()[1] == 0x0db8) // documentation
}

/// Resolves `host:port` and returns the addresses to connect to, refusing non-public ones
/// unless `allow_private`.
pub async fn resolve(
    protocol: Protocol,
    host: &str,
    port: u16,
    allow_private: bool,
    timeout: Duration,
) -> Result<Vec<SocketAddr>, MailError> {
    let lookup = tokio::net::lookup_host((host, port));
    let addrs: Vec<SocketAddr> = match tokio::time::timeout(timeout, lookup).await {
        Ok(Ok(addrs)) => addrs.collect(),
        Ok(Err(e)) => {
            return Err(MailError::unreachable(
                protocol,
                format!("cannot resolve {host}: {e}"),
            ));
        }
        Err(_) => {
            return Err(MailError::unreachable(
                protocol,
                format!("resolving {host} timed out"),
            ));
        }
    };
    if addrs.is_empty() {
        return Err(MailError::unreachable(
            protocol,
            format!("{host} has no address"),
        ));
    }
    if !allow_private && let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
        return Err(MailError::host_refused(
            protocol,
            format!(
                "{host} resolves to the non-public address {}; the operator can allow private \
                 networks with MAILROOM_MAIL_ALLOW_PRIVATE=true",
                bad.ip()
            ),
        ));
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges_are_not_public() {
        for s in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "64:ff9b::7f00:1",
            "2002:a00:1::1",
            "::127.0.0.1",
            "224.0.0.1",
        ] {
            assert!(!is_public(s.parse().unwrap()), "{s}");
        }
        for s in [
            "93.184.216.34",
            "2606:4700::1111",
            "8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(is_public(s.parse().unwrap()), "{s}");
        }
    }

    #[tokio::test]
    async fn loopback_is_refused_unless_allowed() {
        let t = Duration::from_secs(5);
        let err = resolve(Protocol::Imap, "127.0.0.1", 993, false, t)
            .await
            .unwrap_err();
        assert_eq!(
            err.kind,
            crate::FailureKind::Rejected(mailroom_core::ErrorKind::InvalidAccount),
            "{err}"
        );
        assert!(err.detail().contains("MAILROOM_MAIL_ALLOW_PRIVATE"));
        let ok = resolve(Protocol::Imap, "localhost", 993, true, t)
            .await
            .unwrap();
        assert!(ok.iter().all(|a| a.ip().is_loopback()));
    }
}
