//! Output formats for query results and connection variables.

use mysql_async::consts::ColumnType;
use mysql_async::Value;
use serde_json::json;

use crate::client::{ConnectionInfo, ResultSet};

fn is_numeric(t: ColumnType) -> bool {
    use ColumnType::*;
    matches!(
        t,
        MYSQL_TYPE_TINY
            | MYSQL_TYPE_SHORT
            | MYSQL_TYPE_LONG
            | MYSQL_TYPE_INT24
            | MYSQL_TYPE_LONGLONG
            | MYSQL_TYPE_FLOAT
            | MYSQL_TYPE_DOUBLE
            | MYSQL_TYPE_DECIMAL
            | MYSQL_TYPE_NEWDECIMAL
    )
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Double(d) => Some(d.to_string()),
        other => Some(other.as_sql(true).trim_matches('\'').to_string()),
    }
}

/// A JSON value for a cell: NULL -> null, numeric columns -> numbers (exact decimals that do
/// not fit a JSON number stay strings), everything else -> strings.
pub fn cell_json(v: &Value, t: ColumnType) -> serde_json::Value {
    let Some(s) = text(v) else {
        return serde_json::Value::Null;
    };
    if is_numeric(t) {
        if let Ok(i) = s.parse::<i64>() {
            return json!(i);
        }
        if let Ok(u) = s.parse::<u64>() {
            return json!(u);
        }
        if let Ok(f) = s.parse::<f64>() {
            if f.is_finite() && f.to_string() == s {
                return json!(f);
            }
        }
    }
    json!(s)
}

/// A result set as a JSON array of objects (column name -> value).
pub fn result_json(rs: &ResultSet) -> serde_json::Value {
    serde_json::Value::Array(
        rs.rows
            .iter()
            .map(|row| {
                let obj: serde_json::Map<String, serde_json::Value> = rs
                    .columns
                    .iter()
                    .zip(row.iter().zip(rs.column_types.iter()))
                    .map(|(c, (v, t))| (c.clone(), cell_json(v, *t)))
                    .collect();
                serde_json::Value::Object(obj)
            })
            .collect(),
    )
}

/// A result set as an aligned text table, like the mysql client's.
pub fn result_table(rs: &ResultSet) -> String {
    let cells: Vec<Vec<String>> = rs
        .rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|v| text(v).unwrap_or_else(|| "NULL".into()))
                .collect()
        })
        .collect();
    let mut widths: Vec<usize> = rs.columns.iter().map(|c| c.chars().count()).collect();
    for row in &cells {
        for (i, c) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let sep = format!(
        "+{}+\n",
        widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("+")
    );
    let line = |vals: &[String]| {
        let parts: Vec<String> = vals
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!(" {v}{} ", " ".repeat(w - v.chars().count())))
            .collect();
        format!("|{}|\n", parts.join("|"))
    };
    let mut out = sep.clone();
    out.push_str(&line(&rs.columns));
    out.push_str(&sep);
    for row in &cells {
        out.push_str(&line(row));
    }
    out.push_str(&sep);
    out
}

/// The variables `doltctl env` and `doltctl exec` hand to other programs: the URL (with the
/// database, if one was asked for), and what the mysql/mariadb clients read from the
/// environment (`MYSQL_HOST`, `MYSQL_TCP_PORT`, `MYSQL_PWD` when there is a password,
/// `MYSQL_UNIX_PORT`), plus `MYSQL_DATABASE` (the convention of MySQL images and many apps)
/// when a database was asked for.
pub fn env_vars(info: &ConnectionInfo) -> Vec<(String, String)> {
    let url = info.url();
    let mut v = vec![
        ("DATABASE_URL".to_string(), url.clone()),
        ("DOLTCTL_URL".to_string(), url),
        ("MYSQL_HOST".to_string(), info.host.clone()),
        ("MYSQL_TCP_PORT".to_string(), info.port.to_string()),
    ];
    if !info.password.is_empty() {
        v.push(("MYSQL_PWD".into(), info.password.clone()));
    }
    if let Some(s) = &info.socket {
        v.push(("MYSQL_UNIX_PORT".into(), s.to_string_lossy().into_owned()));
    }
    if let Some(db) = &info.database {
        v.push(("MYSQL_DATABASE".into(), db.clone()));
    }
    v.push(("DOLT_HOST".into(), info.host.clone()));
    v.push(("DOLT_PORT".into(), info.port.to_string()));
    v
}

