//! One escaping function per output language (docs/trust-model.md).
//!
//! Names reaching an output were validated by [`crate::names`]; free text
//! (comments, descriptions, log prefixes) was not. Every printer passes
//! both through the function of its language, so neither can end a quoted
//! string, start a new statement or line, or carry a terminal escape.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `s` for a terminal or a log line: every control character (other than a
/// tab), DEL, and Unicode bidirectional overrides shown as escapes (`\n`,
/// `\x1b`, `\u{202e}`); everything else unchanged.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        push_printable(&mut out, c);
    }
    Cow::Owned(out)
}

/// How many characters `c` takes once [`printable`]d.
pub fn printable_width(c: char) -> usize {
    if !needs_escape(c) {
        return 1;
    }
    let mut t = String::new();
    push_printable(&mut t, c);
    t.chars().count()
}

fn needs_escape(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn push_printable(out: &mut String, c: char) {
    if !needs_escape(c) {
        out.push(c);
        return;
    }
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\0' => out.push_str("\\0"),
        c if (c as u32) < 0x100 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
}

/// Free text made safe for a quoted string of a line-based language with
/// no escapes: printable ASCII only; `"` becomes `'`, `\` becomes `/`,
/// anything else (control characters, non-ASCII) `?`; at most `max` bytes
/// (cut with `...`).
fn plain_ascii(s: &str, max: usize) -> Cow<'_, str> {
    let clean = |b: u8| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\';
    if s.len() <= max && s.bytes().all(clean) {
        return Cow::Borrowed(s);
    }
    let mut t = String::with_capacity(s.len().min(max));
    for c in s.chars() {
        t.push(match c {
            '"' => '\'',
            '\\' => '/',
            c if c.is_ascii() && clean(c as u8) => c,
            _ => '?',
        });
    }
    if t.len() > max {
        t.truncate(max.saturating_sub(3));
        t.push_str("...");
        t.truncate(max);
    }
    Cow::Owned(t)
}

/// The longest comment nftables accepts (`NFT_USERDATA_MAXLEN` for a comment).
pub const NFT_COMMENT_MAX: usize = 127;
/// The longest `log prefix` nftables accepts (`NF_LOG_PREFIXLEN` - 1).
pub const NFT_LOG_PREFIX_MAX: usize = 127;

/// The contents of an nftables quoted string (without the quotes).
/// nftables strings have no escape sequences, so the text is sanitized by
/// construction ([`plain_ascii`] rules) and cut to `max` bytes.
pub fn nft_str(s: &str, max: usize) -> Cow<'_, str> {
    plain_ascii(s, max)
}

/// `"text"` for an nftables `comment`.
pub fn nft_comment(s: &str) -> String {
    format!("\"{}\"", nft_str(s, NFT_COMMENT_MAX))
}

/// The longest `--comment` of the xtables comment match.
pub const IPT_COMMENT_MAX: usize = 255;
/// The longest `--log-prefix` / `--nflog-prefix`.
pub const IPT_LOG_PREFIX_MAX: usize = 63;

/// `"text"` for an iptables-restore argument (`--comment`, `--nflog-prefix`):
/// one quoted token that cannot end the line or the quote.
pub fn ipt_quoted(s: &str, max: usize) -> String {
    format!("\"{}\"", plain_ascii(s, max))
}

/// Text for a `# ...` comment line of an ini-style file (wg-quick
/// configurations): one line, printable ASCII.
pub fn ini_comment(s: &str) -> Cow<'_, str> {
    plain_ascii(s, 200)
}

/// One word for a shell (wg-quick runs `PostUp` lines through bash): as it
/// is when it holds only `[A-Za-z0-9_./=+:@%,-]`, else single-quoted with
/// every `'` written `'\''`; line breaks and other control characters are
/// replaced by `?` (a `PostUp` value is one line).
pub fn shell_word(s: &str) -> Cow<'_, str> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_./=+:@%,-".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        return Cow::Borrowed(s);
    }
    let mut t = String::with_capacity(s.len() + 2);
    t.push('\'');
    for c in s.chars() {
        match c {
            '\'' => t.push_str("'\\''"),
            c if c.is_control() => t.push('?'),
            c => t.push(c),
        }
    }
    t.push('\'');
    Cow::Owned(t)
}

/// An interface name as a sysctl key component: sysctl writes a `.` of an
/// interface name (`eth0.100`) as `/`. The name was validated (no `/`, no
/// spaces); anything else is refused.
pub fn sysctl_key_component(iface: &str) -> Option<String> {
    if iface.is_empty()
        || iface == "."
        || iface == ".."
        || !iface
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-=+@".contains(&b))
    {
        return None;
    }
    Some(iface.replace('.', "/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_controls() {
        assert_eq!(printable("a\nb\x1b[31m\0"), "a\\nb\\x1b[31m\\0");
        assert_eq!(printable("tab\there"), "tab\there");
        assert_eq!(printable("\u{202e}x"), "\\u{202e}x");
        assert_eq!(printable("plain"), "plain");
        assert_eq!(printable_width('\x1b'), 4);
    }

    #[test]
    fn nft_strings_cannot_break_out() {
        let s = nft_comment("x\" ; }\ntable inet evil {\\ é");
        assert_eq!(s, "\"x' ; }?table inet evil {/ ?\"");
        let long = nft_comment(&"a".repeat(500));
        assert_eq!(long.len(), NFT_COMMENT_MAX + 2);
        assert!(long.ends_with("...\""));
    }

    #[test]
    fn ipt_and_env() {
        assert_eq!(ipt_quoted("a\"\nb", 10), "\"a'?b\"");
        assert_eq!(
            sysctl_key_component("eth0.100").as_deref(),
            Some("eth0/100")
        );
        assert_eq!(sysctl_key_component("../x"), None);
        assert_eq!(
            shell_word("/var/lib/rampart/keys/mgmt.key"),
            "/var/lib/rampart/keys/mgmt.key"
        );
        assert_eq!(shell_word("a b;$(x)'\n"), "'a b;$(x)'\\''?'");
    }
}
