//! Syntax predicates for the spec's strings: DNS labels, port names, quantities, environment
//! variable names, image tags, digests, repositories, scanner check IDs.
//!
//! Plain functions of one string, so validation reads as a list of rules and each predicate is
//! tested on its own.

/// DNS-1123 label: lowercase alphanumerics and `-`, starting and ending alphanumeric, ≤ 63.
pub fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// DNS-1123 subdomain (what most object names are): dot-separated labels, ≤ 253.
pub fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns_label)
}

/// A key of a Secret or ConfigMap: `[-._a-zA-Z0-9]+`, at most 253 characters.
pub fn is_secret_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// IANA service name, what a named container port must be: ≤ 15 chars, one letter at least.
pub fn is_port_name(name: &str) -> bool {
    is_dns_label(name)
        && name.len() <= 15
        && name.bytes().any(|b| b.is_ascii_lowercase())
        && !name.contains("--")
}

/// A Kubernetes quantity such as `500m`, `1.5`, `128Mi`, `1e3`.
pub fn is_quantity(q: &str) -> bool {
    let unsigned = q.strip_prefix(['+', '-']).unwrap_or(q);
    let digits_end = unsigned
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(digits_end);
    let number_ok = !number.is_empty() && number != "." && number.matches('.').count() <= 1;
    let suffix_ok = matches!(
        suffix,
        "" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" | "m" | "k" | "M" | "G" | "T" | "P" | "E"
    ) || suffix
        .strip_prefix(['e', 'E'])
        .map(|exp| exp.strip_prefix(['+', '-']).unwrap_or(exp))
        .is_some_and(|exp| !exp.is_empty() && exp.bytes().all(|b| b.is_ascii_digit()));
    number_ok && suffix_ok
}

/// A quantity's value in thousandths of its unit (CPU in millicores, memory in milli-bytes),
/// exactly, for the sizes a spec uses; `None` if it is not a quantity or does not fit.
pub fn milli_units(q: &str) -> Option<u128> {
    if !is_quantity(q) || q.starts_with('-') {
        return None;
    }
    let q = q.trim_start_matches('+');
    let digits_end = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(digits_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    // Scale to thousandths, then by the suffix; a fraction finer than 1/1000 of a unit is
    // rounded up, as the API server does.
    let mut milli: u128 = whole.parse::<u128>().unwrap_or(0).checked_mul(1000)?;
    let digits: String = fraction.chars().chain("000".chars()).take(3).collect();
    milli += digits.parse::<u128>().ok()?;
    if fraction.len() > 3 && fraction[3..].bytes().any(|b| b != b'0') {
        milli += 1;
    }
    let factor: u128 = match suffix {
        "" => 1,
        "m" => return Some(milli.div_ceil(1000)),
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        exponent => {
            let e: u32 = exponent.trim_start_matches(['e', 'E']).parse().ok()?;
            10u128.checked_pow(e)?
        }
    };
    milli.checked_mul(factor)
}

pub fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// An OCI tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn is_tag(tag: &str) -> bool {
    let mut bytes = tag.bytes();
    tag.len() <= 128
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

pub fn is_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// An image repository path: lowercase components separated by `/`.
pub fn is_repository(path: &str) -> bool {
    !path.is_empty()
        && path.split('/').all(|part| {
            !part.is_empty()
                && part.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                })
        })
}

/// An OCI repository with its registry: `host[:port]/path`, the host a DNS name with a dot or
/// `localhost`, or an IPv4 address; the path [`is_repository`]. No scheme, tag or digest.
pub fn is_registry_repository(reference: &str) -> bool {
    let Some((host, path)) = reference.split_once('/') else {
        return false;
    };
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.parse::<u16>().is_ok());
    let name_ok = name == "localhost"
        || name.parse::<std::net::Ipv4Addr>().is_ok()
        || (name.contains('.') && is_dns_subdomain(name));
    port_ok && name_ok && is_repository(path)
}

/// A checkov check ID: `CKV_` or `CKV2_` then uppercase letters, digits and `_`.
pub fn is_scanner_check(check: &str) -> bool {
    ["CKV_", "CKV2_"].iter().any(|prefix| {
        check.strip_prefix(prefix).is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_convert_to_thousandths_exactly() {
        assert_eq!(milli_units("500m"), Some(500));
        assert_eq!(milli_units("2"), Some(2000));
        assert_eq!(milli_units("0.5"), Some(500));
        assert_eq!(milli_units("1.5Gi"), Some(1536 * 1024 * 1024 * 1000));
        assert_eq!(milli_units("128Mi"), Some(128 * 1024 * 1024 * 1000));
        assert_eq!(milli_units("1e3"), Some(1_000_000));
        assert_eq!(
            milli_units("0.0001"),
            Some(1),
            "rounded up, as the API server does"
        );
        assert_eq!(milli_units("-1"), None);
        assert_eq!(milli_units("lots"), None);
    }

    #[test]
    fn artifact_repositories_name_a_registry_host_and_a_lowercase_path() {
        for good in [
            "ghcr.io/billing-platform/manifests",
            "127.0.0.1:5000/billing/manifests",
            "localhost:5000/m",
            "registry.example.com:443/a/b-c_d.e",
        ] {
            assert!(is_registry_repository(good), "{good}");
        }
        for bad in [
            "manifests",
            "ghcr.io",
            "oci://ghcr.io/a",
            "ghcr/a",
            "ghcr.io/A",
            "ghcr.io/a:latest",
            "ghcr.io:/a",
            "ghcr.io:99999/a",
            "ghcr.io/a//b",
        ] {
            assert!(!is_registry_repository(bad), "{bad}");
        }
    }

    #[test]
    fn secret_names_and_keys_follow_the_api() {
        assert!(is_dns_subdomain("db.credentials"));
        assert!(!is_dns_subdomain("Db"));
        assert!(is_secret_key("password.txt"));
        assert!(!is_secret_key("a/b"));
    }
}
