//! Source files, spans and origins.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Index of a file in a [`SourceMap`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct FileId(pub u32);

/// A position in a source file: 1-based line, 1-based column (in characters),
/// and the length in characters of the offending text (0 = a point).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct Span {
    pub file: FileId,
    pub line: u32,
    pub col: u32,
    pub len: u32,
}

impl Span {
    pub fn new(file: FileId, line: u32, col: u32, len: u32) -> Self {
        Span {
            file,
            line,
            col,
            len,
        }
    }
}

/// One file of a site as the parser saw it (after decoding).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFile {
    /// Path relative to the site root, with `/` separators, e.g. `firewall/cluster.fw`.
    pub path: String,
    pub text: String,
}

/// All files of a run, so diagnostics and origins can be rendered.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, path: impl Into<String>, text: impl Into<String>) -> FileId {
        let id = FileId(self.files.len() as u32);
        self.files.push(SourceFile {
            path: path.into(),
            text: text.into(),
        });
        id
    }

    pub fn get(&self, id: FileId) -> Option<&SourceFile> {
        self.files.get(id.0 as usize)
    }

    pub fn path(&self, id: FileId) -> &str {
        self.get(id).map(|f| f.path.as_str()).unwrap_or("<unknown>")
    }

    /// The text of line `line` (1-based) of a file, without its line ending.
    pub fn line_text(&self, id: FileId, line: u32) -> Option<&str> {
        let f = self.get(id)?;
        f.text
            .split('\n')
            .nth(line.checked_sub(1)? as usize)
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
    }

    /// `firewall/cluster.fw:12:5`
    pub fn location(&self, span: Span) -> String {
        format!("{}:{}:{}", self.path(span.file), span.line, span.col)
    }

    /// `cluster.fw:12`: the short form used in rule comments and trails
    /// (file name without directories, and the line).
    pub fn short(&self, span: Span) -> String {
        let p = self.path(span.file);
        let name = p.rfind('/').map_or(p, |i| &p[i + 1..]);
        // By hand, not `format!`: every compiled rule's comment is one.
        let mut s = String::with_capacity(name.len() + 6);
        s.push_str(name);
        s.push(':');
        let line = span.line.to_string();
        s.push_str(&line);
        s
    }

    pub fn files(&self) -> impl Iterator<Item = (FileId, &SourceFile)> {
        self.files
            .iter()
            .enumerate()
            .map(|(i, f)| (FileId(i as u32), f))
    }
}

/// Where a compiled rule or a verdict comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Origin {
    /// A line of a site file. `via` is the `GROUP name` line that pulled a
    /// security group's rule in, or the rule line that expanded a macro.
    Source { span: Span, via: Option<Span> },
    /// A rule rampart adds by itself (loopback, management, conntrack,
    /// policy defaults...). The text names it, e.g. `auto:management`.
    Auto(String),
}

impl Origin {
    pub fn line(span: Span) -> Self {
        Origin::Source { span, via: None }
    }

    pub fn auto(what: impl Into<String>) -> Self {
        Origin::Auto(what.into())
    }

    pub fn span(&self) -> Option<Span> {
        match self {
            Origin::Source { span, .. } => Some(*span),
            Origin::Auto(_) => None,
        }
    }

    /// Render for a rule comment or a trail: `cluster.fw:12`,
    /// `cluster.fw:12 via 100.fw:3`, `auto:management`.
    pub fn render(&self, map: &SourceMap) -> String {
        match self {
            Origin::Source { span, via: None } => map.short(*span),
            Origin::Source { span, via: Some(v) } => {
                let mut s = map.short(*span);
                s.push_str(" via ");
                s.push_str(&map.short(*v));
                s
            }
            Origin::Auto(s) => s.clone(),
        }
    }
}

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "file#{}", self.0)
    }
}
