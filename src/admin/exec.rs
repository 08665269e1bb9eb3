//! Statement execution: what each parsed statement answers.

use std::time::SystemTime;

use tracing::info;

use crate::status::{ChannelStatus, ControlError, Replicas};

use super::Shared;
use super::clock;
use super::handshake::Session;
use super::perf_schema;
use super::replica_status;
use super::sql::{self, Expr, Func, Naming, SelectItem, Statement};
use super::variables;
use super::wire::{Col, ColKind, ResultSet, SqlError};

/// What a statement answers.
#[derive(Debug)]
pub enum Reply {
    Ok,
    Rows(ResultSet),
    Err(SqlError),
}

impl From<SqlError> for Reply {
    fn from(e: SqlError) -> Reply {
        Reply::Err(e)
    }
}

pub async fn execute(
    query: &str,
    session: &mut Session,
    shared: &Shared,
    replicas: &dyn Replicas,
) -> Reply {
    match sql::parse(query, shared.settings.slave_syntax) {
        Statement::Empty => SqlError::new(1065, "42000", "Query was empty").into(),
        Statement::Unknown { near, line } => SqlError::new(
            1064,
            "42000",
            format!(
                "You have an error in your SQL syntax; check the manual that corresponds to \
                 your MySQL server version for the right syntax to use near '{near}' at line \
                 {line}"
            ),
        )
        .into(),
        Statement::Unsupported(text) => {
            let text: String = text.chars().take(64).collect();
            SqlError::new(
                1235,
                "42000",
                format!(
                    "This version of MySQL doesn't yet support '{text}' (gtid-relay admin endpoint)"
                ),
            )
            .into()
        }
        Statement::ShowReplicaStatus { channel, naming } => {
            let channels = replicas.channels();
            match channel {
                Some(name) => match channels.iter().find(|c| c.name == name) {
                    Some(c) => Reply::Rows(replica_status::result_set(naming, std::iter::once(c))),
                    None => no_such_channel(&name).into(),
                },
                None => Reply::Rows(replica_status::result_set(naming, channels.iter())),
            }
        }
        Statement::ShowReplicas { naming } => Reply::Rows(show_replicas(naming)),
        Statement::Start { threads, channel } => {
            info!(user = %session.user, ?threads, ?channel, "START REPLICA");
            control(replicas.start(channel.as_deref(), threads))
        }
        Statement::Stop { threads, channel } => {
            info!(user = %session.user, ?threads, ?channel, "STOP REPLICA");
            control(replicas.stop(channel.as_deref(), threads).await)
        }
        Statement::ShowVariables { like } => {
            Reply::Rows(name_value(variables::system(shared), like.as_deref()))
        }
        Statement::ShowStatus { like } => Reply::Rows(name_value(
            variables::status(shared, session),
            like.as_deref(),
        )),
        Statement::ShowWarnings => Reply::Rows(ResultSet {
            columns: vec![Col::text("Level"), Col::int("Code"), Col::text("Message")],
            rows: Vec::new(),
        }),
        Statement::Select { items, from, limit } => {
            let result = match from {
                None => select_constants(&items, session, shared),
                Some(table) => {
                    let channels: Vec<ChannelStatus> = replicas.channels();
                    project(perf_schema::table(table, &channels), &items)
                }
            };
            match result {
                Ok(mut rs) => {
                    if let Some(n) = limit {
                        rs.rows.truncate(usize::try_from(n).unwrap_or(usize::MAX));
                    }
                    Reply::Rows(rs)
                }
                Err(e) => e.into(),
            }
        }
        Statement::Use(db) => {
            session.db = Some(db);
            Reply::Ok
        }
        Statement::SetSession | Statement::Transaction => Reply::Ok,
    }
}

fn no_such_channel(name: &str) -> SqlError {
    SqlError::new(
        3074,
        "HY000",
        format!("Replica channel '{name}' does not exist."),
    )
}

fn control(result: Result<(), ControlError>) -> Reply {
    match result {
        Ok(()) => Reply::Ok,
        Err(ControlError::NoSuchChannel(name)) => no_such_channel(&name).into(),
    }
}

