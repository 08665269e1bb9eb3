//! What last-writer-wins needs to know about a table on the target: its
//! columns in binlog order (names, kinds, generated or not) and its key.
//!
//! Rows events identify columns only by position, so the names come from
//! `information_schema.COLUMNS` ordered by `ORDINAL_POSITION` (binlog order),
//! and the key from `COLUMN_KEY = 'PRI'` (the primary key, or the first
//! NOT NULL unique key MySQL promotes when there is none: the key the server's
//! row applier locates rows by).

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use super::ConflictError;

/// How values of a column are written as SQL literals and rendered in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// Integer, DECIMAL and YEAR columns: exact decimal text.
    Exact,
    Float,
    Double,
    /// CHAR, VARCHAR and TEXT: compared byte for byte, not by collation.
    Text,
    /// BINARY, VARBINARY, BLOB, BIT, GEOMETRY and anything else stored as bytes.
    Bytes,
    Enum,
    Set,
    Date,
    Datetime,
    Time,
    /// Binlogged as seconds since the epoch (UTC).
    Timestamp,
    Json,
}

impl ColumnKind {
    pub fn of(data_type: &str) -> ColumnKind {
        match data_type.to_ascii_lowercase().as_str() {
            "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "decimal"
            | "numeric" | "year" => ColumnKind::Exact,
            "float" => ColumnKind::Float,
            "double" | "real" => ColumnKind::Double,
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" => {
                ColumnKind::Text
            }
            "enum" => ColumnKind::Enum,
            "set" => ColumnKind::Set,
            "date" => ColumnKind::Date,
            "datetime" => ColumnKind::Datetime,
            "time" => ColumnKind::Time,
            "timestamp" => ColumnKind::Timestamp,
            "json" => ColumnKind::Json,
            _ => ColumnKind::Bytes,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub kind: ColumnKind,
    /// Generated columns are computed by the server: never compared or written.
    pub generated: bool,
    /// Character set of a text column (checked to be a plain name, used as an
    /// introducer in literals so that comparisons use the column's collation
    /// and its index).
    pub charset: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    pub schema: String,
    pub table: String,
    pub columns: Vec<Column>,
    /// Positions of the key columns, in table order; empty without a usable key.
    pub key: Vec<usize>,
}

impl TableInfo {
    pub fn qualified(&self) -> String {
        format!(
            "{}.{}",
            crate::conn::quote_ident(&self.schema),
            crate::conn::quote_ident(&self.table)
        )
    }

    pub fn display_name(&self) -> String {
        format!("{}.{}", self.schema, self.table)
    }

    /// Columns the relay compares and writes (not generated ones).
    pub fn stored(&self) -> impl Iterator<Item = (usize, &Column)> {
        self.columns
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.generated)
    }

    /// Read the table's description; None when the table does not exist.
    pub async fn load(
        conn: &mut Conn,
        schema: &str,
        table: &str,
    ) -> Result<Option<TableInfo>, ConflictError> {
        type ColumnRow = (String, String, String, String, Option<String>);
        let rows: Vec<ColumnRow> = conn
            .exec(
                "SELECT COLUMN_NAME, DATA_TYPE, EXTRA, COLUMN_KEY, CHARACTER_SET_NAME \
                 FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                (schema, table),
            )
            .await
            .map_err(|e| ConflictError::sql("reading the table's columns", &e))?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut columns = Vec::with_capacity(rows.len());
        let mut key = Vec::new();
        for (i, (name, data_type, extra, column_key, charset)) in rows.into_iter().enumerate() {
            let extra = extra.to_ascii_uppercase();
            if column_key == "PRI" {
                key.push(i);
            }
            columns.push(Column {
                name,
                kind: ColumnKind::of(&data_type),
                generated: extra.contains("VIRTUAL GENERATED")
                    || extra.contains("STORED GENERATED"),
                charset: charset.filter(|c| {
                    !c.is_empty() && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                }),
            });
        }
        Ok(Some(TableInfo {
            schema: schema.to_string(),
            table: table.to_string(),
            columns,
            key,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_types_map_to_kinds() {
        assert_eq!(ColumnKind::of("BIGINT"), ColumnKind::Exact);
        assert_eq!(ColumnKind::of("decimal"), ColumnKind::Exact);
        assert_eq!(ColumnKind::of("varchar"), ColumnKind::Text);
        assert_eq!(ColumnKind::of("blob"), ColumnKind::Bytes);
        assert_eq!(ColumnKind::of("geometry"), ColumnKind::Bytes);
        assert_eq!(ColumnKind::of("timestamp"), ColumnKind::Timestamp);
        assert_eq!(ColumnKind::of("json"), ColumnKind::Json);
    }
}
