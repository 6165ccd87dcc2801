//! Splits SQL text into statements the way the mysql client does: semicolons inside quotes,
//! backticks and comments do not end a statement, and `DELIMITER` lines (as in mysqldump
//! output) change the delimiter.

/// One statement with the 1-based line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub line: usize,
    pub text: String,
}

/// Splits a script into statements: `;` (or a `DELIMITER`) outside strings and comments ends
/// one.
pub fn split(sql: &str) -> Vec<Statement> {
    let mut out = Vec::new();
    let mut delim = ";".to_string();
    let mut cur = String::new();
    let mut start_line = 1;
    let mut line = 1;
    let b = sql.as_bytes();
    let mut i = 0;
    let flush = |cur: &mut String, start_line: usize, out: &mut Vec<Statement>| {
        let t = cur.trim();
        if !t.is_empty() {
            out.push(Statement {
                line: start_line,
                text: t.to_string(),
            });
        }
        cur.clear();
    };
    while i < b.len() {
        let at_line_start = i == 0 || b[i - 1] == b'\n';
        if at_line_start && cur.trim().is_empty() {
            // `DELIMITER x` is a client command, only valid on a line of its own.
            let rest = &sql[i..];
            let l = rest.split('\n').next().unwrap_or("");
            let lt = l.trim_start();
            // `get`: byte 10 may fall inside a multi-byte character (`delimite€`).
            if lt
                .get(..10)
                .is_some_and(|w| w.eq_ignore_ascii_case("delimiter "))
            {
                let d = lt[10..].trim();
                if !d.is_empty() {
                    delim = d.to_string();
                }
                i += l.len();
                cur.clear();
                continue;
            }
        }
        let c = b[i];
        if cur.trim().is_empty() && !c.is_ascii_whitespace() {
            start_line = line;
        }
        if sql[i..].starts_with(delim.as_str()) {
            flush(&mut cur, start_line, &mut out);
            i += delim.len();
            continue;
        }
        match c {
            b'\'' | b'"' | b'`' => {
                let end = skip_quoted(b, i, c);
                line += count_newlines(&b[i..end]);
                cur.push_str(&sql[i..end]);
                i = end;
            }
            b'-' if b.get(i + 1) == Some(&b'-')
                && b.get(i + 2).is_none_or(|x| x.is_ascii_whitespace()) =>
            {
                i = skip_line(b, i);
            }
            b'#' => i = skip_line(b, i),
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let end = sql[i + 2..].find("*/").map_or(b.len(), |p| i + 2 + p + 2);
                let comment = &sql[i..end];
                line += count_newlines(comment.as_bytes());
                // /*! ... */ are executable comments in mysqldump output: keep them.
                if comment.starts_with("/*!") {
                    cur.push_str(comment);
                } else {
                    cur.push(' ');
                }
                i = end;
            }
            _ => {
                if c == b'\n' {
                    line += 1;
                }
                let ch_len = utf8_len(c);
                cur.push_str(&sql[i..i + ch_len]);
                i += ch_len;
            }
        }
    }
    flush(&mut cur, start_line, &mut out);
    out
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

fn count_newlines(b: &[u8]) -> usize {
    b.iter().filter(|c| **c == b'\n').count()
}

/// Index just past the closing quote; doubled quotes and backslash escapes stay inside.
fn skip_quoted(b: &[u8], start: usize, q: u8) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        if b[i] == b'\\' && q != b'`' {
            i += 2;
            continue;
        }
        if b[i] == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

/// Index of the newline ending this comment (kept, so line counting sees it).
fn skip_line(b: &[u8], start: usize) -> usize {
    b[start..]
        .iter()
        .position(|c| *c == b'\n')
        .map_or(b.len(), |p| start + p)
}

// Statement classification, by the first words of a statement.

