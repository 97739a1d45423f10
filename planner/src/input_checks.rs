//! Checks of input files that their readers do not make: CSV quoting, column names, and
//! partition values too long for a directory name.
//!
//! - **Quotes.** arrow-csv (csv_core) never fails on quotes: a quote that opens a field
//!   and never closes takes the rest of the file into that field, a quote inside an
//!   unquoted field (`ab"c`) is kept as text, and text after a closing quote (`"ab"c`) is
//!   glued to the value. [`CsvQuotes`] finds each of these by looking at the quotes
//!   alone (with `memchr`, which skips the bytes between them at memory speed), before
//!   the decoder sees the bytes; the error names the line where the field starts.
//! - **Names.** A CSV header with an empty or repeated name, and a Parquet or Arrow
//!   schema with a repeated name, would make a dataset whose columns cannot be told
//!   apart (`{"a":1,"a":1}` for a row holding 1, 2); they are refused, naming the
//!   column's position.
//! - **Partition values.** The first rows of text inputs are looked at when the ingest is
//!   planned, so a value whose directory name would be too long is refused before any
//!   job is queued ([`long_csv_partition_value`], [`long_json_partition_value`]); the
//!   writer checks every value anyway.

use std::collections::HashMap;

use arrow::datatypes::Schema;

use crate::error::{Error, Result};

/// A quoting error of a CSV file, at a byte offset of its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QuoteError {
    /// The quoted field opening at this offset is never closed.
    Unterminated(u64),
    /// A quote at this offset is inside an unquoted field.
    InUnquoted(u64),
    /// The quoted field opening at this offset has text after its closing quote.
    AfterClosing(u64),
}

impl QuoteError {
    /// Where the field starts (its opening quote, or the stray quote itself: an unquoted
    /// field holds no newline, so its quote is on the line it starts on).
    pub(crate) fn offset(self) -> u64 {
        match self {
            QuoteError::Unterminated(at)
            | QuoteError::InUnquoted(at)
            | QuoteError::AfterClosing(at) => at,
        }
    }

    /// The error's text, for a [`Error::BadRow`] at the field's line.
    pub(crate) fn reason(self) -> String {
        match self {
            QuoteError::Unterminated(_) => "a quoted field starts on this line and is never \
                closed: the quote that should end it is missing, and the rest of the file \
                would be read as one value"
                .to_string(),
            QuoteError::InUnquoted(_) => "a quote (\") inside a field that does not start \
                with one: a field holding quotes must be quoted as a whole, with each quote \
                inside it doubled (\"ab\"\"c\")"
                .to_string(),
            QuoteError::AfterClosing(_) => "text after the closing quote of a quoted field \
                that starts on this line: a quote inside a quoted field must be doubled \
                (\"ab\"\"c\")"
                .to_string(),
        }
    }
}

/// The state of a scan of a CSV file's quotes, fed its content chunk by chunk.
///
/// The rules are csv_core's as arrow-csv configures it (delimiter `,`, quote `"`,
/// doubled quotes as escapes, records ended by `\n`, `\r` or `\r\n`), made strict: a
/// quote opens a field only at its start (after a delimiter or a line end), and a
/// closing quote is followed by a delimiter, a line end or the end of the file.
#[derive(Debug)]
pub(crate) struct CsvQuotes {
    /// Offset of the next byte scanned.
    offset: u64,
    /// The byte before the next one scanned (a line end before the file's first byte).
    prev: u8,
    /// Offset of the opening quote of the quoted field the scan is in.
    open: Option<u64>,
    /// The last byte scanned is a quote inside a quoted field, which the next byte tells
    /// to be a closing quote or the first of a doubled one.
    quote_pending: bool,
    /// The content's first bytes, as many as a byte order mark has.
    start: [u8; 3],
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

fn ends_field(byte: u8) -> bool {
    matches!(byte, b',' | b'\n' | b'\r')
}

impl CsvQuotes {
    pub(crate) fn new() -> Self {
        CsvQuotes {
            offset: 0,
            prev: b'\n',
            open: None,
            quote_pending: false,
            start: [0; 3],
        }
    }

