//! `doltctl import` against the real dolt binary: values arrive exactly as written, a bad row
//! leaves nothing behind and is named by its line, mysqldump-style SQL, JSONL into a JSON
//! column, and a server restart in the middle of an import (retried, no duplicates).

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use mysql_async::prelude::Queryable;

/// A server with database `app` and the given schema.
fn env_with(schema: &str) -> TestEnv {
    let env = TestEnv::new();
    env.start();
    sql(&env, "", "create database app");
    sql(&env, "app", schema);
    env
}

fn sql(env: &TestEnv, db: &str, q: &str) {
    let mut c = env.doltctl();
    c.arg("sql");
    if !db.is_empty() {
        c.args(["-d", db]);
    }
    c.args(["-q", q]).assert().success();
}

fn write(env: &TestEnv, name: &str, content: &[u8]) -> PathBuf {
    let p = env.dir.path().join(name);
    std::fs::write(&p, content).unwrap();
    p
}

fn import(env: &TestEnv, file: &Path, extra: &[&str]) -> std::process::Output {
    env.doltctl()
        .arg("import")
        .arg(file)
        .args(["--db", "app"])
        .args(extra)
        .output()
        .unwrap()
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "import failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every row of a query, each value as the text the server sent (NULL as None).
fn rows(env: &TestEnv, q: &str) -> Vec<Vec<Option<String>>> {
    let url = format!("{}app", env.url());
    let q = q.to_string();
    block_on(async move {
        let mut c = mysql_async::Conn::from_url(url.as_str()).await.unwrap();
        // Text protocol: values arrive as the server formats them.
        let rs: Vec<mysql_async::Row> = c.query(q).await.unwrap();
        c.disconnect().await.unwrap();
        rs.into_iter()
            .map(|r| {
                r.unwrap()
                    .into_iter()
                    .map(|v| match v {
                        mysql_async::Value::NULL => None,
                        mysql_async::Value::Bytes(b) => Some(String::from_utf8(b).unwrap()),
                        other => Some(other.as_sql(true)),
                    })
                    .collect()
            })
            .collect()
    })
}

fn count(env: &TestEnv, table: &str) -> i64 {
    let url = format!("{}app", env.url());
    block_on(query_i64(&url, &format!("select count(*) from {table}"))).unwrap()[0]
}

/// A CSV field, quoted when needed; `None` is an empty unquoted field (NULL).
fn csv_field(v: &Option<String>) -> String {
    match v {
        None => String::new(),
        Some(s) => format!("\"{}\"", s.replace('"', "\"\"")),
    }
}

#[test]
fn csv_round_trip_of_awkward_values_field_by_field() {
    let env = env_with(
        "create table t (id int primary key, s text, ts datetime(6), tz timestamp(6) null, \
         amount decimal(30,10), big longtext)",
    );
    let big: String = "0123456789abcdef€\n".repeat(70_000); // ~1.3 MB of text
    let s = |v: &str| Some(v.to_string());
    let texts = [
        None,
        s(""),
        s("NULL"),
        s("\\N"),
        s("comma, \"quotes\" and ''single''"),
        s("line\nbreak and\r\nCRLF"),
        s("  leading and trailing spaces  "),
        s("back\\slash \\' \\n \\0"),
        s("unicode: é ü 日本語 🎉 e\u{301} \u{200b}"),
        s("; -- /* not a comment */ #"),
        s("tab\there"),
    ];
    let stamps = [
        "2024-01-01 00:00:00.000000",
        "2024-03-10 02:30:00.123456",
        "1999-12-31 23:59:59.999999",
        "2038-01-19 03:14:07.500000",
    ];
    let mut csv = String::from("id,s,ts,tz,amount,big\n");
    let mut expected = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let ts = stamps[i % stamps.len()].to_string();
        let amount = format!(
            "{}12345678901234567890.0123456789",
            if i % 2 == 0 { "-" } else { "" }
        );
        let amount = amount[..amount.len() - (i % 3)].to_string();
        let big_v = if i == 3 { Some(big.clone()) } else { None };
        let row = [
            Some(i.to_string()),
            text.clone(),
            Some(ts.clone()),
            Some(ts),
            Some(amount),
            big_v,
        ];
        // The id unquoted, the rest quoted unless NULL.
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, v)| if c == 0 { i.to_string() } else { csv_field(v) })
            .collect();
        csv.push_str(&line.join(","));
        csv.push_str(if i % 2 == 0 { "\n" } else { "\r\n" });
        expected.push(row);
    }
    let file = write(&env, "t.csv", csv.as_bytes());
    let out = ok(&import(&env, &file, &["--batch", "3"]));
    assert!(out.contains("imported 11 rows"), "{out}");
    assert!(out.contains(" s ("), "summary names the seconds: {out}");

    let got = rows(&env, "select id, s, ts, tz, amount, big from t order by id");
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        for (c, (gv, ev)) in g.iter().zip(e).enumerate() {
            let ev = match (c, ev) {
                // DECIMAL(30,10) pads the scale: compare as the server formats it.
                (4, Some(a)) => {
                    let frac = a.split('.').nth(1).unwrap_or("");
                    Some(format!("{a}{}", "0".repeat(10 - frac.len())))
                }
                _ => ev.clone(),
            };
            assert_eq!(gv, &ev, "row {:?} column {c}", e[0]);
        }
    }
    env.stop();
}

