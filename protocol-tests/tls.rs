//! `ssl_mode` against real TLS masters (`deploy/sandbox.sh start N --tls`, which
//! sets require_secure_transport=ON): each mode must mean what the mysql
//! client's `--ssl-mode` means, and every refusal must say why.
//!
//! m1 presents `mysql-server-ip.pem` (SAN `IP:127.0.0.1` only), m2 the usual
//! `mysql-server.pem` (SAN `DNS:localhost`, `IP:127.0.0.1`), m3 has no TLS.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mysql_async::prelude::Queryable;

use gtid_relay::config::{Config, Master};
use gtid_relay::conn::{self, ConnError};
use gtid_relay::source::client::Client;

use crate::support::relay::{InProcess, RELAY_PASSWORD, wait_converged};
use crate::support::{Sandbox, repo_root};

const X509_PASSWORD: &str = "x509-secret-pw";

fn cert(name: &str) -> PathBuf {
    repo_root().join("certs/out").join(name)
}

/// A `[[masters]]` entry; `tls` is the inline table's content.
fn master_toml(name: &str, host: &str, port: u16, user: &str, password: &str, tls: &str) -> String {
    format!(
        "[[masters]]\nname = \"{name}\"\nhost = \"{host}\"\nport = {port}\nuser = \"{user}\"\npassword = \"{password}\"\ntls = {{ {tls} }}\n\n"
    )
}

fn master(host: &str, port: u16, user: &str, password: &str, tls: &str) -> Master {
    let text = master_toml("x", host, port, user, password, tls)
        + &master_toml("y", "127.0.0.1", 1, "u", "p", "ssl_mode = \"DISABLED\"");
    let config = Config::parse(Path::new("/tls-test.toml"), &text).expect("valid config");
    config.masters[0].clone()
}

fn verify(mode: &str, ca: &str) -> String {
    format!("ssl_mode = \"{mode}\", ca = \"{}\"", cert(ca).display())
}

/// Connect through mysql_async (`conn::connect`, the apply side) or the binlog
/// client (`source::client`); on success returns the session's `Ssl_cipher`
/// ("" when plaintext).
fn connect_by(
    rt: &tokio::runtime::Runtime,
    m: &Master,
    binlog_client: bool,
) -> Result<String, ConnError> {
    const SSL_CIPHER: &str = "SHOW SESSION STATUS LIKE 'Ssl_cipher'";
    rt.block_on(async {
        if binlog_client {
            let mut c = Client::connect(m, Duration::from_secs(10)).await?;
            let row = c.query_row(SSL_CIPHER).await.expect("Ssl_cipher");
            c.close().await;
            return Ok(row
                .and_then(|r| r.into_iter().nth(1).flatten())
                .unwrap_or_default());
        }
        let mut c = conn::connect(m, Duration::from_secs(10)).await?;
        let cipher: Option<(String, String)> = c.query_first(SSL_CIPHER).await.expect("Ssl_cipher");
        let _ = c.disconnect().await;
        Ok(cipher.map(|(_, v)| v).unwrap_or_default())
    })
}

/// Both clients must give the same answer: the same encryption, or the same error.
fn try_connect(rt: &tokio::runtime::Runtime, m: &Master) -> Result<String, ConnError> {
    let driver = connect_by(rt, m, false);
    let binlog = connect_by(rt, m, true);
    match (&driver, &binlog) {
        (Ok(a), Ok(b)) => assert_eq!(a.is_empty(), b.is_empty(), "{a} vs {b}"),
        (Err(a), Err(b)) => assert_eq!(a.errno(), b.errno(), "{a} vs {b}"),
        (a, b) => panic!("the clients disagree: {a:?} vs {b:?}"),
    }
    driver
}

fn expect_error(rt: &tokio::runtime::Runtime, m: &Master, errno: u32, words: &[&str]) -> String {
    try_connect(rt, m).expect_err("connection must be refused");
    let mut texts = Vec::new();
    for binlog_client in [false, true] {
        let e = connect_by(rt, m, binlog_client).expect_err("connection must be refused");
        let text = e.to_string();
        assert_eq!(e.errno(), errno, "{text}");
        for w in words {
            assert!(text.contains(w), "'{w}' missing from: {text}");
        }
        for secret in [RELAY_PASSWORD, X509_PASSWORD] {
            assert!(!text.contains(secret), "password in error: {text}");
        }
        texts.push(text);
    }
    texts.join("\n         binlog client: ")
}

