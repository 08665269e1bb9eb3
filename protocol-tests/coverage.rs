//! What the relay carries, proven against real MySQL 9.7 masters: every column
//! type, keyless tables, multi-table and oversized transactions, compressed
//! transactions, tagged GTIDs, DDL under non-default session settings, and the
//! two conflict modes. Writes are made on both masters; the masters must end up
//! with equal gtid_executed, equal CHECKSUM TABLE and equal definitions.

use std::time::Instant;

use crate::support::relay::{
    CONVERGE, InProcess, assert_no_error, check_channels, checksums, config_text, same, settle,
};
use crate::support::{Sandbox, wait_for};

/// Start the relay for masters 1 and 2 with `extra` TOML; wait until it runs.
fn relay(sb: &Sandbox, extra: &str) -> InProcess {
    let relay = InProcess::start(&config_text(sb, &[1, 2], extra));
    relay.wait_running();
    relay
}

/// SHOW CREATE TABLE without the AUTO_INCREMENT counter: each master keeps its
/// own (auto_increment_offset differs), it is not data.
fn show_create_table(sb: &Sandbox, i: u8, table: &str) -> String {
    let text = sb.sql(i, &format!("SHOW CREATE TABLE {table}"));
    text.split(' ')
        .filter(|w| !w.starts_with("AUTO_INCREMENT="))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Equal CHECKSUM TABLE and SHOW CREATE TABLE for every base table of `schema`.
fn same_tables(sb: &Sandbox, schema: &str) {
    assert_eq!(
        checksums(sb, 1, schema),
        checksums(sb, 2, schema),
        "checksums of {schema}"
    );
    let tables = same(
        sb,
        &format!(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = '{schema}' \
             ORDER BY table_name"
        ),
    );
    for t in tables.lines() {
        let t = format!("`{schema}`.`{t}`");
        assert_eq!(
            show_create_table(sb, 1, &t),
            show_create_table(sb, 2, &t),
            "SHOW CREATE TABLE {t}"
        );
    }
}

/// The current binlog file's events on master `i` (type and info columns).
fn binlog_events(sb: &Sandbox, i: u8) -> String {
    let file = sb.value(i, "SHOW BINARY LOG STATUS");
    let file = file.split('\t').next().unwrap_or_default().to_string();
    sb.sql(i, &format!("SHOW BINLOG EVENTS IN '{file}'"))
}

const TYPES_DDL: &str = "SET NAMES utf8mb4;
CREATE DATABASE `cöv_类型` CHARACTER SET utf8mb4 COLLATE utf8mb4_0900_ai_ci;
CREATE TABLE `cöv_类型`.`表_types` (
  id INT PRIMARY KEY,
  `列_ti` TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
  mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
  d65 DECIMAL(65,30), d52 DECIMAL(5,2), d10 DECIMAL(10,0), d1 DECIMAL(1,1),
  f FLOAT, dbl DOUBLE,
  b1 BIT(1), b64 BIT(64),
  dt DATE, tm TIME(6), dtm DATETIME(6), ts TIMESTAMP(6) NULL, yr YEAR,
  ch CHAR(10), vc VARCHAR(300), bn BINARY(8), vb VARBINARY(300),
  ch_l1 CHAR(5) CHARACTER SET latin1, vc_bin VARCHAR(20) COLLATE utf8mb4_bin,
  tt TINYTEXT, tx TEXT, mt MEDIUMTEXT, lt LONGTEXT,
  tb TINYBLOB, bl BLOB, mb MEDIUMBLOB, lb LONGBLOB,
  en ENUM('a','b','é','😀'), st SET('x','y','z','表'),
  js JSON,
  g GEOMETRY, pt POINT SRID 4326, pg POLYGON SRID 0, gc GEOMETRYCOLLECTION,
  vec VECTOR(3),
  gen BIGINT AS (bi DIV 2) STORED
) CHARACTER SET utf8mb4;";

const TYPES_COLUMNS: &str = "(id, `列_ti`, tiu, si, siu, mi, miu, i, iu, bi, biu, d65, d52, d10, d1, \
     f, dbl, b1, b64, dt, tm, dtm, ts, yr, ch, vc, bn, vb, ch_l1, vc_bin, tt, tx, mt, lt, \
     tb, bl, mb, lb, en, st, js, g, pt, pg, gc, vec)";

/// Minimum values (and empty strings).
const TYPES_MIN: &str = "-128, 0, -32768, 0, -8388608, 0, -2147483648, 0, -9223372036854775808, 0, \
     -99999999999999999999999999999999999.999999999999999999999999999999, -999.99, -9999999999, -0.9, \
     -3.402823466E+38, -1.7976931348623157E+308, b'0', b'0', \
     '1000-01-01', '-838:59:59.000000', '1000-01-01 00:00:00.000000', '1970-01-02 00:00:00.000001', 1901, \
     '', '', '', '', '', '', '', '', '', '', '', '', '', '', 'a', '', '{}', \
     ST_GeomFromText('POINT(0 0)'), ST_GeomFromText('POINT(-90 -180)', 4326), \
     ST_GeomFromText('POLYGON((0 0,1 0,1 1,0 0))'), ST_GeomFromText('GEOMETRYCOLLECTION EMPTY'), \
     STRING_TO_VECTOR('[-3.4e38, 0, 1.5e-30]')";

/// Maximum values, multi-byte text, binary data, large LOBs.
const TYPES_MAX: &str = "127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295, \
     9223372036854775807, 18446744073709551615, \
     99999999999999999999999999999999999.999999999999999999999999999999, 999.99, 9999999999, 0.9, \
     3.402823466E+38, 1.7976931348623157E+308, b'1', b'1111111111111111111111111111111111111111111111111111111111111111', \
     '9999-12-31', '838:59:59.000000', '9999-12-31 23:59:59.999999', '2038-01-18 23:59:59.999999', 2155, \
     '😀中文ÿ', REPEAT('表', 300), 0x00FF7F80000102FF, UNHEX(REPEAT('00FF7F80', 75)), 'éàü', 'CaSe😀', \
     REPEAT('ü', 127), REPEAT('😀', 16000), REPEAT('漢字', 100000), REPEAT('x😀y', 200000), \
     UNHEX(REPEAT('FF00', 127)), UNHEX(REPEAT('00FF', 32767)), UNHEX(REPEAT('7F80', 300000)), UNHEX(REPEAT('0102FEFF', 300000)), \
     '😀', 'x,y,z,表', \
     '{\"k\": \"😀\", \"n\": [1, 2.5, -3e300, null, true, false, 18446744073709551615, -9223372036854775808], \
       \"o\": {\"深\": \"度\", \"e\": {}, \"a\": []}, \"s\": \"\\\\u0000\\\\n\\\\\\\"\"}', \
     ST_GeomFromText('POLYGON((0 0,10 0,10 10,0 10,0 0),(2 2,3 2,3 3,2 3,2 2))'), \
     ST_GeomFromText('POINT(90 180)', 4326), ST_GeomFromText('POLYGON((-1e300 -1e300,1e300 0,0 1e300,-1e300 -1e300))'), \
     ST_GeomFromText('GEOMETRYCOLLECTION(POINT(1 1),LINESTRING(0 0,1 1,2 3))'), \
     STRING_TO_VECTOR('[3.4e38, -1.5, 3.14159]')";

/// Every column NULL.
const TYPES_NULL: &str = "NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
     NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
     NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL";

const TYPES: &str = "`cöv_类型`.`表_types`";

#[test]
fn every_column_type_replicates_both_ways() {
    let started = Instant::now();
    let sb = Sandbox::start(2, &[]);
    let relay = relay(&sb, "");

    sb.sql(1, TYPES_DDL);
    sb.sql(
        1,
        &format!(
            "SET NAMES utf8mb4; INSERT INTO {TYPES} {TYPES_COLUMNS} VALUES \
             (1, {TYPES_MIN}), (2, {TYPES_MAX}), (3, {TYPES_NULL})"
        ),
    );
    settle(&sb, &relay);
    // Master 2 writes the same shapes, then rewrites master 1's rows.
    sb.sql(
        2,
        &format!(
            "SET NAMES utf8mb4; INSERT INTO {TYPES} {TYPES_COLUMNS} VALUES \
             (11, {TYPES_MAX}), (12, {TYPES_NULL}), (13, {TYPES_MIN});
             UPDATE {TYPES} t JOIN {TYPES} s ON s.id = 2 SET t.`列_ti` = s.`列_ti`, t.biu = s.biu, \
               t.d65 = s.d65, t.b64 = s.b64, t.dtm = s.dtm, t.vc = s.vc, t.lt = s.lt, t.lb = s.lb, \
               t.js = s.js, t.pt = s.pt, t.vec = s.vec, t.en = s.en, t.st = s.st WHERE t.id = 1;
             UPDATE {TYPES} SET `列_ti` = NULL, lt = NULL, js = NULL, g = NULL, vec = NULL WHERE id = 2;
             UPDATE {TYPES} SET tiu = 7, tx = '改', js = JSON_ARRAY('😀', 1), \
               pg = ST_GeomFromText('POLYGON((0 0,2 0,0 2,0 0))') WHERE id = 3;
             DELETE FROM {TYPES} WHERE id = 13"
        ),
    );
    settle(&sb, &relay);
    // Master 1 rewrites and deletes master 2's rows.
    sb.sql(
        1,
        &format!(
            "SET NAMES utf8mb4; UPDATE {TYPES} SET lb = NULL, mt = CONCAT(mt, '尾'), \
               ts = '2001-02-03 04:05:06.789012', yr = 2000, b1 = b'0' WHERE id = 11;
             UPDATE {TYPES} SET bi = -1, d65 = 0.000000000000000000000000000001, f = 1.5, \
               dbl = -0.0, tm = '-00:00:00.000001' WHERE id = 12;
             DELETE FROM {TYPES} WHERE id IN (2, 11)"
        ),
    );
    settle(&sb, &relay);

    // JSON partial updates: the source logs only the changed paths.
    sb.sql(
        1,
        &format!(
            "SET NAMES utf8mb4; SET SESSION binlog_row_image = 'MINIMAL', \
               binlog_row_value_options = 'PARTIAL_JSON';
             INSERT INTO {TYPES} (id, js) VALUES (20, JSON_OBJECT('a', REPEAT('x', 3000), 'b', JSON_ARRAY(1, 2, 3), 'c', '中'));
             UPDATE {TYPES} SET js = JSON_SET(js, '$.a', 'short', '$.b[1]', '😀') WHERE id = 20;
             UPDATE {TYPES} SET js = JSON_REPLACE(js, '$.c', 'z') WHERE id = 20;
             UPDATE {TYPES} SET js = JSON_REMOVE(js, '$.b[0]') WHERE id = 20"
        ),
    );
    assert!(
        binlog_events(&sb, 1).contains("Update_rows_partial"),
        "the source did not log a partial JSON update"
    );
    sb.sql(
        2,
        &format!(
            "SET SESSION binlog_row_image = 'MINIMAL', binlog_row_value_options = 'PARTIAL_JSON';
             UPDATE {TYPES} SET js = JSON_SET(js, '$.m2', JSON_OBJECT('k', 2)) WHERE id = 20;
             UPDATE {TYPES} SET js = JSON_SET(js, '$.k', 'v') WHERE id = 1"
        ),
    );
    settle(&sb, &relay);

    same_tables(&sb, "cöv_类型");
    assert_eq!(
        same(&sb, &format!("SELECT COUNT(*) FROM {TYPES}")).trim(),
        "4"
    );
    // Spot checks through SQL, not only checksums.
    same(
        &sb,
        &format!(
            "SELECT id, HEX(b64), d65, ST_AsText(pt), ST_SRID(pt), VECTOR_TO_STRING(vec), js, \
             LENGTH(lt), SHA2(lb, 256), en, st FROM {TYPES} ORDER BY id"
        ),
    );
    assert_eq!(
        sb.value(
            2,
            &format!("SELECT js->>'$.b[0]' FROM {TYPES} WHERE id = 20")
        ),
        "😀"
    );
    assert_no_error(&relay);
    eprintln!("every_column_type: {:?}", started.elapsed());
}

#[test]
fn keyless_tables_and_multi_table_transactions() {
    let started = Instant::now();
    let sb = Sandbox::start(2, &[]);
    let relay = relay(&sb, "");
    sb.sql(
        1,
        "CREATE DATABASE k;
         CREATE TABLE k.nopk (a INT, b VARCHAR(10), c BLOB);
         CREATE TABLE k.uk (a INT NOT NULL, b INT, UNIQUE KEY (a));
         CREATE TABLE k.acct (id INT PRIMARY KEY, bal DECIMAL(12,2));
         CREATE TABLE k.log (id INT AUTO_INCREMENT PRIMARY KEY, msg VARCHAR(50));
         INSERT INTO k.nopk VALUES (1,'x',NULL),(1,'x',NULL),(1,'x',NULL),(2,'y','b'),(2,'y','b'),(NULL,NULL,NULL);
         INSERT INTO k.uk VALUES (1,1),(2,NULL),(3,3);
         INSERT INTO k.acct VALUES (1,100),(2,100),(3,100)",
    );
    settle(&sb, &relay);
    // Duplicate rows: each update/delete touches exactly one of identical rows.
    sb.sql(
        2,
        "UPDATE k.nopk SET b = 'x2' WHERE a = 1 LIMIT 1;
         DELETE FROM k.nopk WHERE a = 2 LIMIT 1;
         UPDATE k.nopk SET c = 'blob' WHERE a IS NULL;
         UPDATE k.uk SET b = 20 WHERE a = 2;
         BEGIN;
           UPDATE k.acct SET bal = bal - 30 WHERE id = 1;
           UPDATE k.acct SET bal = bal + 30 WHERE id = 2;
           INSERT INTO k.log (msg) VALUES ('m2 transfer');
           DELETE FROM k.nopk WHERE a = 1 AND b = 'x' LIMIT 1;
           INSERT INTO k.nopk VALUES (3, 'z', 'q');
         COMMIT",
    );
    settle(&sb, &relay);
    sb.sql(
        1,
        "DELETE FROM k.nopk WHERE a = 1 LIMIT 1;
         UPDATE k.nopk SET a = 4 WHERE a = 3;
         BEGIN;
           INSERT INTO k.log (msg) VALUES ('m1 a'), ('m1 b');
           UPDATE k.acct SET bal = bal * 2;
           DELETE FROM k.uk WHERE a = 3;
           INSERT INTO k.uk VALUES (3, 33);
           UPDATE k.nopk SET b = 'same' WHERE b IS NULL OR b = 'y';
         COMMIT;
         BEGIN; INSERT INTO k.log (msg) VALUES ('rolled back'); ROLLBACK",
    );
    settle(&sb, &relay);
    same_tables(&sb, "k");
    assert_eq!(
        same(&sb, "SELECT COUNT(*) FROM k.nopk WHERE a = 1").trim(),
        "1"
    );
    same(&sb, "SELECT a, b, HEX(c) FROM k.nopk ORDER BY a, b, c");
    assert_no_error(&relay);
    eprintln!("keyless: {:?}", started.elapsed());
}

#[test]
fn a_transaction_larger_than_the_statement_budget_applies_atomically() {
    let started = Instant::now();
    let sb = Sandbox::start(2, &[]);
    let relay = relay(&sb, "[apply]\nmax_statement_bytes = 65536\n");
    sb.sql(
        1,
        "CREATE DATABASE big;
         CREATE TABLE big.a (id INT PRIMARY KEY, pad VARCHAR(2000));
         CREATE TABLE big.b (id INT PRIMARY KEY, pad VARCHAR(2000), n INT);
         CREATE TABLE big.nopk (pad VARCHAR(2000))",
    );
    settle(&sb, &relay);
    let rows = 4000;
    // One statement of ~4 MB: one Table_map, then ~500 Rows events, the last
    // with STMT_END; the relay must cut it into many BINLOG statements.
    sb.sql(
        1,
        &format!(
            "SET SESSION cte_max_recursion_depth = 100000;
             INSERT INTO big.a WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {rows})
               SELECT n, REPEAT(CHAR(65 + n % 26), 1000) FROM s"
        ),
    );
    // Sample master 2 while it applies: it must show all rows or none.
    let mut seen = Vec::new();
    wait_for("big.a on m2", CONVERGE, || {
        check_channels(&relay);
        let n = sb
            .try_sql(2, "SELECT COUNT(*) FROM big.a")
            .unwrap_or_default()
            .trim()
            .to_string();
        seen.push(n.clone());
        (n == rows.to_string()).then_some(())
    });
    assert!(
        seen.iter().all(|n| n == "0" || n == &rows.to_string()),
        "partial transaction visible on m2: {seen:?}"
    );
    settle(&sb, &relay);
    // Several tables interleaved in one multi-MB transaction, from master 2,
    // including updates (before and after images) and a keyless table.
    sb.sql(
        2,
        &format!(
            "SET SESSION cte_max_recursion_depth = 100000;
             BEGIN;
             INSERT INTO big.b WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {rows})
               SELECT n, REPEAT('表', 300), n FROM s;
             UPDATE big.a SET pad = REPEAT('u', 1500) WHERE id % 2 = 0;
             INSERT INTO big.nopk SELECT pad FROM big.a WHERE id <= 1000;
             UPDATE big.b SET n = -n WHERE id % 3 = 0;
             DELETE FROM big.a WHERE id % 5 = 0;
             COMMIT"
        ),
    );
    let mut seen = Vec::new();
    wait_for("big.b on m1", CONVERGE, || {
        check_channels(&relay);
        let n = sb
            .try_sql(
                1,
                "SELECT (SELECT COUNT(*) FROM big.b), (SELECT COUNT(*) FROM big.a), \
                 (SELECT COUNT(*) FROM big.nopk)",
            )
            .unwrap_or_default()
            .trim()
            .to_string();
        seen.push(n.clone());
        (n == format!("{rows}\t{}\t1000", rows - rows / 5)).then_some(())
    });
    assert!(
        seen.iter()
            .all(|n| n == &format!("0\t{rows}\t0") || n == &format!("{rows}\t3200\t1000")),
        "partial transaction visible on m1: {seen:?}"
    );
    let gtids = settle(&sb, &relay);
    same_tables(&sb, "big");
    // Each side applied each big transaction as one GTID.
    let m1 = sb.server_uuid(1);
    let m2 = sb.server_uuid(2);
    assert_eq!(gtids, format!("{m1}:1-5,{m2}:1"));
    assert_no_error(&relay);
    eprintln!("large transaction: {:?}", started.elapsed());
}

