//! Bytes -> text, with every encoding problem reported and never misparsed.

use rampart_types::{codes, Diagnostic, Diagnostics, FileId, Span};

/// Lines longer than this (in bytes) are refused.
pub const MAX_LINE: usize = 65_536;

/// A decoded file: the text to record in the source map, and the lines the
/// parser may read (lines with a NUL byte, a bare CR or of absurd length are
/// left out after being reported).
pub struct Decoded {
    pub text: String,
    /// `false`: the file is unusable (invalid UTF-8): parse nothing of it.
    pub usable: bool,
    pub bad_lines: std::collections::HashSet<u32>,
}

/// The 1-based column (in characters) of byte offset `off` in `line`.
pub fn col_of(line: &str, off: usize) -> u32 {
    let off = off.min(line.len());
    let mut o = off;
    while !line.is_char_boundary(o) {
        o -= 1;
    }
    line[..o].chars().count() as u32 + 1
}

/// A line of a file, for building spans of its sub-slices.
#[derive(Clone, Copy)]
pub struct Line<'a> {
    pub file: FileId,
    pub no: u32,
    pub text: &'a str,
}

impl<'a> Line<'a> {
    /// The span of `sub`, which must be a sub-slice of this line's text
    /// (otherwise the whole line).
    pub fn span(&self, sub: &str) -> Span {
        let base = self.text.as_ptr() as usize;
        let p = sub.as_ptr() as usize;
        if p < base || p + sub.len() > base + self.text.len() {
            return self.whole();
        }
        let off = p - base;
        Span::new(
            self.file,
            self.no,
            col_of(self.text, off),
            sub.chars().count() as u32,
        )
    }
    /// A span from byte offset `off` of `len` bytes.
    pub fn span_at(&self, off: usize, len: usize) -> Span {
        let off = off.min(self.text.len());
        let end = (off + len).min(self.text.len());
        let s = col_of(self.text, off);
        let e = col_of(self.text, end);
        Span::new(self.file, self.no, s, e - s)
    }
    pub fn whole(&self) -> Span {
        let t = self.text.trim_end();
        let lead = t.len() - t.trim_start().len();
        self.span_at(lead, t.len() - lead)
    }
    /// The offset of `sub` in this line (sub must be a sub-slice).
    pub fn offset(&self, sub: &str) -> usize {
        (sub.as_ptr() as usize).saturating_sub(self.text.as_ptr() as usize)
    }
}

/// Decode a file, reporting BOM, CRLF, bare CR, NUL, invalid UTF-8, long lines
/// and empty files.
pub fn decode(file: FileId, path: &str, bytes: &[u8], diags: &mut Diagnostics) -> Decoded {
    let mut bad_lines = std::collections::HashSet::new();
    let mut bytes = bytes;
    if bytes.is_empty() {
        diags.push(
            Diagnostic::new(codes::EMPTY_FILE, format!("`{path}` is empty"))
                .at(Span::new(file, 1, 1, 0))
                .note("an empty file defines nothing; delete it or add content"),
        );
        return Decoded {
            text: String::new(),
            usable: true,
            bad_lines,
        };
    }
    if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
        diags.push(
            Diagnostic::new(
                codes::BOM,
                "byte-order mark at the start of the file (ignored)",
            )
            .at(Span::new(file, 1, 1, 0))
            .hint("save the file as UTF-8 without a BOM"),
        );
        bytes = &bytes[3..];
        if bytes.is_empty() {
            diags.push(
                Diagnostic::new(codes::EMPTY_FILE, format!("`{path}` is empty"))
                    .at(Span::new(file, 1, 1, 0)),
            );
        }
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t.to_string(),
        Err(e) => {
            let good = &bytes[..e.valid_up_to()];
            let line = good.iter().filter(|&&b| b == b'\n').count() as u32 + 1;
            let line_start = good.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
            let prefix = String::from_utf8_lossy(&good[line_start..]);
            let col = prefix.chars().count() as u32 + 1;
            diags.push(
                Diagnostic::new(
                    codes::INVALID_UTF8,
                    format!(
                        "`{path}` is not valid UTF-8 (byte 0x{:02x}); nothing of it was read",
                        bytes[e.valid_up_to()]
                    ),
                )
                .at(Span::new(file, line, col, 1))
                .label("invalid byte here")
                .hint("re-save the file as UTF-8"),
            );
            return Decoded {
                text: String::from_utf8_lossy(bytes).into_owned(),
                usable: false,
                bad_lines,
            };
        }
    };
    // Line endings: CRLF becomes LF (warned once); a CR elsewhere is an error.
    let mut out = String::with_capacity(text.len());
    let mut crlf_line = None;
    for (i, raw) in text.split('\n').enumerate() {
        let no = i as u32 + 1;
        if i > 0 {
            out.push('\n');
        }
        let line = match raw.strip_suffix('\r') {
            Some(l) => {
                crlf_line.get_or_insert(no);
                l
            }
            None => raw,
        };
        out.push_str(line);
        let l = Line {
            file,
            no,
            text: line,
        };
        if let Some(p) = line.find('\r') {
            diags.push(
                Diagnostic::new(codes::BARE_CR, "carriage return without a line feed")
                    .at(l.span_at(p, 1))
                    .label("CR here")
                    .note("old Mac line endings are not supported; this line was not read")
                    .hint("convert the file to LF line endings"),
            );
            bad_lines.insert(no);
        }
        if let Some(p) = line.find('\0') {
            diags.push(
                Diagnostic::new(
                    codes::NUL_BYTE,
                    "NUL byte in the file; this line was not read",
                )
                .at(l.span_at(p, 1))
                .label("NUL here"),
            );
            bad_lines.insert(no);
        }
        if line.len() > MAX_LINE {
            diags.push(
                Diagnostic::new(
                    codes::LINE_TOO_LONG,
                    format!(
                        "line is {} bytes long (limit {MAX_LINE}); it was not read",
                        line.len()
                    ),
                )
                .at(Span::new(file, no, 1, 0))
                .hint("split long lists into an ipset"),
            );
            bad_lines.insert(no);
        }
    }
    if let Some(no) = crlf_line {
        diags.push(
            Diagnostic::new(codes::CRLF, "CRLF line endings (read as LF)")
                .at(Span::new(file, no, 1, 0))
                .hint("convert the file to LF line endings (dos2unix)"),
        );
    }
    if out.trim().is_empty() && !out.is_empty() {
        diags.push(
            Diagnostic::new(
                codes::EMPTY_FILE,
                format!("`{path}` holds only blank lines"),
            )
            .at(Span::new(file, 1, 1, 0)),
        );
    }
    Decoded {
        text: out,
        usable: true,
        bad_lines,
    }
}
