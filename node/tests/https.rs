//! The API over HTTPS: a certificate from the cluster CA that the CLI trusts with
//! --ca-cert, a plain-HTTP client told what to do, and a certificate from files swapped
//! on SIGHUP without a restart.

#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::Server;

fn cli(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dispatch"))
        .args(args)
        .env_remove("DISPATCH_TOKEN")
        .env_remove("DISPATCH_CA_CERT")
        .env("HOME", "/nonexistent")
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// A client trusting only the system roots plus `ca` (PEM).
fn client(ca: &Path) -> reqwest::Client {
    dispatch_node::outbound::api_client(&dispatch_node::outbound::read_roots(ca).unwrap()).unwrap()
}

#[tokio::test]
async fn the_cli_trusts_the_cluster_ca_over_https_and_plain_http_is_told_what_to_do() {
    let dir = support::tempdir();
    let data = dir.path().join("data");
    let s = Server::start_with(&data, &["--tls-san", "127.0.0.1", "--tls-san", "localhost"]);
    assert!(s.url.starts_with("https://127.0.0.1:"), "{}", s.url);
    let ca = data.join("ca/ca.crt.pem");
    let ca = ca.to_str().unwrap();

    let (ok, said) = cli(&["ticket", "list", "--server", &s.url, "--token", &s.admin_token, "--ca-cert", ca]);
    assert!(ok, "{said}");
    assert_eq!(said.trim(), "no tickets match");
    let https = client(Path::new(ca));
    let health = https.get(format!("{}/health", s.url)).send().await.unwrap();
    assert_eq!(health.status(), 200);

    let (ok, said) = cli(&["ticket", "list", "--server", &s.url, "--token", &s.admin_token]);
    assert!(!ok && said.contains("certificate"), "without the CA the certificate is refused, and said so: {said}");

    let plain = s.url.replacen("https://", "http://", 1);
    let (ok, said) = cli(&["ticket", "list", "--server", &plain, "--token", &s.admin_token]);
    assert!(!ok && said.contains("This port speaks HTTPS"), "{said}");
    let answer = support::get(format!("{plain}/health")).await.unwrap();
    assert_eq!(answer.status(), 400);
    assert!(answer.text().await.unwrap().starts_with("This port speaks HTTPS: use an https:// URL"));
}

/// A self-signed CA and a certificate for 127.0.0.1 it signed, as PEM files in `dir`;
/// returns the CA's path.
fn issue(dir: &Path, name: &str) -> std::path::PathBuf {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(vec![]).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &Issuer::new(ca_params, ca_key))
        .unwrap();
    std::fs::write(dir.join("api.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("api.key"), key.serialize_pem()).unwrap();
    let ca = dir.join(format!("{name}.pem"));
    std::fs::write(&ca, ca_cert.pem()).unwrap();
    ca
}

#[tokio::test]
async fn a_certificate_from_files_is_replaced_on_sighup_without_a_restart() {
    let dir = support::tempdir();
    let first_ca = issue(dir.path(), "first-ca");
    let (cert, key) = (dir.path().join("api.crt"), dir.path().join("api.key"));
    let s = Server::start_with(
        &dir.path().join("data"),
        &["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()],
    );
    assert_eq!(client(&first_ca).get(format!("{}/health", s.url)).send().await.unwrap().status(), 200);

    let second_ca = issue(dir.path(), "second-ca");
    s.signal("HUP");
    // The reload is the process's own business: poll (bounded) until the new certificate is served.
    let deadline = Instant::now() + Duration::from_secs(10);
    while client(&second_ca).get(format!("{}/health", s.url)).send().await.is_err() {
        assert!(Instant::now() < deadline, "the new certificate was never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(client(&first_ca).get(format!("{}/health", s.url)).send().await.is_err(), "the old one is gone");

    // A broken file on the next SIGHUP keeps the certificate that works.
    std::fs::write(&key, "not a key").unwrap();
    s.signal("HUP");
    let log = Server::log_path(&dir.path().join("data"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("HTTPS certificate NOT reloaded; the old one stays")
    {
        assert!(Instant::now() < deadline, "a failed reload is never logged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (ok, said) = cli(&[
        "ticket",
        "list",
        "--server",
        &s.url,
        "--token",
        &s.admin_token,
        "--ca-cert",
        second_ca.to_str().unwrap(),
    ]);
    assert!(ok, "{said}");
}