#[test]
fn compressed_transactions_replicate() {
    let started = Instant::now();
    let sb = Sandbox::start(2, &["--binlog-transaction-compression=ON"]);
    let relay = relay(&sb, "");
    sb.sql(
        1,
        "SET NAMES utf8mb4; CREATE DATABASE z;
         CREATE TABLE z.t (id INT PRIMARY KEY, v VARCHAR(100), j JSON, b LONGBLOB);
         CREATE TABLE z.nopk (a INT, b TEXT);
         INSERT INTO z.t VALUES (1, '😀', '{\"a\": 1}', REPEAT('ab', 100000)), (2, NULL, NULL, NULL);
         BEGIN; INSERT INTO z.nopk VALUES (1, 'x'), (1, 'x'); UPDATE z.t SET v = '中' WHERE id = 2; COMMIT",
    );
    assert!(
        binlog_events(&sb, 1).contains("Transaction_payload"),
        "the source did not compress"
    );
    settle(&sb, &relay);
    sb.sql(
        2,
        "SET SESSION cte_max_recursion_depth = 100000;
         INSERT INTO z.t WITH RECURSIVE s(n) AS (SELECT 10 UNION ALL SELECT n + 1 FROM s WHERE n < 3000)
           SELECT n, REPEAT('v', 100), JSON_OBJECT('n', n), NULL FROM s;
         UPDATE z.t SET b = NULL, j = JSON_ARRAY(1) WHERE id = 1;
         DELETE FROM z.nopk LIMIT 1;
         ALTER TABLE z.t ADD COLUMN extra INT DEFAULT 7",
    );
    assert!(binlog_events(&sb, 2).contains("Transaction_payload"));
    settle(&sb, &relay);
    sb.sql(
        1,
        "DELETE FROM z.t WHERE id % 2 = 0; UPDATE z.t SET extra = id",
    );
    settle(&sb, &relay);
    same_tables(&sb, "z");
    // The relayed transactions are compressed again on the peer (its own setting).
    assert!(binlog_events(&sb, 2).matches("Transaction_payload").count() >= 3);
    assert_no_error(&relay);
    eprintln!("compressed: {:?}", started.elapsed());
}

