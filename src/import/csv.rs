//! A small streaming RFC 4180 reader that keeps what general CSV crates hide: an empty
//! unquoted field (`a,,b`) is NULL, an empty quoted field (`a,"",b`) is the empty string.
//! Quoted fields may hold commas, doubled quotes and line breaks, all kept byte for byte.
//! Records end at LF or CRLF; blank lines are skipped; a UTF-8 BOM at the start is dropped.

use std::io::BufRead;

/// One record with the 1-based line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub line: usize,
    pub fields: Vec<Option<String>>,
}

/// What is wrong, and on which 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvError {
    pub line: usize,
    pub message: String,
}

pub struct Reader<R> {
    r: R,
    /// Lines consumed so far.
    line: usize,
    bytes: u64,
    buf: Vec<u8>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    FieldStart,
    Unquoted,
    Quoted,
    /// A quote inside a quoted field: either the first of a doubled quote or the closing one.
    QuoteInQuoted,
}

impl<R: BufRead> Reader<R> {
    pub fn new(r: R) -> Self {
        Reader {
            r,
            line: 0,
            bytes: 0,
            buf: Vec::new(),
        }
    }

    /// Bytes consumed so far (for progress).
    pub fn bytes_read(&self) -> u64 {
        self.bytes
    }

    fn read_line(&mut self) -> Result<bool, CsvError> {
        let start = self.buf.len();
        let n = self
            .r
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| CsvError {
                line: self.line + 1,
                message: format!("read error: {e}"),
            })?;
        if n == 0 {
            return Ok(false);
        }
        if self.line == 0 && self.bytes == 0 && self.buf[start..].starts_with(b"\xEF\xBB\xBF") {
            self.buf.drain(start..start + 3);
        }
        self.line += 1;
        self.bytes += n as u64;
        Ok(true)
    }

    /// The next record, or `None` at the end of the input.
    pub fn next_record(&mut self) -> Result<Option<Record>, CsvError> {
        // Skip blank lines.
        loop {
            self.buf.clear();
            if !self.read_line()? {
                return Ok(None);
            }
            if !matches!(self.buf.as_slice(), b"\n" | b"\r\n" | b"") {
                break;
            }
        }
        let start_line = self.line;
        let mut fields = Vec::new();
        let mut field: Vec<u8> = Vec::new();
        let mut state = State::FieldStart;
        let mut quote_line = start_line;
        let mut i = 0;
        loop {
            if i >= self.buf.len() {
                // The end of the input: a record without a final line break.
                if state == State::Quoted {
                    if self.read_line()? {
                        continue;
                    }
                    return Err(CsvError {
                        line: quote_line,
                        message: "a quoted field is never closed (missing \")".into(),
                    });
                }
                fields.push(finish(field, state == State::FieldStart, self.line)?);
                break;
            }
            let c = self.buf[i];
            let eol = c == b'\n' || (c == b'\r' && self.buf.get(i + 1) == Some(&b'\n'));
            match state {
                State::FieldStart | State::Unquoted => {
                    if eol || c == b',' {
                        let null = state == State::FieldStart;
                        fields.push(finish(std::mem::take(&mut field), null, self.line)?);
                        if eol {
                            break;
                        }
                        state = State::FieldStart;
                    } else if c == b'"' {
                        if state == State::Unquoted {
                            return Err(CsvError {
                                line: self.line,
                                message: format!(
                                    "a quote inside the unquoted field {:?}; quote the whole field and double the quote (\"a\"\"b\")",
                                    String::from_utf8_lossy(&field)
                                ),
                            });
                        }
                        state = State::Quoted;
                        quote_line = self.line;
                    } else {
                        field.push(c);
                        state = State::Unquoted;
                    }
                }
                State::Quoted => {
                    if c == b'"' {
                        state = State::QuoteInQuoted;
                    } else {
                        field.push(c);
                    }
                }
                State::QuoteInQuoted => {
                    if c == b'"' {
                        field.push(b'"');
                        state = State::Quoted;
                    } else if eol || c == b',' {
                        fields.push(finish(std::mem::take(&mut field), false, self.line)?);
                        if eol {
                            break;
                        }
                        state = State::FieldStart;
                    } else {
                        return Err(CsvError {
                            line: self.line,
                            message: format!(
                                "unexpected {:?} after the closing quote of a field; expected a comma or the end of the line",
                                char::from(c)
                            ),
                        });
                    }
                }
            }
            i += 1;
        }
        Ok(Some(Record {
            line: start_line,
            fields,
        }))
    }
}