fn make_certs() {
    let status = std::process::Command::new(repo_root().join("certs/make-certs.sh"))
        .status()
        .expect("run make-certs.sh");
    assert!(status.success());
}

/// Start master `i` with TLS and the IP-only certificate, copied to where its
/// mysqld (in the chroot) finds it.
fn start_with_ip_certificate(sb: &mut Sandbox, i: u8) {
    let inner = format!("/var/sandbox/{}/{i}/certs", sb.namespace());
    let outer = sb.chroot_dir().join(inner.trim_start_matches('/'));
    std::fs::create_dir_all(&outer).expect("instance cert dir");
    for f in ["mysql-server-ip.pem", "mysql-server-ip-key.pem"] {
        std::fs::copy(cert(f), outer.join(f)).expect("copy certificate");
    }
    let ssl_cert = format!("--ssl-cert={inner}/mysql-server-ip.pem");
    let ssl_key = format!("--ssl-key={inner}/mysql-server-ip-key.pem");
    sb.start_instance(i, &["--tls"], &[&ssl_cert, &ssl_key]);
}

#[test]
fn ssl_modes_mean_what_the_mysql_client_means() {
    make_certs();
    let mut sb = Sandbox::empty(3);
    start_with_ip_certificate(&mut sb, 1);
    sb.start_instance(2, &["--tls"], &[]);
    // MySQL generates its own certificates at startup; an empty TLS version
    // list is how a server offers no TLS at all.
    sb.start_instance(3, &[], &["--tls-version="]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (p1, p2, p3) = (sb.port(1), sb.port(2), sb.port(3));
    let relay = |host: &str, port: u16, tls: &str| master(host, port, "relay", RELAY_PASSWORD, tls);

    // VERIFY_CA: the chain counts, the names do not (m1's certificate lacks "localhost").
    for host in ["127.0.0.1", "localhost"] {
        let cipher = try_connect(&rt, &relay(host, p1, &verify("VERIFY_CA", "ca.pem")))
            .unwrap_or_else(|e| panic!("VERIFY_CA to {host}: {e}"));
        assert!(!cipher.is_empty(), "VERIFY_CA must encrypt");
    }
    let wrong_ca = expect_error(
        &rt,
        &relay("127.0.0.1", p1, &verify("VERIFY_CA", "other-ca.pem")),
        conn::CR_SSL_CONNECTION_ERROR,
        &["VERIFY_CA", "not signed by the CA", "other-ca.pem"],
    );

    // VERIFY_IDENTITY: the host must be among the certificate's subjectAltNames.
    try_connect(
        &rt,
        &relay("127.0.0.1", p1, &verify("VERIFY_IDENTITY", "ca.pem")),
    )
    .expect("VERIFY_IDENTITY by the IP the certificate names");
    let no_name = expect_error(
        &rt,
        &relay("localhost", p1, &verify("VERIFY_IDENTITY", "ca.pem")),
        conn::CR_SSL_CONNECTION_ERROR,
        &["does not name the host 'localhost'"],
    );
    try_connect(
        &rt,
        &relay("localhost", p2, &verify("VERIFY_IDENTITY", "ca.pem")),
    )
    .expect("VERIFY_IDENTITY by the DNS name the certificate names");

    // REQUIRED encrypts without verifying; it fails on a server without TLS.
    let cipher = try_connect(&rt, &relay("127.0.0.1", p1, "ssl_mode = \"REQUIRED\""))
        .expect("REQUIRED to a TLS server");
    assert!(!cipher.is_empty());
    let no_tls = expect_error(
        &rt,
        &relay("127.0.0.1", p3, "ssl_mode = \"REQUIRED\""),
        conn::CR_SSL_CONNECTION_ERROR,
        &["ssl_mode=REQUIRED", "does not support TLS"],
    );
    // PREFERRED falls back to plaintext only when the server offers no TLS.
    let plain = try_connect(&rt, &relay("127.0.0.1", p3, "ssl_mode = \"PREFERRED\""))
        .expect("PREFERRED to a plaintext server");
    assert_eq!(plain, "");
    let preferred = try_connect(&rt, &relay("127.0.0.1", p2, "ssl_mode = \"PREFERRED\""))
        .expect("PREFERRED to a TLS server");
    assert!(!preferred.is_empty());

    // DISABLED against require_secure_transport=ON: the server's own refusal.
    let insecure = expect_error(
        &rt,
        &relay("127.0.0.1", p1, "ssl_mode = \"DISABLED\""),
        3159,
        &["require_secure_transport"],
    );

    // A missing CA file is named, not "No such file or directory" alone.
    let missing = expect_error(
        &rt,
        &relay("127.0.0.1", p1, &verify("VERIFY_CA", "no-such-ca.pem")),
        conn::CR_SSL_CONNECTION_ERROR,
        &["tls.ca", "no-such-ca.pem"],
    );

    // Accounts that REQUIRE X509 need the client certificate.
    sb.sql(
        1,
        &format!(
            "SET sql_log_bin = 0; \
             CREATE USER 'x509'@'127.0.0.1' IDENTIFIED BY '{X509_PASSWORD}' REQUIRE X509; \
             CREATE USER 'x509'@'localhost' IDENTIFIED BY '{X509_PASSWORD}' REQUIRE X509"
        ),
    );
    let with_cert = format!(
        "{}, cert = \"{}\", key = \"{}\"",
        verify("VERIFY_IDENTITY", "ca.pem"),
        cert("client.pem").display(),
        cert("client-key.pem").display()
    );
    try_connect(
        &rt,
        &master("127.0.0.1", p1, "x509", X509_PASSWORD, &with_cert),
    )
    .expect("X509 account with the client certificate");
    let no_cert = expect_error(
        &rt,
        &master(
            "127.0.0.1",
            p1,
            "x509",
            X509_PASSWORD,
            &verify("VERIFY_IDENTITY", "ca.pem"),
        ),
        1045,
        &["Access denied for user 'x509'"],
    );
    for text in [wrong_ca, no_name, no_tls, insecure, missing, no_cert] {
        eprintln!("refused: {text}");
    }
}

#[test]
fn channels_relay_over_verified_tls() {
    make_certs();
    let mut sb = Sandbox::empty(2);
    start_with_ip_certificate(&mut sb, 1);
    sb.start_instance(2, &["--tls"], &[]);
    // m1 is reached as "localhost", which its certificate does not name: fine
    // under VERIFY_CA. m2 is checked by address under VERIFY_IDENTITY.
    let text = "[source]\nheartbeat_secs = 1\nreconnect_min_secs = 0.2\nreconnect_max_secs = 2\n\n"
        .to_string()
        + &master_toml(
            "m1",
            "localhost",
            sb.port(1),
            "relay",
            RELAY_PASSWORD,
            &verify("VERIFY_CA", "ca.pem"),
        )
        + &master_toml(
            "m2",
            "127.0.0.1",
            sb.port(2),
            "relay",
            RELAY_PASSWORD,
            &verify("VERIFY_IDENTITY", "ca.pem"),
        );
    let relay = InProcess::start(&text);
    relay.wait_running();
    sb.sql(
        1,
        "CREATE DATABASE tls_t; CREATE TABLE tls_t.t (id INT PRIMARY KEY, v TEXT)",
    );
    sb.sql(1, "INSERT INTO tls_t.t VALUES (1, 'from m1')");
    wait_converged(&sb, &[1, 2], Duration::from_secs(20));
    sb.sql(2, "INSERT INTO tls_t.t VALUES (2, 'from m2')");
    wait_converged(&sb, &[1, 2], Duration::from_secs(20));
    assert_eq!(sb.value(1, "SELECT COUNT(*) FROM tls_t.t"), "2");
    assert_eq!(sb.value(2, "SELECT COUNT(*) FROM tls_t.t"), "2");
    for c in relay.status() {
        assert_eq!(c.tls.allowed, "Yes", "{}", c.name);
    }
    relay.stop();
}