#[test]
fn tagged_gtids_keep_their_tag() {
    let started = Instant::now();
    let sb = Sandbox::start(2, &[]);
    let relay = relay(&sb, "");
    let (m1, m2) = (sb.server_uuid(1), sb.server_uuid(2));
    sb.sql(
        1,
        "SET GTID_NEXT = 'AUTOMATIC:mytag';
         CREATE DATABASE tg;
         CREATE TABLE tg.t (id INT PRIMARY KEY, v INT);
         INSERT INTO tg.t VALUES (1, 1), (2, 2);
         BEGIN; UPDATE tg.t SET v = 10 WHERE id = 1; DELETE FROM tg.t WHERE id = 2; COMMIT;
         SET GTID_NEXT = 'AUTOMATIC';
         INSERT INTO tg.t VALUES (3, 3)",
    );
    sb.sql(
        2,
        "SET GTID_NEXT = 'AUTOMATIC:other_tag_2';
         CREATE TABLE IF NOT EXISTS tg.m2 (id INT PRIMARY KEY);
         SET GTID_NEXT = 'AUTOMATIC:mytag';
         INSERT INTO tg.m2 VALUES (1)",
    );
    let gtids = settle(&sb, &relay);
    for (i, uuid) in [(1, &m1), (2, &m2)] {
        let expect = if i == 1 {
            format!("{uuid}:1:mytag:1-4")
        } else {
            format!("{uuid}:mytag:1:other_tag_2:1")
        };
        for on in [1, 2] {
            assert_eq!(
                sb.value(
                    on,
                    &format!("SELECT GTID_SUBSET('{expect}', @@GLOBAL.gtid_executed)")
                ),
                "1",
                "{expect} on m{on}: {gtids}"
            );
        }
    }
    // The peers' binlogs carry the tagged GTIDs (downstream replicas see them).
    assert!(binlog_events(&sb, 2).contains(&format!("'{m1}:mytag:4'")));
    assert!(binlog_events(&sb, 1).contains(&format!("'{m2}:other_tag_2:1'")));
    same_tables(&sb, "tg");
    assert_no_error(&relay);
    eprintln!("tagged: {:?}", started.elapsed());
}

