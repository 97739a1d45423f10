//! CSV quoting that arrow-csv does not check.
//!
//! arrow-csv (csv_core) never fails on quotes: a quote that opens a field and never
//! closes takes the rest of the file into that field, a quote inside an unquoted field
//! (`ab"c`) is kept as text, and text after a closing quote (`"ab"c`) is glued to the
//! value. [`CsvQuotes`] finds each of these by looking at the quotes alone (with
//! `memchr`, which skips the bytes between them at memory speed), before the decoder sees
//! the bytes; the error names the line where the field starts.

/// A quoting error of a CSV file, at a byte offset of its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum QuoteError {
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
    pub(super) fn offset(self) -> u64 {
        match self {
            QuoteError::Unterminated(at)
            | QuoteError::InUnquoted(at)
            | QuoteError::AfterClosing(at) => at,
        }
    }

    /// The error's text, for a [`BadRow`](crate::Error::BadRow) at the field's line.
    pub(super) fn reason(self) -> String {
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
pub(super) struct CsvQuotes {
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

pub(super) const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

fn ends_field(byte: u8) -> bool {
    matches!(byte, b',' | b'\n' | b'\r')
}

impl CsvQuotes {
    pub(super) fn new() -> Self {
        CsvQuotes {
            offset: 0,
            prev: b'\n',
            open: None,
            quote_pending: false,
            start: [0; 3],
        }
    }

    /// Scan the next bytes of the content.
    pub(super) fn scan(&mut self, buf: &[u8]) -> std::result::Result<(), QuoteError> {
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
    pub(super) fn finish(&self) -> std::result::Result<(), QuoteError> {
        match self.open {
            Some(open) if !self.quote_pending => Err(QuoteError::Unterminated(open)),
            _ => Ok(()),
        }
    }
}

/// The 1-based line of byte `offset` of `bytes`.
pub(super) fn line_of(bytes: &[u8], offset: u64) -> u64 {
    let end = (offset as usize).min(bytes.len());
    1 + memchr::memchr_iter(b'\n', &bytes[..end]).count() as u64
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
}
