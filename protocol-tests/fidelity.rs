//! Fidelity: MySQL's own regression tests (deploy/fidelity/short.list) replayed on
//! one master of a pair must leave the other master as native master-master
//! replication leaves it (deploy/fidelity.sh).

use std::process::{Command, Stdio};

use crate::support::{free_port_base, repo_root, spawn_reaper};

#[test]
fn short_list_matches_native_replication() {
    let ns = format!("t{}-fidelity", std::process::id());
    // When this process dies, the sandbox removes whatever the script left behind.
    spawn_reaper(&ns);
    let out = Command::new(repo_root().join("deploy/fidelity.sh"))
        .args(["--both", "--list"])
        .arg(repo_root().join("deploy/fidelity/short.list"))
        .env("GTID_RELAY_BIN", env!("CARGO_BIN_EXE_gtid-relay"))
        .env("FIDELITY_NS", &ns)
        // m1, m2 and the relay's admin port: base + 1..3.
        .env("FIDELITY_PORT_BASE", free_port_base(3).to_string())
        .stdin(Stdio::null())
        .output()
        .expect("run deploy/fidelity.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "deploy/fidelity.sh failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}