    /// Scan the next bytes of the content.
    pub(crate) fn scan(&mut self, buf: &[u8]) -> std::result::Result<(), QuoteError> {
        if self.offset < UTF8_BOM.len() as u64 {
            let have = self.offset as usize;
            let take = (UTF8_BOM.len() - have).min(buf.len());
            self.start[have..have + take].copy_from_slice(&buf[..take]);
        }
        // A byte order mark is not part of the first field: a quote after it opens one.
        let bom_end = (self.start == UTF8_BOM).then_some(UTF8_BOM.len() as u64);
        let mut i = 0;
        while i < buf.len() {
            if let Some(open) = self.open {
                if self.quote_pending {
                    self.quote_pending = false;
                    match buf[i] {
                        b'"' => i += 1,
                        byte if ends_field(byte) => self.open = None,
                        _ => return Err(QuoteError::AfterClosing(open)),
                    }
                    continue;
                }
                match memchr::memchr(b'"', &buf[i..]) {
                    Some(j) => {
                        self.quote_pending = true;
                        i += j + 1;
                    }
                    None => break,
                }
            } else {
                let Some(j) = memchr::memchr(b'"', &buf[i..]) else {
                    break;
                };
                let at = i + j;
                let before = match at {
                    _ if bom_end == Some(self.offset + at as u64) => b'\n',
                    0 => self.prev,
                    _ => buf[at - 1],
                };
                if !ends_field(before) {
                    return Err(QuoteError::InUnquoted(self.offset + at as u64));
                }
                self.open = Some(self.offset + at as u64);
                i = at + 1;
            }
        }
        if let Some(&last) = buf.last() {
            self.prev = last;
        }
        self.offset += buf.len() as u64;
        Ok(())
    }

    /// The end of the content: a quoted field still open is never closed.
    pub(crate) fn finish(&self) -> std::result::Result<(), QuoteError> {
        match self.open {
            Some(open) if !self.quote_pending => Err(QuoteError::Unterminated(open)),
            _ => Ok(()),
        }
    }
}

/// The 1-based line of byte `offset` of `bytes`.
pub(crate) fn line_of(bytes: &[u8], offset: u64) -> u64 {
    let end = (offset as usize).min(bytes.len());
    1 + memchr::memchr_iter(b'\n', &bytes[..end]).count() as u64
}

/// Refuse a CSV header (the inferred schema's names) with an empty or repeated name.
pub(crate) fn check_csv_header(schema: &Schema, path: &str) -> Result<()> {
    let bad = |column: usize, reason: String| Error::BadHeader {
        path: path.to_string(),
        line: 1,
        column,
        reason,
    };
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    if names.iter().all(|n| n.is_empty()) {
        return Err(bad(
            1,
            "the header names no column (the first line is empty or only commas); the \
             first line of a CSV file must name its columns"
                .to_string(),
        ));
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, name) in names.iter().enumerate() {
        if name.is_empty() {
            return Err(bad(
                i + 1,
                "no name (two commas in a row, or one at the start or end of the line); \
                 every column needs a name"
                    .to_string(),
            ));
        }
        if let Some(first) = seen.insert(name, i + 1) {
            return Err(bad(
                i + 1,
                format!("{name:?} names column {first} too; each column needs a name of its own"),
            ));
        }
    }
    Ok(())
}

/// The first name of `names` (top-level columns) that is empty or repeated, described.
pub(crate) fn bad_name<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, name) in names.into_iter().enumerate() {
        if name.is_empty() {
            return Some(format!(
                "column {} has an empty name; every column needs a name",
                i + 1
            ));
        }
        if let Some(first) = seen.insert(name, i + 1) {
            return Some(format!(
                "columns {first} and {} are both named {name:?}; each column needs a name \
                 of its own (a query could see only one of them)",
                i + 1
            ));
        }
    }
    None
}