#[test]
fn ddl_runs_with_the_source_session_settings() {
    let started = Instant::now();
    let sb = Sandbox::start(2, &[]);
    // Creating a trigger or function on a binlogging server needs SUPER, which
    // the relay account does not have (error 1419 on the target), or this:
    for i in [1, 2] {
        sb.sql(i, "SET GLOBAL log_bin_trust_function_creators = ON");
    }
    let relay = relay(&sb, "");
    sb.sql(
        1,
        "SET NAMES utf8mb4;
         CREATE DATABASE ddl1 CHARACTER SET latin1;
         CREATE DATABASE ddl2;
         SET SESSION sql_mode = 'ANSI_QUOTES,PIPES_AS_CONCAT,NO_AUTO_VALUE_ON_ZERO,STRICT_ALL_TABLES',
             time_zone = '+05:30', foreign_key_checks = 0;
         USE ddl2;
         CREATE TABLE \"child\" (id INT PRIMARY KEY, pid INT, ts TIMESTAMP NOT NULL DEFAULT '2020-01-01 00:00:00',
           FOREIGN KEY (pid) REFERENCES parent (id));
         CREATE TABLE parent (id INT PRIMARY KEY, name VARCHAR(40));
         CREATE VIEW v AS SELECT 'a' || 'b' AS c, id FROM parent;
         CREATE TRIGGER trg BEFORE INSERT ON parent FOR EACH ROW SET NEW.name = NEW.name || '!';
         CREATE PROCEDURE p(IN x INT) INSERT INTO parent (id, name) VALUES (x, 'p' || x);
         CREATE FUNCTION f(x INT) RETURNS VARCHAR(20) DETERMINISTIC RETURN 'f' || x;
         DELIMITER //
         CREATE PROCEDURE p2() BEGIN DECLARE n INT DEFAULT 0; SET n = n + 1; INSERT INTO parent (id, name) VALUES (100 + n, 'x' || n); END //
         DELIMITER ;
         INSERT INTO parent VALUES (1, 'one');
         INSERT INTO \"child\" VALUES (0, 1, DEFAULT);
         ALTER TABLE parent ADD COLUMN extra TEXT, ADD INDEX (name);
         RENAME TABLE \"child\" TO child2;
         CREATE TABLE tr (a INT); INSERT INTO tr VALUES (1), (2); TRUNCATE TABLE tr;
         SET NAMES latin1;
         CREATE TABLE l1 (c VARCHAR(10) DEFAULT 'é', d VARCHAR(10) COMMENT 'ü') CHARACTER SET utf8mb4;
         SET NAMES utf8mb4;
         SET foreign_key_checks = 1;
         CREATE USER 'app'@'%' IDENTIFIED BY 'secret';
         GRANT SELECT, INSERT ON ddl2.* TO 'app'@'%';
         CREATE USER 'gone'@'localhost' IDENTIFIED BY 'x';
         DROP USER 'gone'@'localhost';
         CREATE TABLE ddl1.dropme (a INT); DROP TABLE ddl1.dropme;
         DROP DATABASE ddl1",
    );
    settle(&sb, &relay);
    sb.sql(
        2,
        "SET SESSION sql_mode = '', time_zone = '-03:00', character_set_client = latin1;
         USE ddl2;
         CREATE TABLE m2t (id INT PRIMARY KEY, ts TIMESTAMP NOT NULL DEFAULT '2021-06-01 12:00:00', c VARCHAR(5) DEFAULT 'ß');
         CALL p(7);
         CALL p2();
         CREATE OR REPLACE VIEW v2 AS SELECT f(id) AS fx, CONCAT(name, 'z') AS n FROM parent;
         DROP VIEW v;
         DROP TRIGGER trg;
         DROP FUNCTION f;
         CREATE FUNCTION f(x INT) RETURNS INT DETERMINISTIC RETURN x * 3;
         GRANT UPDATE ON ddl2.parent TO 'app'@'%';
         CREATE DATABASE ddl3; CREATE TABLE ddl3.t (a INT); RENAME TABLE ddl3.t TO ddl2.from3; DROP DATABASE ddl3",
    );
    settle(&sb, &relay);
    sb.sql(
        1,
        "SET time_zone = '+09:00'; INSERT INTO ddl2.m2t (id) VALUES (1); ALTER TABLE ddl2.m2t ALTER ts SET DEFAULT '2022-02-02 02:02:02';
         REVOKE INSERT ON ddl2.* FROM 'app'@'%'; SET foreign_key_checks = 0; TRUNCATE ddl2.parent",
    );
    settle(&sb, &relay);

    same_tables(&sb, "ddl2");
    same(&sb, "SHOW DATABASES");
    same(&sb, "SHOW CREATE VIEW ddl2.v2");
    same(
        &sb,
        "SELECT table_name, view_definition, definer, character_set_client, collation_connection \
         FROM information_schema.views WHERE table_schema = 'ddl2' ORDER BY table_name",
    );
    let routines = same(
        &sb,
        "SELECT routine_name, routine_type, routine_definition, sql_mode, definer, character_set_client, \
         collation_connection, database_collation FROM information_schema.routines \
         WHERE routine_schema = 'ddl2' ORDER BY routine_name",
    );
    assert_eq!(routines.lines().count(), 3, "{routines}");
    for r in ["PROCEDURE ddl2.p", "PROCEDURE ddl2.p2", "FUNCTION ddl2.f"] {
        same(&sb, &format!("SHOW CREATE {r}"));
    }
    same(
        &sb,
        "SELECT trigger_name FROM information_schema.triggers WHERE trigger_schema = 'ddl2'",
    );
    same(&sb, "SHOW GRANTS FOR 'app'@'%'");
    same(
        &sb,
        "SELECT user, host, plugin, HEX(authentication_string) FROM mysql.user \
         WHERE user IN ('app', 'gone') ORDER BY user",
    );
    // The settings mattered: the source's, not the target's defaults, were used.
    let child = sb.sql(2, "SHOW CREATE TABLE ddl2.child2");
    assert!(child.contains("DEFAULT '2019-12-31 18:30:00'"), "{child}");
    let l1 = sb.sql(2, "SHOW CREATE TABLE ddl2.l1");
    assert!(l1.contains("DEFAULT 'Ã©'"), "{l1}");
    assert_no_error(&relay);
    eprintln!("ddl: {:?}", started.elapsed());
}

