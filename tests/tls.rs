//! TLS: with `server.tls_cert`/`server.tls_key` the broker serves https and
//! wss only, to real TLS clients that trust its (test-made) certificate.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Broker, Options};
use futures_util::StreamExt;
use rustls::pki_types::CertificateDer;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::Connector;

/// A self-signed certificate for localhost/127.0.0.1, written as PEM files.
struct SelfSigned {
    dir: tempfile::TempDir,
    der: CertificateDer<'static>,
}

impl SelfSigned {
    fn new() -> SelfSigned {
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                .expect("self-signed certificate");
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).expect("write cert");
        std::fs::write(dir.path().join("key.pem"), signing_key.serialize_pem()).expect("write key");
        SelfSigned {
            dir,
            der: cert.der().clone(),
        }
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    /// A broker serving TLS with this certificate.
    fn broker(&self) -> Broker {
        Broker::with(
            Options::default()
                .env("SERVER__TLS_CERT", path_str(&self.cert()))
                .env("SERVER__TLS_KEY", path_str(&self.key())),
        )
    }

    /// A rustls client configuration trusting this certificate alone.
    fn client(&self) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).expect("trust anchor");
        client_config(roots)
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temp path")
}

fn client_config(roots: rustls::RootCertStore) -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// A blocking HTTPS client trusting `roots` (the bundled web PKI when `None`).
fn https_agent(trusted: Option<&CertificateDer<'static>>) -> ureq::Agent {
    let mut tls = ureq::tls::TlsConfig::builder();
    if let Some(der) = trusted {
        tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&[
            ureq::tls::Certificate::from_der(der).to_owned(),
        ]));
    }
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .tls_config(tls.build())
        .build()
        .into()
}

async fn wss(url: &str, client: rustls::ClientConfig) -> Result<String, String> {
    let connector = Connector::Rustls(Arc::new(client));
    let (mut ws, _) =
        tokio_tungstenite::connect_async_tls_with_config(url, None, false, Some(connector))
            .await
            .map_err(|e| e.to_string())?;
    match ws.next().await {
        Some(Ok(Message::Text(text))) => Ok(text.to_string()),
        other => panic!("{url}: expected a text frame, got {other:?}"),
    }
}

#[actix_rt::test]
async fn https_and_wss_are_served_to_a_client_that_trusts_the_certificate() {
    let cert = SelfSigned::new();
    let broker = cert.broker();
    let addr = broker.addr.clone();

    // (a) A real HTTPS request.
    let agent = https_agent(Some(&cert.der));
    let url = format!("https://{addr}/healthz");
    let status = actix_rt::task::spawn_blocking(move || agent.get(&url).call().map(|r| r.status()))
        .await
        .expect("join")
        .expect("https GET /healthz");
    assert_eq!(status.as_u16(), 200);

    // (b) A wss session-list watcher gets its first frame.
    let first = wss(&format!("wss://{addr}/sessions"), cert.client())
        .await
        .expect("wss upgrade");
    assert_eq!(first, "reset\n1\n1.0.0");

    // The derived healthcheck of a TLS config speaks https.
    let config = cert.dir.path().join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nbind = \"{addr}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            path_str(&cert.cert()),
            path_str(&cert.key())
        ),
    )
    .expect("write config");
    let check = run_to_exit(
        Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("--config")
            .arg(&config)
            .arg("healthcheck"),
    );
    assert!(check.status.success(), "healthcheck: {check:?}");

    broker.stop();
}

#[actix_rt::test]
async fn the_tls_port_serves_no_plaintext_and_refuses_untrusting_clients() {
    let cert = SelfSigned::new();
    let broker = cert.broker();
    let addr = broker.addr.clone();

    // (c) Plain http and ws get nothing.
    let plain = https_agent(None);
    let url = format!("http://{addr}/healthz");
    let answer = actix_rt::task::spawn_blocking(move || plain.get(&url).call().map(|r| r.status()))
        .await
        .expect("join");
    assert!(answer.is_err(), "plain http answered: {answer:?}");
    let ws = tokio_tungstenite::connect_async(format!("ws://{addr}/sessions")).await;
    assert!(ws.is_err(), "plain ws upgraded");

    // (d) A client that does not trust the certificate fails the handshake,
    // over wss and https alike.
    let refused = wss(
        &format!("wss://{addr}/sessions"),
        client_config(rustls::RootCertStore::empty()),
    )
    .await
    .expect_err("untrusted certificate accepted");
    assert!(refused.contains("certificate"), "{refused}");
    let web_pki = https_agent(None);
    let url = format!("https://{addr}/healthz");
    let answer =
        actix_rt::task::spawn_blocking(move || web_pki.get(&url).call().map(|r| r.status()))
            .await
            .expect("join");
    let error = answer
        .expect_err("untrusted certificate accepted")
        .to_string();
    assert!(
        error.contains("certificate") || error.contains("Certificate"),
        "{error}"
    );

    // The trusting client still gets through afterwards.
    assert_eq!(
        wss(&format!("wss://{addr}/sessions"), cert.client()).await,
        Ok("reset\n1\n1.0.0".to_owned())
    );
}

/// Runs `cmd` (stdout and stderr captured) and waits for it to exit, killing
/// it after a while: a broker that wrongly starts would never exit.
fn run_to_exit(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn switchboard");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("switchboard did not exit: {:?}", child.wait_with_output());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// Starts `switchboard` with `cert`/`key` and returns its output once it exited.
fn serve_with(cert: &Path, key: &Path) -> Output {
    let data = tempfile::tempdir().expect("temp dir");
    run_to_exit(
        Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .env("SWITCHBOARD_SERVER__BIND", "127.0.0.1:0")
            .env(
                "SWITCHBOARD_STORAGE__PATH",
                data.path().join("switchboard.db"),
            )
            .env(
                "SWITCHBOARD_CONCIERGE__FILES_DIR",
                data.path().join("files"),
            )
            .env("SWITCHBOARD_SERVER__TLS_CERT", cert)
            .env("SWITCHBOARD_SERVER__TLS_KEY", key),
    )
}

#[test]
fn an_unusable_certificate_or_key_stops_the_start_naming_the_file() {
    let good = SelfSigned::new();
    let other = SelfSigned::new();
    let missing = good.dir.path().join("no-such-key.pem");
    let garbage = good.dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a PEM file\n").expect("write");

    // (e) and its relatives: a missing key, a file without a key or without
    // a certificate, a key that is not the certificate's.
    for (cert, key, named) in [
        (good.cert(), missing.clone(), missing.clone()),
        (good.cert(), garbage.clone(), garbage.clone()),
        (garbage.clone(), good.key(), garbage.clone()),
        (good.cert(), other.key(), other.key()),
    ] {
        let output = serve_with(&cert, &key);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "started with {cert:?} {key:?}");
        assert!(
            stderr.contains(path_str(&named)),
            "stderr does not name {named:?}: {stderr}"
        );
        assert!(
            !String::from_utf8_lossy(&output.stdout).contains("listening"),
            "{output:?}"
        );
    }
}