/// Refuse a schema read from a file (Parquet, Arrow, JSON keys) with an empty or
/// repeated column name.
pub(crate) fn check_names(schema: &Schema, path: &str) -> Result<()> {
    match bad_name(schema.fields().iter().map(|f| f.name().as_str())) {
        Some(reason) => Err(Error::Input {
            path: path.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Refuse a schema given by the user with an empty or repeated column name.
pub fn check_schema_names(schema: &Schema) -> Result<()> {
    match bad_name(schema.fields().iter().map(|f| f.name().as_str())) {
        Some(reason) => Err(Error::invalid("schema", reason)),
        None => Ok(()),
    }
}

/// A partition value of `bytes` (the start of a CSV file with its header, cut at a line
/// end) whose directory name would be too long: the line it is on and the format's
/// error. Only the header's columns named in `columns` are looked at; an empty field is
/// a null, written as the short marker.
pub(crate) fn long_csv_partition_value(
    bytes: &[u8],
    columns: &[String],
) -> Option<(u64, terrace_format::Error)> {
    let mut reader = csv_core::Reader::new();
    let mut input = bytes;
    let mut out = [0u8; 4096];
    let (mut record, mut field) = (0u64, 0usize);
    let mut value: Vec<u8> = Vec::new();
    let mut field_start = 0usize;
    let mut header: Vec<Vec<u8>> = Vec::new();
    let mut eof = false;
    // The partition column at each position of the header, known once it is read.
    let mut wanted: Vec<Option<&str>> = Vec::new();
    loop {
        let (result, read, written) = reader.read_field(input, &mut out);
        input = &input[read..];
        let collect = record == 0 || wanted.get(field).copied().flatten().is_some();
        if collect {
            value.extend_from_slice(&out[..written]);
        }
        match result {
            csv_core::ReadFieldResult::InputEmpty => {
                if eof {
                    return None;
                }
                eof = input.is_empty();
            }
            csv_core::ReadFieldResult::OutputFull => {}
            csv_core::ReadFieldResult::Field { record_end } => {
                if record == 0 {
                    header.push(std::mem::take(&mut value));
                } else if let Some(Some(column)) = wanted.get(field) {
                    if !value.is_empty()
                        && let Ok(text) = std::str::from_utf8(&value)
                        && let Err(e) = terrace_format::check_partition_value(column, Some(text))
                    {
                        return Some((line_of(bytes, field_start as u64), e));
                    }
                    value.clear();
                }
                field += 1;
                if record_end {
                    if record == 0 {
                        wanted = header
                            .iter()
                            .enumerate()
                            .map(|(i, name)| {
                                let name = match i {
                                    0 => name.strip_prefix(UTF8_BOM).unwrap_or(name),
                                    _ => name,
                                };
                                columns
                                    .iter()
                                    .find(|c| c.as_bytes() == name)
                                    .map(String::as_str)
                            })
                            .collect();
                    }
                    record += 1;
                    field = 0;
                }
                field_start = bytes.len() - input.len();
            }
            csv_core::ReadFieldResult::End => return None,
        }
    }
}

/// A partition value of `bytes` (the start of a JSON-lines file, cut at a line end)
/// whose directory name would be too long: its line and the format's error. Lines that
/// do not parse are left to the reader, which names them.
pub(crate) fn long_json_partition_value(
    bytes: &[u8],
    columns: &[String],
) -> Option<(u64, terrace_format::Error)> {
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        // A line can be long only if it holds a long value: skip the parse otherwise.
        if line.len() < terrace_format::MAX_PARTITION_SEGMENT_BYTES / 3 {
            continue;
        }
        let Ok(serde_json::Value::Object(object)) = serde_json::from_slice(line) else {
            continue;
        };
        for column in columns {
            if let Some(serde_json::Value::String(text)) = object.get(column)
                && let Err(e) = terrace_format::check_partition_value(column, Some(text))
            {
                return Some((i as u64 + 1, e));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scan `text` in chunks of `chunk` bytes.
    fn scan(text: &str, chunk: usize) -> std::result::Result<(), QuoteError> {
        let mut quotes = CsvQuotes::new();
        for part in text.as_bytes().chunks(chunk.max(1)) {
            quotes.scan(part)?;
        }
        quotes.finish()
    }

    #[test]
    fn quotes_that_csv_allows_pass_in_any_chunking() {
        for text in [
            "a,b\n1,2\n",
            "a,b\n\"1\",\"x,y\"\n",
            "a,b\n\"say \"\"hi\"\"\",2\n",
            "a,b\n\"two\nlines\",2\r\n\"\",\"\"\n",
            "a,b\r\n1,\"end\"",
            "\u{feff}\"a\",b\n1,2\n",
            "a,b\n\"\"\"\",\"\"\n",
        ] {
            for chunk in 1..=text.len() {
                assert_eq!(scan(text, chunk), Ok(()), "{text:?} in chunks of {chunk}");
            }
        }
    }

    #[test]
    fn quote_errors_are_found_at_the_field_in_any_chunking() {
        for (text, expected) in [
            ("a,b\n1,\"open\n2,3\n", QuoteError::Unterminated(6)),
            ("a,b\n\"x\",\"y\"\"\n", QuoteError::Unterminated(8)),
            ("a,b\nab\"c,2\n", QuoteError::InUnquoted(6)),
            ("a,b\n1, \"x\"\n", QuoteError::InUnquoted(7)),
            ("a,b\n\"ab\"c,2\n", QuoteError::AfterClosing(4)),
            ("a,b\n1,\"x\" \n", QuoteError::AfterClosing(6)),
        ] {
            for chunk in 1..=text.len() {
                assert_eq!(scan(text, chunk), Err(expected), "{text:?} in {chunk}");
            }
        }
    }

    #[test]
    fn lines_count_from_one() {
        assert_eq!(line_of(b"a\nb\nc", 0), 1);
        assert_eq!(line_of(b"a\nb\nc", 2), 2);
        assert_eq!(line_of(b"a\nb\nc", 99), 3);
    }

    #[test]
    fn long_partition_values_in_a_csv_sample_name_their_line() {
        let long = "v".repeat(300);
        let text = format!("n,origin\n1,JFK\n2,\"multi\nline\"\n3,{long}\n");
        let (line, e) = long_csv_partition_value(text.as_bytes(), &["origin".into()]).unwrap();
        assert_eq!(line, 5);
        assert!(e.to_string().contains("\"origin\""), "{e}");
        // The same value in a column not partitioned on is fine.
        assert!(long_csv_partition_value(text.as_bytes(), &["n".into()]).is_none());
        let json = format!("{{\"origin\": \"JFK\"}}\n{{\"origin\": \"{long}\"}}\n");
        let (line, _) = long_json_partition_value(json.as_bytes(), &["origin".into()]).unwrap();
        assert_eq!(line, 2);
    }
}
