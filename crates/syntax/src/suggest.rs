//! "did you mean" hints.

/// The candidate closest to `word` (case-insensitive), if it is close enough
/// to be a plausible typo.
pub fn closest<'a, I: IntoIterator<Item = &'a str>>(word: &str, candidates: I) -> Option<&'a str> {
    let w = word.to_ascii_lowercase();
    let mut best: Option<(f64, &'a str)> = None;
    for c in candidates {
        let cl = c.to_ascii_lowercase();
        if cl == w {
            return Some(c);
        }
        let d = strsim::damerau_levenshtein(&w, &cl);
        let limit = (w.len().max(cl.len()) / 3).max(1);
        let jw = strsim::jaro_winkler(&w, &cl);
        let ok = d <= limit || jw >= 0.88 || (w.len() >= 3 && cl.starts_with(&w));
        if ok {
            let score = jw - d as f64 * 0.01;
            if best.map_or(true, |(s, _)| score > s) {
                best = Some((score, c));
            }
        }
    }
    best.map(|(_, c)| c)
}

/// `did you mean `X`?` when there is a close candidate.
pub fn did_you_mean<'a, I: IntoIterator<Item = &'a str>>(
    word: &str,
    candidates: I,
) -> Option<String> {
    closest(word, candidates).map(|c| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn typos() {
        assert_eq!(
            closest("polciy_in", ["policy_in", "policy_out", "enable"]),
            Some("policy_in")
        );
        assert_eq!(closest("shh", ["SSH", "HTTP"]), Some("SSH"));
        assert_eq!(closest("zzzzzz", ["SSH", "HTTP"]), None);
    }
}