/// Statements that only read: running one twice changes nothing.
pub fn is_read_only_statement(stmt: &str) -> bool {
    let w = first_words(stmt);
    match w.first().map(String::as_str) {
        Some("SHOW" | "DESCRIBE" | "DESC" | "EXPLAIN" | "USE" | "HELP") => true,
        // SELECT ... INTO OUTFILE/DUMPFILE writes a file.
        Some("SELECT") => {
            !stmt.to_ascii_uppercase().contains("INTO OUTFILE")
                && !stmt.to_ascii_uppercase().contains("INTO DUMPFILE")
        }
        _ => false,
    }
}

/// Statements that end a transaction on their own (as in MySQL), or call Dolt procedures
/// that commit.
pub fn commits_implicitly(stmt: &str) -> bool {
    let w = first_words(stmt);
    let first = w.first().map(String::as_str).unwrap_or_default();
    matches!(
        first,
        "CREATE" | "ALTER" | "DROP" | "RENAME" | "TRUNCATE" | "GRANT" | "REVOKE"
    ) || (first == "CALL" && w.get(1).is_some_and(|p| p.starts_with("DOLT_")))
}

/// Statements that would end or reopen the import's transaction; they are skipped.
pub fn is_transaction_control(stmt: &str) -> bool {
    let w = first_words(stmt);
    let w: Vec<&str> = w.iter().map(String::as_str).collect();
    match w.as_slice() {
        ["BEGIN"] | ["BEGIN", "WORK", ..] | ["START", "TRANSACTION", ..] | ["COMMIT", ..] => true,
        ["ROLLBACK", rest @ ..] => !rest.contains(&"TO"),
        ["SET", rest @ ..] => rest
            .iter()
            .take(2)
            .any(|x| x.trim_start_matches("@@").trim_start_matches("SESSION.") == "AUTOCOMMIT"),
        _ => false,
    }
}