/// A row missing on master 2 when master 1 updates it.
fn diverge(sb: &Sandbox, relay: &InProcess) {
    sb.sql(
        1,
        "CREATE DATABASE c; CREATE TABLE c.t (id INT PRIMARY KEY, v INT);
         INSERT INTO c.t VALUES (1, 1), (2, 2)",
    );
    settle(sb, relay);
    sb.sql(2, "SET sql_log_bin = 0; DELETE FROM c.t WHERE id = 1");
    sb.sql(1, "UPDATE c.t SET v = 10 WHERE id = 1");
}

#[test]
fn strict_conflict_stops_one_channel_until_fixed() {
    let started = Instant::now();
    let sb = Sandbox::start(2, &[]);
    let relay = relay(&sb, "");
    diverge(&sb, &relay);
    let err = wait_for("m1->m2 to stop on the missing row", CONVERGE, || {
        relay.channel("m1->m2").last_sql_error
    });
    assert_eq!(err.errno, 1032, "{}", err.message);
    let m1 = sb.server_uuid(1);
    assert!(err.message.contains(&m1), "{}", err.message);
    let status = relay.channel("m1->m2");
    assert!(!status.sql_running, "m1->m2 still applying");
    // The other direction keeps replicating.
    sb.sql(2, "INSERT INTO c.t VALUES (3, 3)");
    wait_for("m2's insert on m1", CONVERGE, || {
        (sb.value(1, "SELECT COUNT(*) FROM c.t WHERE id = 3") == "1").then_some(())
    });
    let back = relay.channel("m2->m1");
    assert!(back.last_sql_error.is_none() && back.sql_running);
    // Fix the target by hand, restart: the failed transaction is sent again.
    sb.sql(2, "SET sql_log_bin = 0; INSERT INTO c.t VALUES (1, 1)");
    relay.stop();
    let relay = self::relay(&sb, "");
    settle(&sb, &relay);
    same_tables(&sb, "c");
    assert_eq!(sb.value(2, "SELECT v FROM c.t WHERE id = 1"), "10");
    assert_no_error(&relay);
    eprintln!("strict: {:?}", started.elapsed());
}

#[test]
fn idempotent_mode_skips_the_missing_row() {
    let started = Instant::now();
    let sb = Sandbox::start(2, &[]);
    let relay = relay(&sb, "[apply]\nconflict = \"idempotent\"\n");
    diverge(&sb, &relay);
    // Also a duplicate key: the row exists on master 1 only without binlog.
    sb.sql(1, "SET sql_log_bin = 0; INSERT INTO c.t VALUES (5, 0)");
    sb.sql(2, "INSERT INTO c.t VALUES (5, 5)");
    sb.sql(1, "INSERT INTO c.t VALUES (6, 6)");
    settle(&sb, &relay);
    assert_no_error(&relay);
    // The update of the missing row was ignored, the duplicate overwritten.
    assert_eq!(sb.value(2, "SELECT COUNT(*) FROM c.t WHERE id = 1"), "0");
    assert_eq!(sb.value(1, "SELECT v FROM c.t WHERE id = 5"), "5");
    same(&sb, "SELECT * FROM c.t WHERE id <> 1 ORDER BY id");
    eprintln!("idempotent: {:?}", started.elapsed());
}
