//! Diagnostics: a stable code, a message, a place, a hint.

use crate::codes::Code;
use crate::span::{SourceMap, Span};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Stable code, e.g. `E0103`. See [`crate::codes`].
    pub code: &'static str,
    pub severity: Severity,
    pub message: String,
    /// Where; `None` for site-wide problems (e.g. a missing file).
    pub span: Option<Span>,
    /// Short text printed beside the caret.
    pub label: Option<String>,
    /// "did you mean `SSH`?"
    pub hint: Option<String>,
    /// Further explanation lines (`= note: ...`).
    pub notes: Vec<String>,
}

/// Text of a diagnostic: quoted user text shows its control characters
/// escaped (`\n`, `\x1b`), in the terminal and in JSON alike.
fn shown(s: String) -> String {
    match crate::escape::printable(&s) {
        std::borrow::Cow::Borrowed(_) => s,
        std::borrow::Cow::Owned(t) => t,
    }
}

impl Diagnostic {
    /// A diagnostic with the severity the code table gives it.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Diagnostic {
            code: code.code,
            severity: code.severity,
            message: shown(message.into()),
            span: None,
            label: None,
            hint: None,
            notes: Vec::new(),
        }
    }

    pub fn at(mut self, span: Span) -> Self {
        self.span = Some(span);
        self
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(shown(label.into()));
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(shown(hint.into()));
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(shown(note.into()));
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Render like rustc:
    ///
    /// ```text
    /// error[E0103]: unknown option `polciy_in`
    ///   --> firewall/cluster.fw:3:1
    ///    |
    ///  3 | polciy_in: DROP
    ///    | ^^^^^^^^^ not an option of cluster.fw
    ///    |
    ///    = help: did you mean `policy_in`?
    /// ```
    pub fn render(&self, map: &SourceMap) -> String {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        // Messages quote user text: shown escaped, never raw (a site file's
        // escape sequences must not reach the terminal).
        use crate::escape::{printable, printable_width};
        let mut out = format!("{sev}[{}]: {}\n", self.code, printable(&self.message));
        let mut gutter = 1;
        if let Some(span) = self.span {
            let line_no = span.line.to_string();
            gutter = line_no.len() + 1;
            let pad = " ".repeat(gutter);
            out.push_str(&format!(
                "{}--> {}\n",
                " ".repeat(gutter.saturating_sub(1)),
                map.location(span)
            ));
            if let Some(text) = map.line_text(span.file, span.line) {
                let shown: String = text.chars().take(200).collect();
                let shown = printable(&shown);
                out.push_str(&format!("{pad}|\n"));
                out.push_str(&format!("{line_no} | {shown}\n"));
                let col = span.col.max(1) as usize - 1;
                // Keep the caret under the same characters even with tabs.
                let lead: String = text
                    .chars()
                    .take(col)
                    .map(|c| {
                        if c == '\t' {
                            "\t".to_string()
                        } else {
                            " ".repeat(printable_width(c))
                        }
                    })
                    .collect();
                let carets = "^".repeat(span.len.max(1) as usize);
                match &self.label {
                    Some(l) => out.push_str(&format!("{pad}| {lead}{carets} {}\n", printable(l))),
                    None => out.push_str(&format!("{pad}| {lead}{carets}\n")),
                }
            }
        }
        let pad = " ".repeat(gutter);
        if self.hint.is_some() || !self.notes.is_empty() {
            out.push_str(&format!("{pad}|\n"));
        }
        for n in &self.notes {
            out.push_str(&format!("{pad}= note: {}\n", printable(n)));
        }
        if let Some(h) = &self.hint {
            out.push_str(&format!("{pad}= help: {}\n", printable(h)));
        }
        out
    }
}

/// A bag of diagnostics collected over a run: every problem, not just the first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Diagnostics {
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn push(&mut self, d: Diagnostic) {
        self.items.push(d);
    }
    pub fn extend(&mut self, other: Diagnostics) {
        self.items.extend(other.items);
    }
    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.is_error())
    }
    pub fn errors(&self) -> usize {
        self.items.iter().filter(|d| d.is_error()).count()
    }
    pub fn warnings(&self) -> usize {
        self.items.len() - self.errors()
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    /// Sort by file, line, column, then code: stable output for tests and users.
    pub fn sort(&mut self) {
        self.items.sort_by(|a, b| {
            let ka = a.span.map(|s| (s.file, s.line, s.col));
            let kb = b.span.map(|s| (s.file, s.line, s.col));
            ka.cmp(&kb).then(a.code.cmp(b.code))
        });
    }
    pub fn render(&self, map: &SourceMap) -> String {
        self.items
            .iter()
            .map(|d| d.render(map))
            .collect::<Vec<_>>()
            .join("\n")
    }
}