/// The first few words, upper-cased, with a leading `/*!NNNNN` version comment opened.
pub fn first_words(stmt: &str) -> Vec<String> {
    let mut s = stmt.trim_start();
    if let Some(rest) = s.strip_prefix("/*!") {
        s = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    s.split(|c: char| c.is_whitespace() || c == '(' || c == '=' || c == ';')
        .filter(|w| !w.is_empty())
        .take(4)
        .map(|w| w.trim_end_matches("*/").to_ascii_uppercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(sql: &str) -> Vec<String> {
        split(sql).into_iter().map(|s| s.text).collect()
    }

    #[test]
    fn semicolons_in_strings_and_comments_do_not_split() {
        let sql = "INSERT INTO t VALUES ('a;b', \"c;d\", `e;f`); -- x; y\n\
                   /* z; */ SELECT 'it''s;' ; # more; here\nSELECT 'a\\';b'";
        assert_eq!(
            texts(sql),
            [
                "INSERT INTO t VALUES ('a;b', \"c;d\", `e;f`)",
                "SELECT 'it''s;'",
                "SELECT 'a\\';b'"
            ]
        );
    }

    #[test]
    fn delimiter_lines_and_mysqldump_comments() {
        let sql = "/*!40101 SET NAMES utf8mb4 */;\nDELIMITER ;;\nCREATE TRIGGER x BEFORE INSERT ON t FOR EACH ROW BEGIN SET @a = 1; END;;\nDELIMITER ;\nSELECT 1;";
        assert_eq!(
            texts(sql),
            [
                "/*!40101 SET NAMES utf8mb4 */",
                "CREATE TRIGGER x BEFORE INSERT ON t FOR EACH ROW BEGIN SET @a = 1; END",
                "SELECT 1"
            ]
        );
    }

    #[test]
    fn statements_know_their_line() {
        let s = split("SELECT 1;\n\n-- c\nSELECT\n'x\ny';\nSELECT 3");
        let lines: Vec<usize> = s.iter().map(|s| s.line).collect();
        assert_eq!(lines, [1, 4, 7]);
    }

    #[test]
    fn unicode_survives() {
        assert_eq!(
            texts("SELECT 'é;ü'; SELECT '日本'"),
            ["SELECT 'é;ü'", "SELECT '日本'"]
        );
    }

    #[test]
    fn transaction_control_is_recognised() {
        for s in [
            "BEGIN",
            "start transaction",
            "COMMIT",
            "commit work",
            "ROLLBACK",
            "SET autocommit=0",
            "SET @@session.autocommit = 1",
            "set AUTOCOMMIT = 1",
        ] {
            assert!(is_transaction_control(s), "{s}");
        }
        for s in [
            "ROLLBACK TO SAVEPOINT a",
            "SET NAMES utf8mb4",
            "/*!40101 SET NAMES utf8mb4 */",
            "INSERT INTO t VALUES ('COMMIT')",
            "BEGIN NOT ATOMIC SELECT 1; END",
        ] {
            assert!(!is_transaction_control(s), "{s}");
        }
    }

    #[test]
    fn implicit_commits_are_recognised() {
        assert!(commits_implicitly("CREATE TABLE t (i int)"));
        assert!(commits_implicitly(
            "/*!40000 ALTER TABLE `t` DISABLE KEYS */"
        ));
        assert!(commits_implicitly("drop table if exists t"));
        assert!(commits_implicitly("CALL dolt_commit('-am', 'x')"));
        assert!(!commits_implicitly("INSERT INTO created VALUES (1)"));
        assert!(!commits_implicitly("/*!40101 SET NAMES utf8mb4 */"));
        assert!(!commits_implicitly("CALL my_proc()"));
    }
}

/// Property tests: no text makes the splitter panic, and statements it produced, joined
/// again with `;\n`, split into the same statements.
#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn texts(sql: &str) -> Vec<String> {
        split(sql).into_iter().map(|s| s.text).collect()
    }

    /// Script pieces: words, operators, closed quoted strings (holding `;`, quotes, escapes and
    /// line breaks), comments of every kind, whitespace and statement ends.
    fn piece() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => prop::sample::select(&["select", "insert", "into", "t", "values", "x1", "42", "é"][..])
                .prop_map(str::to_string),
            2 => prop::sample::select(&["=", ",", "(", ")", "*", "-", "/", "-1", "--x", "$$"][..])
                .prop_map(str::to_string),
            2 => "[a-z;\"'` \n\u{e9}]{0,8}".prop_map(|s| format!("'{}'", s.replace('\'', "''"))),
            1 => "[a-z;'` \n]{0,8}".prop_map(|s| format!("\"{}\"", s.replace('"', "\\\""))),
            1 => "[a-z;'\" \n]{0,8}".prop_map(|s| format!("`{}`", s.replace('`', "``"))),
            1 => "[a-z;'\" ]{0,8}".prop_map(|s| format!("-- {s}\n")),
            1 => "[a-z;'\" ]{0,8}".prop_map(|s| format!("# {s}\n")),
            1 => "[a-z;'\" \n]{0,8}".prop_map(|s| format!("/* {s} */")),
            1 => "[a-z;'\" \n]{0,8}".prop_map(|s| format!("/*!40101 {s} */")),
            3 => prop::sample::select(&[" ", "\n", "\t", " \r\n"][..]).prop_map(str::to_string),
            2 => Just(";".to_string()),
        ]
    }

    /// Found by these tests: `lt[..10]` sliced inside the `€`.
    #[test]
    fn a_line_like_delimiter_with_a_multibyte_character_does_not_panic() {
        assert_eq!(
            texts("delimite\u{20ac}x;\ny;"),
            vec!["delimite\u{20ac}x", "y"]
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_text_never_panics(sql in "\\PC{0,120}") {
            for s in split(&sql) {
                prop_assert!(s.line >= 1 && !s.text.trim().is_empty());
            }
        }

        #[test]
        fn delimiter_lines_never_panic(
            d in "[;$/\u{e9}a-z]{0,3}",
            body in "\\PC{0,40}",
            word in "[dD][eE][lL][iI][mM][iI][tT][eE]\\PC{0,3}",
        ) {
            let _ = split(&format!("{word} {d}\n{body}{d}\n{word}\u{20ac}\nx;"));
        }

        #[test]
        fn joined_statements_split_the_same(pieces in prop::collection::vec(piece(), 0..30)) {
            let first = texts(&pieces.concat());
            let again = texts(&first.join(";\n"));
            prop_assert_eq!(again, first);
        }
    }
}