#[test]
fn a_bad_row_in_the_middle_leaves_nothing_and_names_its_line() {
    let env = env_with("create table t (id int primary key, at datetime(6), note text)");
    sql(
        &env,
        "app",
        "insert into t values (-1, null, 'kept'), (-2, null, 'kept')",
    );
    // 5000 rows in batches of 1000; line 2501 (row 2500, the header is line 1) is bad.
    let mut csv = String::from("id,at,note\n");
    for i in 0..5000 {
        let at = if i == 2499 {
            "not a date"
        } else {
            "2024-01-01 00:00:00.25"
        };
        csv.push_str(&format!("{i},{at},\"row {i}\"\n"));
    }
    let file = write(&env, "rows.csv", csv.as_bytes());
    let out = import(&env, &file, &["--table", "t"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rows.csv:2501:"), "{err}");
    assert!(err.contains("not a date"), "the server's message: {err}");
    assert!(err.contains("nothing from this file was imported"), "{err}");
    assert_eq!(count(&env, "t"), 2, "only the rows from before remain");

    // A duplicate key inside a batch: the row is found by its line too.
    let mut csv = String::from("id,at,note\n");
    for i in 0..3000 {
        let id = if i == 1700 { 5 } else { i };
        csv.push_str(&format!("{id},,\n"));
    }
    let file = write(&env, "dups.csv", csv.as_bytes());
    let err = String::from_utf8_lossy(&import(&env, &file, &["--table", "t"]).stderr).into_owned();
    assert!(err.contains("dups.csv:1702:"), "{err}");
    assert!(err.contains("duplicate"), "{err}");
    assert_eq!(count(&env, "t"), 2);

    // A malformed CSV line, a bad JSONL line, a bad SQL statement: same rules.
    let file = write(&env, "t.csv", b"id,at,note\n1,,\"open\n2,,x\n");
    let err = String::from_utf8_lossy(&import(&env, &file, &[]).stderr).into_owned();
    assert!(
        err.contains("t.csv:2:") && err.contains("never closed"),
        "{err}"
    );
    let file = write(
        &env,
        "t.jsonl",
        b"{\"id\": 1}\n{\"id\": 2}\n\n{\"id\": 3,}\n",
    );
    let err = String::from_utf8_lossy(&import(&env, &file, &[]).stderr).into_owned();
    assert!(
        err.contains("t.jsonl:4:") && err.contains("not a JSON object"),
        "{err}"
    );
    let file = write(&env, "t2.csv", b"id,nope\n1,2\n");
    let err = String::from_utf8_lossy(&import(&env, &file, &["--table", "t"]).stderr).into_owned();
    assert!(
        err.contains("t2.csv:1:") && err.contains("\"nope\""),
        "{err}"
    );
    assert_eq!(count(&env, "t"), 2);

    // SQL whose DDL commits implicitly: on a database without uncommitted changes the import
    // is undone all the same.
    sql(&env, "app", "call dolt_commit('-Am', 'base')");
    let file = write(
        &env,
        "bad.sql",
        b"CREATE TABLE u (i int primary key);\nINSERT INTO u VALUES (1);\n\
          INSERT INTO t VALUES (100, null, 'x');\n\nINSERT INTO u VALUES (1);\n",
    );
    let err = String::from_utf8_lossy(&import(&env, &file, &[]).stderr).into_owned();
    assert!(
        err.contains("bad.sql:5:") && err.contains("duplicate"),
        "{err}"
    );
    assert_eq!(count(&env, "t"), 2);
    let tables = rows(&env, "show tables");
    assert_eq!(
        tables,
        vec![vec![Some("t".to_string())]],
        "table u was undone"
    );
    env.stop();
}

#[test]
fn mysqldump_style_sql_with_semicolons_in_strings_and_comments() {
    let env = env_with("select 1");
    let dump = r#"-- MySQL dump 10.13  Distrib 8.0.36, for Linux (x86_64)
--
-- Host: localhost    Database: shop
/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;
/*!50503 SET NAMES utf8mb4 */;
/*!40103 SET @OLD_TIME_ZONE=@@TIME_ZONE */;
/*!40103 SET TIME_ZONE='+00:00' */;
/*!40014 SET @OLD_UNIQUE_CHECKS=@@UNIQUE_CHECKS, UNIQUE_CHECKS=0 */;
/*!40014 SET @OLD_FOREIGN_KEY_CHECKS=@@FOREIGN_KEY_CHECKS, FOREIGN_KEY_CHECKS=0 */;
/*!40101 SET @OLD_SQL_MODE=@@SQL_MODE, SQL_MODE='NO_AUTO_VALUE_ON_ZERO' */;

--
-- Table structure for table `products`
--

DROP TABLE IF EXISTS `products`;
/*!40101 SET @saved_cs_client     = @@character_set_client */;
CREATE TABLE `products` (
  `id` int NOT NULL AUTO_INCREMENT,
  `name` varchar(100) NOT NULL,
  `note` text,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB AUTO_INCREMENT=6 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_0900_ai_ci;
/*!40101 SET character_set_client = @saved_cs_client */;

LOCK TABLES `products` WRITE;
/*!40000 ALTER TABLE `products` DISABLE KEYS */;
INSERT INTO `products` VALUES (1,'semi;colon','it\'s -- not a comment'),(2,'multi\nline;','/* nope; */'),(3,'back\\slash;',NULL),(4,'hash # and \"dq\"',''),(5,'日本;🎉','x');
/*!40000 ALTER TABLE `products` ENABLE KEYS */;
UNLOCK TABLES;
# a hash comment; with a semicolon
/* a block comment; with one too */
DELIMITER ;;
/*!50003 CREATE*/ /*!50003 TRIGGER `name_trim` BEFORE INSERT ON `products` FOR EACH ROW BEGIN
  SET NEW.name = TRIM(NEW.name);
END */;;
DELIMITER ;
INSERT INTO `products` (name, note) VALUES ('  padded;  ', 'trigger ran');
/*!40103 SET TIME_ZONE=@OLD_TIME_ZONE */;
/*!40101 SET SQL_MODE=@OLD_SQL_MODE */;
/*!40014 SET FOREIGN_KEY_CHECKS=@OLD_FOREIGN_KEY_CHECKS */;
/*!40014 SET UNIQUE_CHECKS=@OLD_UNIQUE_CHECKS */;
-- Dump completed on 2024-01-01 12:00:00
"#;
    let file = write(&env, "shop.sql", dump.as_bytes());
    let out = ok(&import(&env, &file, &["--commit", "load shop"]));
    assert!(out.contains("from ") && out.contains("commit "), "{out}");
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        rows(&env, "select id, name, note from products order by id"),
        vec![
            vec![s("1"), s("semi;colon"), s("it's -- not a comment")],
            vec![s("2"), s("multi\nline;"), s("/* nope; */")],
            vec![s("3"), s("back\\slash;"), None],
            vec![s("4"), s("hash # and \"dq\""), s("")],
            vec![s("5"), s("日本;🎉"), s("x")],
            vec![s("6"), s("padded;"), s("trigger ran")],
        ]
    );
    assert_eq!(
        rows(&env, "select message from dolt_log limit 1"),
        vec![vec![s("load shop")]]
    );
    assert_eq!(
        rows(&env, "select * from dolt_status"),
        Vec::<Vec<_>>::new()
    );
    env.stop();
}

#[test]
fn jsonl_with_nested_values_into_a_json_column() {
    let env = env_with(
        "create table docs (id int primary key, doc json, name varchar(50), n decimal(20,5), \
         flag tinyint, at datetime(3))",
    );
    let lines = [
        r#"{"id": 1, "doc": {"a": [1, 2.5, {"b": null}], "s": "x\"y\n", "u": "日本 🎉"}, "name": "plain", "n": 12345.67890, "flag": true, "at": "2024-02-29 12:34:56.789"}"#,
        r#"{"id": 2, "doc": [], "name": "", "n": -0.00001, "flag": false}"#,
        r#"{"id": 3, "doc": null, "name": null, "n": null, "flag": null, "at": null}"#,
        r#"{"id": 4, "doc": "just a string", "name": "é\u00e9"}"#,
        r#"{"doc": {"deep": {"deeper": {"deepest": [[[]]]}}}, "id": 5}"#,
    ];
    let file = write(&env, "docs.jsonl", (lines.join("\n") + "\n").as_bytes());
    let out = ok(&import(&env, &file, &[]));
    assert!(out.contains("imported 5 rows"), "{out}");
    let got = rows(
        &env,
        "select id, doc, name, n, flag, at from docs order by id",
    );
    for (line, row) in lines.iter().zip(&got) {
        let src: serde_json::Value = serde_json::from_str(line).unwrap();
        let doc = &src["doc"];
        match &row[1] {
            None => assert!(doc.is_null(), "{line}"),
            Some(text) => {
                let stored: serde_json::Value = serde_json::from_str(text).unwrap();
                assert_eq!(&stored, doc, "{line}");
            }
        }
    }
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        got[0][2..],
        [
            s("plain"),
            s("12345.67890"),
            s("1"),
            s("2024-02-29 12:34:56.789")
        ]
    );
    assert_eq!(got[1][2..5], [s(""), s("-0.00001"), s("0")]);
    assert_eq!(got[2][2..], [None, None, None, None]);
    assert_eq!(got[3][2], s("éé"));
    env.stop();
}

#[test]
fn import_survives_a_server_restart_underneath_without_duplicates() {
    // No primary key: a row loaded twice would show in the count.
    let env = env_with("create table t (id int, v varchar(40))");
    let n = 150_000;
    let mut csv = String::from("id,v\n");
    for i in 0..n {
        csv.push_str(&format!("{i},value number {i}\n"));
    }
    let file = write(&env, "t.csv", csv.as_bytes());
    let child = env
        .doltctl_std()
        .args(["import", "--db", "app"])
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Restart once the import is sending rows.
    let url = env.url();
    wait_until("the import to send rows", Duration::from_secs(60), || {
        block_on(query_i64(
            &url,
            "select count(*) from information_schema.processlist \
             where info like 'INSERT INTO%' or info like 'LOAD DATA%'",
        ))
        .map(|v| v[0] > 0)
        .unwrap_or(false)
    });
    let old = env.server().pid;
    env.doltctl().arg("restart").assert().success();
    assert_ne!(env.server().pid, old);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("starting over"),
        "no retry happened: {stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("imported {n} rows")), "{stdout}");
    assert!(stdout.contains("attempts)"), "{stdout}");
    assert_eq!(count(&env, "t"), n as i64);
    assert_eq!(
        rows(&env, "select count(distinct id) from t"),
        vec![vec![Some(n.to_string())]]
    );
    env.stop();
}

#[test]
fn load_data_takes_every_value_exactly_as_the_insert_path_would() {
    // Every column type the fast path vouches for, with the values that trip LOAD DATA up:
    // NULL against "", tabs, backslashes, line breaks, `\N` as text, extremes of each range.
    let schema =
        "create table t (id bigint primary key, ti tinyint unsigned, d decimal(6,2) not null, \
                  f double, s varchar(8), tx text, dt date, ts datetime(3))";
    let csv = "id,ti,d,f,s,tx,dt,ts\n\
               1,255,9999.99,1.5e3,\"\",\"tab\there\",2024-02-29,2024-01-01 23:59:59.999\n\
               2,,-9999.99,-0.25,,\"back\\\\slash \\N and \"\"quotes\"\"\",1000-01-01,2024-01-01\n\
               -9223372036854775808,0,0,0,\"äöüßéèêë\",\"line\nbreak\r\nand crlf\",9999-12-31,2024-06-30 12:00:00\n";
    let expected = [
        vec![
            "-9223372036854775808",
            "0",
            "0.00",
            "0",
            "äöüßéèêë",
            "line\nbreak\r\nand crlf",
            "9999-12-31",
            "2024-06-30 12:00:00",
        ],
        vec![
            "1",
            "255",
            "9999.99",
            "1500",
            "",
            "tab\there",
            "2024-02-29",
            "2024-01-01 23:59:59.999",
        ],
        vec![
            "2",
            "NULL",
            "-9999.99",
            "-0.25",
            "NULL",
            "back\\\\slash \\N and \"quotes\"",
            "1000-01-01",
            "2024-01-01 00:00:00",
        ],
    ];
    let q = "select id, ti, d, f, s, tx, dt, date_format(ts, '%Y-%m-%d %H:%i:%s.%f') from t order by id";
    let mut results = Vec::new();
    // Once with LOAD DATA, once with INSERTs (the server refusing LOAD DATA LOCAL).
    for (local_infile, path) in [(1, "LOAD DATA"), (0, "INSERTs")] {
        let env = env_with(schema);
        sql(
            &env,
            "app",
            &format!("set global local_infile = {local_infile}"),
        );
        let file = write(&env, "t.csv", csv.as_bytes());
        let out = ok(&import(&env, &file, &[]));
        assert!(out.contains("imported 3 rows"), "{out}");
        assert!(out.contains(path), "{path}: {out}");
        results.push(rows(&env, q));
        env.stop();
    }
    assert_eq!(
        results[0], results[1],
        "LOAD DATA and INSERTs load the same values"
    );
    let got = &results[0];
    assert_eq!(got.len(), 3);
    for (g, e) in got.iter().zip(&expected) {
        let g: Vec<String> = g
            .iter()
            .map(|v| v.clone().unwrap_or("NULL".into()))
            .collect();
        let mut e: Vec<String> = e.iter().map(|v| v.to_string()).collect();
        // DATETIME(3) shows 6 fraction digits through date_format.
        e[7] = match e[7].split_once('.') {
            Some((a, f)) => format!("{a}.{f:0<6}"),
            None => format!("{}.000000", e[7]),
        };
        assert_eq!(g, e);
    }
}

#[test]
fn values_load_data_would_coerce_go_through_inserts_and_keep_their_errors() {
    let env = env_with(
        "create table t (id int primary key, d decimal(5,1), s varchar(3), n int not null)",
    );
    // Each file has one value LOAD DATA would silently change; the INSERT path decides.
    let cases = [
        ("id,d,s,n\n1,1.5,abc,1\n2,2.25,x,2\n", None), // rounding: Dolt's INSERT rounds too
        ("id,d,s,n\n1,1.5,abcd,1\n", Some("rows.csv:2:")), // too long
        ("id,d,s,n\n1,1.5,a,1\n1,1.5,b,2\n", Some("rows.csv:3:")), // duplicate key
        ("id,d,s,n\n1,1.5,a,\n", Some("rows.csv:2:")), // NULL into NOT NULL
        ("id,d,s,n\n1,1.5,a,12x\n", Some("rows.csv:2:")), // not a number
    ];
    for (csv, error) in cases {
        sql(&env, "app", "delete from t");
        let file = write(&env, "rows.csv", csv.as_bytes());
        let out = import(&env, &file, &["--table", "t"]);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        match error {
            None => {
                assert!(out.status.success(), "{csv}: {stderr}");
                assert!(stdout.contains("INSERTs"), "{csv}: not LOAD DATA: {stdout}");
            }
            Some(at) => {
                assert_eq!(out.status.code(), Some(1), "{csv}: {stdout}");
                assert!(stderr.contains(at), "{csv}: {stderr}");
                assert!(
                    stderr.contains("nothing from this file was imported"),
                    "{stderr}"
                );
                assert_eq!(count(&env, "t"), 0, "{csv}: rolled back");
            }
        }
    }
    env.stop();
}
