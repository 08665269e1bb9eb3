//! What ships in deploy/: the example configurations load, the systemd unit
//! passes `systemd-analyze verify`, and the binary's JSON log names channels.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use gtid_relay::config::{Config, SslMode};

use crate::support::relay::{Process, TempDir, write_config};
use crate::support::{repo_root, wait_for};

/// Set in the child process that loads the examples.
const CHILD: &str = "GTID_RELAY_EXAMPLES_CHILD";
/// Every `password_env` the examples name.
const PASSWORD_VARS: [&str; 5] = [
    "GTID_RELAY_DB21_PASSWORD",
    "GTID_RELAY_DB22_PASSWORD",
    "GTID_RELAY_DB250_PASSWORD",
    "GTID_RELAY_DB1_PASSWORD",
    "GTID_RELAY_DB2_PASSWORD",
];

fn examples() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join("deploy/examples"))
        .expect("deploy/examples")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_config_loads() {
    if std::env::var_os(CHILD).is_none() {
        // The examples read passwords from the environment, and setting it while
        // other test threads run is unsound: load them in a child process.
        let out = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "deploy::every_example_config_loads",
                "--exact",
                "--nocapture",
            ])
            .env(CHILD, "1")
            .envs(PASSWORD_VARS.map(|v| (v, "example-pw")))
            .output()
            .expect("run the child test");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && text.contains("1 passed"), "{text}");
        return;
    }
    let files = examples();
    let name = |p: &Path| {
        p.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string()
    };
    let names: Vec<String> = files.iter().map(|p| name(p)).collect();
    for expected in [
        "compose.toml",
        "three-master-mesh.toml",
        "tls-everywhere.toml",
        "two-masters.toml",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    for path in &files {
        let c = Config::load(path).unwrap_or_else(|e| panic!("{e}"));
        let n = c.masters.len();
        assert_eq!(
            c.channels.len(),
            n * (n - 1),
            "{}: full mesh",
            path.display()
        );
        assert!(c.metrics_listen.is_some(), "{}: metrics", path.display());
        match name(path).as_str() {
            "three-master-mesh.toml" => assert_eq!(n, 3),
            "tls-everywhere.toml" => {
                assert!(
                    c.masters
                        .iter()
                        .all(|m| m.tls.ssl_mode == SslMode::VerifyIdentity && m.tls.cert.is_some())
                );
                assert!(c.admin.as_ref().is_some_and(|a| a.require_secure_transport));
            }
            _ => assert_eq!(n, 2),
        }
    }
}

/// The unit with its ExecStart pointed at the built binary (verify checks
/// that the command exists).
#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    assert!(
        Command::new("systemd-analyze")
            .arg("--version")
            .output()
            .is_ok(),
        "systemd-analyze is missing; deploy/test.sh installs Debian's systemd package"
    );
    let unit = std::fs::read_to_string(repo_root().join("deploy/gtid-relay.service"))
        .expect("deploy/gtid-relay.service");
    for hardening in [
        "User=gtid-relay",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "Restart=on-failure",
        "CapabilityBoundingSet=\n",
    ] {
        assert!(unit.contains(hardening), "unit lacks {hardening:?}");
    }
    let dir = TempDir::new("systemd");
    let path = dir.0.join("gtid-relay.service");
    std::fs::write(
        &path,
        unit.replace(
            "/usr/local/bin/gtid-relay",
            env!("CARGO_BIN_EXE_gtid-relay"),
        ),
    )
    .expect("write unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze verify");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.trim().is_empty(), "{text}");
}

#[test]
fn json_log_lines_name_the_channel() {
    let dir = TempDir::new("jsonlog");
    // Masters on closed ports: the channels log their connection errors.
    let closed = |k: u16| {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        drop(l);
        format!(
            "[[masters]]\nname = \"m{k}\"\nhost = \"127.0.0.1\"\nport = {port}\nuser = \"relay\"\npassword = \"json-log-pw\"\n"
        )
    };
    let text = format!(
        "[relay]\nlog_format = \"json\"\n[source]\nreconnect_min_secs = 0.1\nreconnect_max_secs = 0.5\n{}{}",
        closed(1),
        closed(2)
    );
    let config = write_config(&dir.0, &text);
    let mut relay = Process::spawn(
        &["run", "--config", config.to_str().expect("utf8 path")],
        &dir.0.join("relay.log"),
    );
    let channel_of = |v: &serde_json::Value| {
        v.pointer("/fields/channel")
            .or_else(|| v.pointer("/span/channel"))
            .and_then(|c| c.as_str())
            .map(str::to_string)
    };
    wait_for(
        "JSON lines for both channels",
        Duration::from_secs(20),
        || {
            let log = relay.log_text();
            let channels: Vec<String> = log
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter_map(|v| channel_of(&v))
                .collect();
            (channels.iter().any(|c| c == "m1->m2") && channels.iter().any(|c| c == "m2->m1"))
                .then_some(())
        },
    );
    relay.signal("TERM");
    assert_eq!(relay.wait(Duration::from_secs(10)), Some(0));
    let log = relay.log_text();
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for key in ["timestamp", "level", "fields"] {
            assert!(v.get(key).is_some(), "no {key}: {line}");
        }
    }
    assert!(!log.contains("json-log-pw"), "password in the log");
}