/// A MySQL option file (`my.cnf`) with the `[client]` user, host and port, and the database
/// in `[mysql]` (the group of the mysql/mariadb shells only: dump and admin tools refuse a
/// `database` option). Never the password. The clients take their default user from the login
/// name, not from the environment, so `exec` hands them this file through `MYSQL_HOME`.
pub fn client_option_file(info: &ConnectionInfo) -> String {
    let q = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let mut f = format!(
        "# Written by doltctl exec for the mysql/mariadb clients it runs. No password here:\n\
         # that comes from MYSQL_PWD in the command's environment.\n\
         [client]\nuser = {}\nhost = {}\nport = {}\n",
        q(&info.user),
        q(&info.host),
        info.port
    );
    if let Some(db) = &info.database {
        f.push_str(&format!("[mysql]\ndatabase = {}\n", q(db)));
    }
    f
}

/// Single-quoted for POSIX sh: nothing inside is expanded.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Double-quoted for .env files, with backslash escapes.
pub fn dotenv_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '$' => out.push_str("\\$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Everything a client might look for, as one JSON object.
pub fn connection_json(info: &ConnectionInfo) -> serde_json::Value {
    let vars: serde_json::Map<String, serde_json::Value> = env_vars(info)
        .into_iter()
        .map(|(k, v)| (k, json!(v)))
        .collect();
    json!({
        "url": info.url(),
        "dsn": info.dsn(),
        "host": info.host,
        "port": info.port,
        "user": info.user,
        "password": info.password,
        "socket": info.socket,
        "database": info.database,
        "env": vars,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sh_quoting_survives_hostile_values() {
        assert_eq!(sh_quote("a'b $x"), r"'a'\''b $x'");
        assert_eq!(dotenv_quote("a\"b$x\\"), r#""a\"b\$x\\""#);
    }

    #[test]
    fn option_file_quotes_and_leaves_out_the_password() {
        let info = ConnectionInfo {
            host: "127.0.0.1".into(),
            port: 3307,
            user: r#"a"b\c"#.into(),
            password: "secret".into(),
            socket: None,
            database: Some("app".into()),
            read_only: false,
        };
        let f = client_option_file(&info);
        assert!(
            f.contains("[client]\nuser = \"a\\\"b\\\\c\"\nhost = \"127.0.0.1\"\nport = 3307\n"),
            "{f}"
        );
        assert!(f.ends_with("[mysql]\ndatabase = \"app\"\n"), "{f}");
        assert!(!f.contains("secret"));
        let vars = env_vars(&info);
        let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("MYSQL_PWD"), Some("secret"));
        assert_eq!(get("MYSQL_DATABASE"), Some("app"));
        assert_eq!(
            get("DATABASE_URL"),
            Some("mysql://a%22b%5Cc:secret@127.0.0.1:3307/app")
        );
        let none = env_vars(&ConnectionInfo {
            password: String::new(),
            database: None,
            ..info
        });
        assert!(none
            .iter()
            .all(|(k, _)| k != "MYSQL_PWD" && k != "MYSQL_DATABASE"));
    }

    #[test]
    fn json_cells() {
        assert_eq!(
            cell_json(&Value::NULL, ColumnType::MYSQL_TYPE_LONG),
            json!(null)
        );
        assert_eq!(
            cell_json(
                &Value::Bytes(b"42".to_vec()),
                ColumnType::MYSQL_TYPE_LONGLONG
            ),
            json!(42)
        );
        assert_eq!(
            cell_json(
                &Value::Bytes(b"42".to_vec()),
                ColumnType::MYSQL_TYPE_VAR_STRING
            ),
            json!("42")
        );
        assert_eq!(
            cell_json(
                &Value::Bytes(b"".to_vec()),
                ColumnType::MYSQL_TYPE_VAR_STRING
            ),
            json!("")
        );
    }
}
