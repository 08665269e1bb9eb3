//! Gravity (moiot/gravity) MySQL-to-MySQL configuration files, read as they
//! are and turned into one native configuration: each file is one channel
//! (input source -> output target), the masters are the distinct endpoints.
//!
//! Every Gravity setting is either mapped, explained once as not needed
//! (a warning), or refused with the file, line and key: an unknown key is
//! refused too, since silently ignoring it could relay what the user excluded.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_spanned::Spanned;

use crate::config::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum GravityError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("host map '{spec}': {message} (expected HOST:PORT=HOST:PORT)")]
    HostMap { spec: String, message: String },
}

/// Where to really connect for an address written in a Gravity file
/// (e.g. a production address mapped to a local sandbox).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostMap(BTreeMap<(String, u16), (String, u16)>);

fn host_port(spec: &str, part: &str) -> Result<(String, u16), GravityError> {
    let bad = |message: &str| GravityError::HostMap {
        spec: spec.into(),
        message: message.into(),
    };
    let (host, port) = part.rsplit_once(':').ok_or_else(|| bad("missing :PORT"))?;
    let port = port.parse().map_err(|_| bad("the port is not a number"))?;
    if host.is_empty() {
        return Err(bad("empty host"));
    }
    Ok((host.to_string(), port))
}

impl HostMap {
    /// Parse `FROM_HOST:PORT=TO_HOST:PORT` entries.
    pub fn parse<S: AsRef<str>>(specs: &[S]) -> Result<HostMap, GravityError> {
        let mut map = BTreeMap::new();
        for spec in specs {
            let spec = spec.as_ref().trim();
            let (from, to) = spec.split_once('=').ok_or_else(|| GravityError::HostMap {
                spec: spec.into(),
                message: "missing '='".into(),
            })?;
            map.insert(host_port(spec, from)?, host_port(spec, to)?);
        }
        Ok(HostMap(map))
    }

    fn resolve(&self, host: &str, port: u16) -> (String, u16) {
        self.0
            .get(&(host.to_string(), port))
            .cloned()
            .unwrap_or_else(|| (host.to_string(), port))
    }
}

