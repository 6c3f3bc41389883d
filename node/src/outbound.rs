//! Calls this process makes to URLs someone else chose (lane callbacks) and the CLI's
//! calls to a server: TLS through rustls on the ring provider (no second crypto
//! stack), the platform's roots plus any given, and for callbacks an address policy —
//! a URL that names or resolves to a loopback, private, link-local or multicast
//! address is refused unless its host is allowlisted. The check runs in the resolver
//! the connection itself uses, so a name that changes its answer after the lane was
//! created (DNS rebinding) is caught at delivery time. Redirects are never followed.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// TLS for outbound calls: ring, TLS 1.2/1.3, platform roots plus `extra_roots`.
pub fn tls_config(extra_roots: &[CertificateDer<'static>]) -> anyhow::Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra_roots.iter().cloned(), provider.clone())
            .context("loading trusted roots")?;
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

/// The certificates of a PEM file (extra roots to trust).
pub fn read_roots(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing certificates in {}", path.display()))
}

/// The CLI's client: TLS as above, no redirects.
pub fn api_client(extra_roots: &[CertificateDer<'static>]) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls_config(extra_roots)?)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("building the HTTP client")
}

/// Which hosts a callback may reach beyond the public internet.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    /// Hosts (names or addresses, as written in URLs) allowed to be internal.
    pub allow_hosts: Vec<String>,
}

/// An address on the public internet: not loopback, private, link-local, multicast,
/// shared (CGNAT), documentation, unspecified or broadcast.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19)))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public(IpAddr::V4(v4)),
            None => {
                let first = v6.segments()[0];
                !(v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || (first & 0xfe00) == 0xfc00
                    || (first & 0xffc0) == 0xfe80)
            }
        },
    }
}

/// The callback URLs a lane may name: http(s), a host name (its last label starting
/// with a letter) or an IPv4 address, an optional port, any path. Checked by
/// [`is_callback_url`] before the address policy looks at where the host points.
pub const CALLBACK_URL_PATTERN: &str = concat!(
    "^https?://",
    "(?:(?:[A-Za-z0-9-]+\\.)*[A-Za-z][A-Za-z0-9-]*",
    "|(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9]))",
    "(?::(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}|0))?",
    "(?:[/?#][!-~]*)?$",
);

/// Whether `url` matches [`CALLBACK_URL_PATTERN`].
pub fn is_callback_url(url: &str) -> bool {
    static PATTERN: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(CALLBACK_URL_PATTERN).expect("the pattern compiles"));
    PATTERN.is_match(url)
}

impl AddressPolicy {
    fn allowed(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.allow_hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    }

    /// Parses a callback URL and refuses one that names an internal address outright.
    pub fn check_url(&self, url: &str) -> Result<reqwest::Url, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("callback_url is not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err("callback_url must be an http(s) URL".into());
        }
        let host = parsed.host_str().ok_or("callback_url has no host")?.to_owned();
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err("callback_url must not carry credentials".into());
        }
        let literal = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().ok();
        if let Some(ip) = literal
            && !is_public(ip)
            && !self.allowed(&host)
        {
            return Err(format!("callback_url points at {ip}, an internal address (not allowlisted)"));
        }
        Ok(parsed)
    }

    /// Refuses a URL whose host resolves to an internal address (at lane creation).
    pub async fn check_resolves(&self, url: &str) -> Result<(), String> {
        let parsed = self.check_url(url)?;
        let host = parsed.host_str().unwrap_or_default().to_owned();
        if self.allowed(&host) || host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_ok() {
            return Ok(());
        }
        resolve_public(&host).await.map(|_| ())
    }
}

/// Resolves `host`, refusing it when any answer is internal (a mixed answer could be
/// used to reach the internal one).
async fn resolve_public(host: &str) -> Result<Vec<SocketAddr>, String> {
    let lookup = tokio::time::timeout(Duration::from_secs(5), tokio::net::lookup_host((host, 0)));
    let addrs: Vec<SocketAddr> = match lookup.await {
        Ok(Ok(a)) => a.collect(),
        Ok(Err(e)) => return Err(format!("callback host {host} does not resolve: {e}")),
        Err(_) => return Err(format!("callback host {host} did not resolve within 5s")),
    };
    if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
        return Err(format!("callback host {host} resolves to {}, an internal address (not allowlisted)", bad.ip()));
    }
    if addrs.is_empty() {
        return Err(format!("callback host {host} has no addresses"));
    }
    Ok(addrs)
}

/// reqwest's resolver for callbacks: the address policy applied to every lookup.
struct GuardedResolver(AddressPolicy);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs = if policy.allowed(&host) {
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect()
            } else {
                resolve_public(&host).await.map_err(|e| Box::new(std::io::Error::other(e)))?
            };
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The client lane callbacks are delivered with.
pub fn callback_client(
    policy: &AddressPolicy,
    timeout: Duration,
    extra_roots: &[CertificateDer<'static>],
) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls_config(extra_roots)?)
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(GuardedResolver(policy.clone())))
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
        .context("building the callback client")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_refused_unless_allowlisted() {
        let strict = AddressPolicy::default();
        for url in [
            "http://127.0.0.1:9/x",
            "http://10.1.2.3/",
            "http://192.168.0.1/",
            "http://172.16.5.5/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://[fe80::1]/",
            "http://[fd00::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://224.0.0.1/",
            "http://0.0.0.0/",
            "http://100.64.0.1/",
        ] {
            assert!(strict.check_url(url).is_err(), "{url} was accepted");
        }
        assert!(strict.check_url("ftp://example.com/").is_err());
        assert!(strict.check_url("http://user:pw@example.com/").is_err());
        assert!(strict.check_url("https://93.184.215.14/hook").is_ok());
        let allow = AddressPolicy { allow_hosts: vec!["127.0.0.1".into()] };
        assert!(allow.check_url("http://127.0.0.1:9/x").is_ok());
        assert!(allow.check_url("http://127.0.0.2:9/x").is_err());
    }
}
