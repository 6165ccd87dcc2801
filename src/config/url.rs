//! Connection URLs: the one place credentials are encoded.

/// A `mysql://` URL; user and password are percent-encoded, the password left out when empty.
pub fn url_for(user: &str, password: &str, host: &str, port: u16) -> String {
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let auth = if password.is_empty() {
        percent_encode(user)
    } else {
        format!("{}:{}", percent_encode(user), percent_encode(password))
    };
    format!("mysql://{auth}@{host}:{port}/")
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_encode_credentials() {
        assert_eq!(
            super::url_for("root", "", "127.0.0.1", 3306),
            "mysql://root@127.0.0.1:3306/"
        );
        assert_eq!(
            super::url_for("a@b", "p@:/%w", "::1", 1),
            "mysql://a%40b:p%40%3A%2F%25w@[::1]:1/"
        );
    }
}