fn show_replicas(naming: Naming) -> ResultSet {
    let names = match naming {
        Naming::Replica => ["Server_Id", "Host", "Port", "Source_Id", "Replica_UUID"],
        Naming::Slave => ["Server_id", "Host", "Port", "Master_id", "Slave_UUID"],
    };
    // The relay has no replicas of its own.
    ResultSet {
        columns: vec![
            Col::int(names[0]),
            Col::text(names[1]),
            Col::int(names[2]),
            Col::int(names[3]),
            Col::text(names[4]),
        ],
        rows: Vec::new(),
    }
}

fn name_value(vars: Vec<(&'static str, String)>, like: Option<&str>) -> ResultSet {
    ResultSet {
        columns: vec![Col::text("Variable_name"), Col::text("Value")],
        rows: vars
            .into_iter()
            .filter(|(name, _)| like.is_none_or(|p| variables::like(p, name)))
            .map(|(name, value)| vec![Some(name.to_string()), Some(value)])
            .collect(),
    }
}

fn unknown_column(name: &str) -> SqlError {
    SqlError::new(
        1054,
        "42S22",
        format!("Unknown column '{name}' in 'field list'"),
    )
}

/// `SELECT` without `FROM`: one row of variables, functions and literals.
fn select_constants(
    items: &[SelectItem],
    session: &Session,
    shared: &Shared,
) -> Result<ResultSet, SqlError> {
    let mut columns = Vec::new();
    let mut row = Vec::new();
    for item in items {
        let (kind, value) = match &item.expr {
            Expr::Var { name, .. } => {
                let v = variables::select_value(shared, name).ok_or_else(|| {
                    SqlError::new(1193, "HY000", format!("Unknown system variable '{name}'"))
                })?;
                let numeric = v
                    .as_deref()
                    .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()));
                (if numeric { ColKind::Int } else { ColKind::Text }, v)
            }
            Expr::Func(f) => match f {
                Func::Version => (ColKind::Text, Some(shared.settings.version.clone())),
                Func::Database => (ColKind::Text, session.db.clone()),
                Func::User => (
                    ColKind::Text,
                    Some(format!("{}@{}", session.user, session.host)),
                ),
                Func::CurrentUser => (ColKind::Text, Some(format!("{}@%", session.user))),
                Func::Now | Func::UtcTimestamp => {
                    (ColKind::Text, Some(clock::datetime(SystemTime::now())))
                }
                Func::ConnectionId => (ColKind::Int, Some(session.connection_id.to_string())),
            },
            Expr::Int(n) => (ColKind::Int, Some(n.clone())),
            Expr::Str(s) => (ColKind::Text, Some(s.clone())),
            Expr::Null => (ColKind::Text, None),
            Expr::Column(c) => return Err(unknown_column(c)),
            Expr::Star => return Err(SqlError::new(1096, "HY000", "No tables used")),
        };
        columns.push(Col {
            name: item.name.clone(),
            kind,
        });
        row.push(value);
    }
    Ok(ResultSet {
        columns,
        rows: vec![row],
    })
}

/// The selected columns of a performance_schema table.
fn project(table: ResultSet, items: &[SelectItem]) -> Result<ResultSet, SqlError> {
    let mut picks: Vec<(usize, Col)> = Vec::new();
    for item in items {
        match &item.expr {
            Expr::Star => picks.extend(table.columns.iter().cloned().enumerate()),
            Expr::Column(c) => {
                let i = table
                    .columns
                    .iter()
                    .position(|col| col.name.eq_ignore_ascii_case(c))
                    .ok_or_else(|| unknown_column(c))?;
                let kind = table.columns[i].kind;
                picks.push((
                    i,
                    Col {
                        name: item.name.clone(),
                        kind,
                    },
                ));
            }
            _ => {
                return Err(SqlError::new(
                    1235,
                    "42000",
                    "This version of MySQL doesn't yet support 'expressions over \
                     performance_schema tables' (gtid-relay admin endpoint)",
                ));
            }
        }
    }
    Ok(ResultSet {
        rows: table
            .rows
            .iter()
            .map(|r| {
                picks
                    .iter()
                    .map(|(i, _)| r.get(*i).cloned().flatten())
                    .collect()
            })
            .collect(),
        columns: picks.into_iter().map(|(_, c)| c).collect(),
    })
}