// ---- the Gravity file, as far as MySQL-to-MySQL replication goes ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct GFile {
    name: Spanned<String>,
    internal_db_name: Option<Spanned<String>>,
    input: GInput,
    output: GOutput,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct GInput {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    mode: Option<Spanned<String>>,
    config: GInputConfig,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct GInputConfig {
    ignore_bidirectional_data: Option<Spanned<bool>>,
    source: GEndpoint,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct GEndpoint {
    host: String,
    #[serde(default = "default_port")]
    port: u16,
    username: String,
    #[serde(default)]
    password: String,
}

fn default_port() -> u16 {
    3306
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct GOutput {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    config: GOutputConfig,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct GOutputConfig {
    target: GEndpoint,
    enable_ddl: Option<bool>,
    sql_engine_config: Option<GEngine>,
    #[serde(default)]
    routes: Vec<Spanned<GRoute>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct GEngine {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    config: Option<GEngineConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct GEngineConfig {
    tag_internal_txn: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct GRoute {
    match_schema: String,
    match_table: Option<String>,
    target_schema: Option<String>,
    target_table: Option<String>,
}

/// The native configuration equivalent to a set of Gravity files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// Native TOML, ready for [`crate::config::Config::parse`].
    pub toml: String,
    /// One explanation per Gravity setting that needs nothing here.
    pub warnings: Vec<String>,
}

struct File<'a> {
    path: &'a Path,
    text: &'a str,
}

impl File<'_> {
    fn err(&self, span: Range<usize>, key: &str, message: impl Into<String>) -> GravityError {
        let end = span.start.min(self.text.len());
        GravityError::Config(ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line: self.text[..end].bytes().filter(|&b| b == b'\n').count() + 1,
            key: key.into(),
            message: message.into(),
        })
    }
}

fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A Gravity target name: `*` (or the matched name itself) keeps the name.
fn rename(target: Option<&str>, matched: &str) -> Option<String> {
    target
        .filter(|t| *t != "*" && *t != matched)
        .map(str::to_string)
}

const INTERNAL_DB: &str = "internal-db-name: gtid-relay writes no internal database (no \
     positions, heartbeats or markers on the masters): each target's gtid_executed is the \
     position and the GTID loop rule replaces Gravity's internal transactions";
const TAG_TXN: &str = "tag-internal-txn: not needed: gtid-relay recognises its own relayed \
     transactions by their original GTID (the loop rule), nothing is tagged";
const REPLICATION_MODE: &str = "input.mode = \"replication\": gtid-relay makes no initial \
     copy of the tables; it sends each target the GTIDs it lacks, so start from masters that \
     hold the same data (as with Gravity's incremental stream)";

/// Read the Gravity files at `paths` and build the native configuration.
pub fn import(paths: &[PathBuf], hosts: &HostMap) -> Result<Imported, GravityError> {
    let mut masters: Vec<((String, u16), GEndpoint)> = Vec::new();
    let mut channels = String::new();
    let mut warnings: Vec<String> = Vec::new();
    let mut warn = |w: &str| {
        if !warnings.iter().any(|x| x == w) {
            warnings.push(w.to_string());
        }
    };
    for path in paths {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let file = File { path, text: &text };
        let g: GFile = toml::from_str(&text).map_err(|e| {
            let message = e.message().to_string();
            let key = message.split('`').nth(1).unwrap_or("").to_string();
            file.err(e.span().unwrap_or(0..0), &key, message)
        })?;

        for (kind, key) in [
            (&g.input.kind, "input.type"),
            (&g.output.kind, "output.type"),
        ] {
            if kind.get_ref() != "mysql" {
                return Err(file.err(
                    kind.span(),
                    key,
                    format!(
                        "'{}' is not supported: gtid-relay relays MySQL to MySQL only",
                        kind.get_ref()
                    ),
                ));
            }
        }
        match &g.input.mode {
            Some(m) if m.get_ref() == "replication" => warn(REPLICATION_MODE),
            Some(m) if m.get_ref() == "stream" => {}
            Some(m) => {
                return Err(file.err(
                    m.span(),
                    "input.mode",
                    format!(
                        "'{}' is not supported: only \"stream\" and \"replication\" (incremental binlog replication)",
                        m.get_ref()
                    ),
                ));
            }
            None => {}
        }
        if let Some(flag) = &g.input.config.ignore_bidirectional_data
            && !*flag.get_ref()
        {
            return Err(file.err(
                flag.span(),
                "input.config.ignore-bidirectional-data",
                "false is not supported: gtid-relay never sends a transaction back to the \
                 master it came from (GTID loop rule); remove the key or set it to true",
            ));
        }
        if g.internal_db_name.is_some() {
            warn(INTERNAL_DB);
        }
        // Gravity's default engine is the replace engine.
        let conflict = match &g.output.config.sql_engine_config {
            Some(engine) => {
                if engine.kind.get_ref() != "mysql-replace-engine" {
                    return Err(file.err(
                        engine.kind.span(),
                        "output.config.sql-engine-config.type",
                        format!(
                            "'{}' is not supported: only \"mysql-replace-engine\" (relayed as conflict = \"idempotent\")",
                            engine.kind.get_ref()
                        ),
                    ));
                }
                if engine
                    .config
                    .as_ref()
                    .is_some_and(|c| c.tag_internal_txn.is_some())
                {
                    warn(TAG_TXN);
                }
                "idempotent"
            }
            None => "idempotent",
        };

        let mut endpoint_name = |e: GEndpoint| -> String {
            let key = (e.host.clone(), e.port);
            let name = format!("{}:{}", e.host, e.port);
            if !masters.iter().any(|(k, _)| *k == key) {
                masters.push((key, e));
            }
            name
        };
        let source = endpoint_name(g.input.config.source);
        let target = endpoint_name(g.output.config.target);
        if source == target {
            return Err(file.err(
                g.name.span(),
                "output.config.target",
                "source and target are the same server",
            ));
        }

        channels.push_str(&format!(
            "\n# {}\n[[channels]]\nname = {}\nsource = {}\ntarget = {}\nconflict = \"{conflict}\"\nddl = {}\n",
            path.display(),
            quoted(g.name.get_ref()),
            quoted(&source),
            quoted(&target),
            g.output.config.enable_ddl.unwrap_or(false),
        ));
        if g.output.config.routes.is_empty() {
            // Gravity relays every table without routes; so does an empty list.
            channels.push_str("routes = []\n");
        }
        for route in &g.output.config.routes {
            let r = route.get_ref();
            let table = r.match_table.as_deref().unwrap_or("*");
            for (target, key) in [
                (&r.target_schema, "target-schema"),
                (&r.target_table, "target-table"),
            ] {
                if let Some(t) = target
                    && t != "*"
                    && t.contains(['*', '?'])
                {
                    return Err(file.err(
                        route.span(),
                        &format!("output.config.routes.{key}"),
                        format!("'{t}' is not supported: a target is `*` (same name) or one literal name"),
                    ));
                }
            }
            channels.push_str(&format!(
                "[[channels.routes]]\nschema = {}\ntable = {}\n",
                quoted(&r.match_schema),
                quoted(table)
            ));
            if let Some(s) = rename(r.target_schema.as_deref(), &r.match_schema) {
                channels.push_str(&format!("target_schema = {}\n", quoted(&s)));
            }
            if let Some(t) = rename(r.target_table.as_deref(), table) {
                channels.push_str(&format!("target_table = {}\n", quoted(&t)));
            }
        }
    }

    let mut toml = format!(
        "# Generated from Gravity configuration: {}\n",
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    for ((host, port), e) in &masters {
        let (real_host, real_port) = hosts.resolve(host, *port);
        toml.push_str(&format!(
            "\n[[masters]]\nname = {}\nhost = {}\nport = {real_port}\nuser = {}\npassword = {}\n",
            quoted(&format!("{host}:{port}")),
            quoted(&real_host),
            quoted(&e.username),
            quoted(&e.password),
        ));
    }
    toml.push_str(&channels);
    Ok(Imported { toml, warnings })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ConflictMode};

    fn examples() -> Vec<PathBuf> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples/gravity");
        vec![
            dir.join("21_2_22_config.toml"),
            dir.join("22_2_21_config.toml"),
        ]
    }

    #[test]
    fn seed_files_become_two_channels() {
        let hosts = HostMap::parse(&["172.30.75.21:3307=127.0.0.1:4301"]).unwrap();
        let imported = import(&examples(), &hosts).unwrap();
        assert_eq!(imported.warnings.len(), 3, "{:?}", imported.warnings);
        let c = Config::parse(Path::new("gravity.toml"), &imported.toml).unwrap();
        assert_eq!(c.masters.len(), 2);
        assert_eq!(
            (c.masters[0].host.as_str(), c.masters[0].port),
            ("127.0.0.1", 4301)
        );
        assert_eq!(
            (c.masters[1].host.as_str(), c.masters[1].port),
            ("172.30.75.22", 3307)
        );
        assert_eq!(c.masters[0].user, "_gravity");
        let names: Vec<&str> = c.channels.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["21_2_22_config", "22_2_21_config"]);
        for ch in &c.channels {
            assert_eq!(ch.conflict, ConflictMode::Idempotent);
            assert!(ch.routes.ddl);
            assert!(ch.routes.table("stock_user", "orders").is_some());
            assert!(ch.routes.table("other", "orders").is_none());
            assert_eq!(
                ch.routes.ddl_schema("stock_user").as_deref(),
                Some("stock_user")
            );
        }
        assert_eq!((c.channels[0].source, c.channels[0].target), (0, 1));
        assert_eq!((c.channels[1].source, c.channels[1].target), (1, 0));
    }

    fn import_text(text: &str) -> Result<Imported, GravityError> {
        let dir = std::env::temp_dir().join(format!("gtid-relay-gravity-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{:x}.toml", crc32fast::hash(text.as_bytes())));
        std::fs::write(&path, text).unwrap();
        let r = import(std::slice::from_ref(&path), &HostMap::default());
        let _ = std::fs::remove_file(&path);
        r
    }

    #[test]
    fn unsupported_settings_are_errors_with_file_line_and_key() {
        let seed = std::fs::read_to_string(&examples()[0]).unwrap();
        let e = import_text(&seed.replace("mysql-replace-engine", "mysql-insert-ignore-engine"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(".toml:40: output.config.sql-engine-config.type: 'mysql-insert-ignore-engine' is not supported"),
            "{e}"
        );
        let e = import_text(&seed.replace(
            "ignore-bidirectional-data = true",
            "ignore-bidirectional-data = false",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("input.config.ignore-bidirectional-data: false is not supported"),
            "{e}"
        );
        let e =
            import_text(&seed.replace("enable-ddl = true", "enable-ddl = true\nworker-count = 8"))
                .unwrap_err()
                .to_string();
        assert!(
            e.contains(":38: worker-count: unknown field `worker-count`"),
            "{e}"
        );
    }

    #[test]
    fn no_routes_relay_everything_and_ddl_defaults_off() {
        let seed = std::fs::read_to_string(&examples()[0]).unwrap();
        let without = seed
            .split("# 路由规则的定义")
            .next()
            .unwrap()
            .replace("enable-ddl = true\n", "");
        let imported = import_text(&without).unwrap();
        let c = Config::parse(Path::new("gravity.toml"), &imported.toml).unwrap();
        assert!(c.channels[0].routes.rules.is_empty());
        assert!(!c.channels[0].routes.ddl);
        let e = import_text(&seed.replace("target-table = \"*\"", "target-table = \"t_*\""))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("output.config.routes.target-table: 't_*' is not supported"),
            "{e}"
        );
    }

    #[test]
    fn routes_map_renames_and_defaults() {
        assert_eq!(rename(Some("*"), "a"), None);
        assert_eq!(rename(Some("a"), "a"), None);
        assert_eq!(rename(None, "a"), None);
        assert_eq!(rename(Some("b"), "a").as_deref(), Some("b"));
    }

    #[test]
    fn host_map_syntax() {
        let m = HostMap::parse(&["h:1=l:2"]).unwrap();
        assert_eq!(m.resolve("h", 1), ("l".to_string(), 2));
        assert_eq!(m.resolve("h", 3), ("h".to_string(), 3));
        assert!(HostMap::parse(&["h:1"]).is_err());
        assert!(HostMap::parse(&["h:x=l:2"]).is_err());
    }
}