/// Which part of the guide's configuration reference documents each `Raw*`
/// struct of src/config.rs (the section's heading as written in the guide).
const SECTIONS: [(&str, &str); 11] = [
    ("RawConfig", "top"),
    ("RawRelay", "`[relay]`"),
    ("RawMaster", "`[[masters]]`"),
    ("RawTls", "`[[masters]]`"),
    ("RawChannel", "`[[channels]]`"),
    ("RawRoute", "`[[routes]]`"),
    ("RawSource", "`[source]`"),
    ("RawApply", "`[apply]`"),
    ("RawAdmin", "`[admin]`"),
    ("RawAdminUser", "`[[admin.users]]`"),
    ("RawMetrics", "`[metrics]`"),
];

/// Field names of every `struct Raw*` in the source, by struct.
fn raw_struct_fields(source: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    let mut current: Option<(String, Vec<String>)> = None;
    for line in source.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("struct Raw") {
            let name = format!("Raw{}", rest.trim_end_matches(" {").trim());
            current = Some((name, Vec::new()));
        } else if t == "}" {
            out.extend(current.take());
        } else if let Some((_, fields)) = current.as_mut() {
            if let Some((field, _)) = t.split_once(':') {
                if !t.starts_with('#') && !t.starts_with("//") {
                    fields.push(field.trim().to_string());
                }
            }
        }
    }
    out
}

/// The reference's text per section: from a line starting with a section
/// heading to the next; "top" is the table headings themselves.
fn guide_sections(guide: &str) -> Vec<(String, String)> {
    let start = guide
        .find("## Configuration reference")
        .expect("a configuration reference");
    let body = &guide[start..];
    let end = body[3..].find("\n## ").map_or(body.len(), |i| i + 3);
    let mut sections: Vec<(String, String)> = vec![("top".into(), String::new())];
    for line in body[..end].lines() {
        if line.starts_with("`[") {
            let heading = line.split_whitespace().next().unwrap_or("").to_string();
            sections[0].1.push_str(&heading);
            sections[0].1.push('\n');
            sections.push((heading, String::new()));
        }
        if let Some(last) = sections.last_mut() {
            last.1.push_str(line);
            last.1.push('\n');
        }
    }
    sections
}

#[test]
fn operator_guide_documents_every_config_key() {
    let source = std::fs::read_to_string(repo_root().join("src/config.rs")).expect("config.rs");
    let guide = std::fs::read_to_string(repo_root().join("docs/operator-guide.md")).expect("guide");
    let structs = raw_struct_fields(&source);
    assert!(structs.len() >= SECTIONS.len(), "parsed {structs:?}");
    let sections = guide_sections(&guide);
    let mut missing = Vec::new();
    for (name, fields) in &structs {
        let Some((_, heading)) = SECTIONS.iter().find(|(s, _)| s == name) else {
            panic!("{name} is new: add its section of docs/operator-guide.md to SECTIONS");
        };
        let text = sections
            .iter()
            .find(|(h, _)| h == heading)
            .map(|(_, t)| t.as_str())
            .unwrap_or_else(|| panic!("no {heading} section in the configuration reference"));
        for f in fields {
            // A key is documented as `key`, as a table heading (`[key]`, `[[key]]`,
            // `[[parent.key]]`) or as `key = ...`.
            let documented = [
                format!("`{f}`"),
                format!("[{f}]"),
                format!(".{f}]"),
                format!("{f} = "),
            ]
            .iter()
            .any(|form| text.contains(form.as_str()));
            if !documented {
                missing.push(format!("{heading} {f} ({name})"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "undocumented configuration keys: {missing:?}"
    );
}