/// Turns the bytes of a finished field into its value: an empty unquoted field is NULL.
fn finish(field: Vec<u8>, null: bool, line: usize) -> Result<Option<String>, CsvError> {
    if null {
        return Ok(None);
    }
    String::from_utf8(field).map(Some).map_err(|e| CsvError {
        line,
        message: format!("not valid UTF-8 ({e}); convert the file to UTF-8"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str) -> Result<Vec<Record>, CsvError> {
        let mut r = Reader::new(text.as_bytes());
        let mut out = Vec::new();
        while let Some(rec) = r.next_record()? {
            out.push(rec);
        }
        Ok(out)
    }

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    #[test]
    fn null_versus_empty_string() {
        let r = all("a,b,c\n,\"\",x\n\"\",,\n").unwrap();
        assert_eq!(r[1].fields, [None, s(""), s("x")]);
        assert_eq!(r[2].fields, [s(""), None, None]);
    }

    #[test]
    fn quotes_commas_and_line_breaks_inside_fields() {
        let r = all("h1,h2\r\n\"a,b\",\"say \"\"hi\"\"\"\r\n\"multi\r\nline\nfield\",2\r\nlast,3")
            .unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!(r[1].fields, [s("a,b"), s("say \"hi\"")]);
        assert_eq!(r[2].fields, [s("multi\r\nline\nfield"), s("2")]);
        // Lines: the header is 1; the multi-line record starts on 3 and ends on 5.
        assert_eq!(r[2].line, 3);
        assert_eq!(r[3].line, 6);
        assert_eq!(r[3].fields, [s("last"), s("3")]);
    }

    #[test]
    fn unicode_spaces_and_bom_survive() {
        let r = all("\u{feff}name\n  é 日本 🎉 \n").unwrap();
        assert_eq!(r[0].fields, [s("name")]);
        assert_eq!(r[1].fields, [s("  é 日本 🎉 ")]);
    }

    #[test]
    fn blank_lines_are_skipped() {
        let r = all("a\n\n1\n\r\n2\n\n").unwrap();
        let lines: Vec<usize> = r.iter().map(|r| r.line).collect();
        assert_eq!(lines, [1, 3, 5]);
    }

    #[test]
    fn errors_name_the_line() {
        let e = all("a,b\n1,2\n3,\"open\n4,5\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("never closed"), "{e:?}");
        let e = all("a\nx\"y\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = all("a,b\n\"x\"y,1\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("after the closing quote"), "{e:?}");
        let mut bad = b"a\n".to_vec();
        bad.extend_from_slice(b"\xff\xfe\n");
        let mut r = Reader::new(bad.as_slice());
        r.next_record().unwrap();
        assert_eq!(r.next_record().unwrap_err().line, 2);
    }
}

/// Property tests: any input is records or an error, never a panic; and what a writer that
/// quotes properly produces reads back equal, NULL and "" kept apart.
#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn read_all(bytes: &[u8]) -> Result<Vec<Vec<Option<String>>>, CsvError> {
        let mut r = Reader::new(bytes);
        let mut out = Vec::new();
        while let Some(rec) = r.next_record()? {
            out.push(rec.fields);
        }
        Ok(out)
    }

    /// Writes one field: NULL as nothing, "" as `""`, others quoted when they must be (or
    /// when `quote` says so), with quotes doubled.
    fn write_field(f: &Option<String>, quote: bool) -> String {
        match f {
            None => String::new(),
            Some(s) => {
                let must = s.is_empty() || s.contains([',', '"', '\r', '\n']);
                if must || quote {
                    format!("\"{}\"", s.replace('"', "\"\""))
                } else {
                    s.clone()
                }
            }
        }
    }

    fn field() -> impl Strategy<Value = Option<String>> {
        prop_oneof![
            1 => Just(None),
            1 => Just(Some(String::new())),
            4 => "[a-z0-9 ,\"\r\n\u{e9}\u{1F600}]{1,12}".prop_map(Some),
        ]
    }

    fn records() -> impl Strategy<Value = Vec<Vec<Option<String>>>> {
        // A record of one NULL field is a blank line, which the reader skips by design.
        prop::collection::vec(prop::collection::vec(field(), 1..6), 0..8).prop_map(|rs| {
            rs.into_iter()
                .filter(|r| !(r.len() == 1 && r[0].is_none()))
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = read_all(&bytes);
        }

        #[test]
        fn csv_shaped_text_never_panics(text in "[a\",\r\n\u{FEFF} ]{0,80}") {
            if let Err(e) = read_all(text.as_bytes()) {
                prop_assert!(e.line >= 1 && !e.message.is_empty(), "{e:?}");
            }
        }

        #[test]
        fn properly_quoted_records_read_back_equal(
            recs in records(),
            crlf in any::<bool>(),
            quote_all in any::<bool>(),
            final_newline in any::<bool>(),
        ) {
            let eol = if crlf { "\r\n" } else { "\n" };
            let lines: Vec<String> = recs
                .iter()
                .map(|r| r.iter().map(|f| write_field(f, quote_all)).collect::<Vec<_>>().join(","))
                .collect();
            let mut text = lines.join(eol);
            if final_newline && !lines.is_empty() {
                text.push_str(eol);
            }
            prop_assert_eq!(read_all(text.as_bytes()).unwrap(), recs, "text: {:?}", text);
        }
    }
}
