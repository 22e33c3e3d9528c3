//! Tokens for XEP-0431 full-text search, made here so that SQLite FTS5 and PostgreSQL
//! full-text search index and match exactly the same thing.
//!
//! - Words of alphabetic scripts (Latin, Cyrillic, Hangul, …) are split at anything
//!   that is not a letter or digit and lower-cased: a query word matches whole words
//!   only ("cat" does not find "category").
//! - Chinese and Japanese are written without spaces, so a run of such characters is
//!   indexed as overlapping bigrams plus its last character alone ("消息来了" →
//!   消息 息来 来了 了). A query of two or more characters becomes the phrase of its
//!   bigrams, which matches exactly the runs containing it; a one-character query is
//!   a prefix search over the same tokens.
//! - Every token that is not plain ASCII is written as `u` plus six hex digits per
//!   character. Both engines then see ASCII words only, so neither their tokenisers
//!   nor the database locale (PostgreSQL's parser drops CJK under the C locale) can
//!   split or lose anything.

use std::fmt::Write as _;

/// One condition of a search: all must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    /// Consecutive tokens (one token for a plain word).
    Phrase(Vec<String>),
    /// A token starting with this (a single CJK character).
    Prefix(String),
}

/// Characters of scripts written without spaces between words.
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // Hiragana, Katakana
        | 0x31F0..=0x31FF    // Katakana phonetic extensions
        | 0x3400..=0x4DBF    // CJK extension A
        | 0x4E00..=0x9FFF    // CJK unified ideographs
        | 0xF900..=0xFAFF    // CJK compatibility ideographs
        | 0xFF66..=0xFF9F    // half-width Katakana
        | 0x20000..=0x3FFFF) // CJK extensions B and later
}

/// A token as both engines see it: ASCII kept, anything else hex-encoded.
fn encode(token: &str) -> String {
    if token.is_ascii() {
        return token.to_owned();
    }
    let mut out = String::with_capacity(token.len() * 4);
    for c in token.chars() {
        let _ = write!(out, "u{:06x}", c as u32);
    }
    out
}

/// A piece of text: a word, or a run of CJK characters.
enum Run {
    Word(String),
    Cjk(Vec<char>),
}

fn runs(text: &str) -> Vec<Run> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut cjk = Vec::new();
    for c in text.chars() {
        if is_cjk(c) {
            if !word.is_empty() {
                out.push(Run::Word(std::mem::take(&mut word)));
            }
            cjk.push(c);
        } else {
            if !cjk.is_empty() {
                out.push(Run::Cjk(std::mem::take(&mut cjk)));
            }
            if c.is_alphanumeric() {
                word.extend(c.to_lowercase());
            } else if !word.is_empty() {
                out.push(Run::Word(std::mem::take(&mut word)));
            }
        }
    }
    if !word.is_empty() {
        out.push(Run::Word(word));
    }
    if !cjk.is_empty() {
        out.push(Run::Cjk(cjk));
    }
    out
}

fn bigrams(chars: &[char]) -> Vec<String> {
    chars.windows(2).map(|pair| encode(&pair.iter().collect::<String>())).collect()
}

/// The text to index for a message body, tokens separated by spaces.
pub fn index_text(body: &str) -> String {
    let mut tokens = Vec::new();
    for run in runs(body) {
        match run {
            Run::Word(word) => tokens.push(encode(&word)),
            Run::Cjk(chars) => {
                tokens.extend(bigrams(&chars));
                if let Some(last) = chars.last() {
                    tokens.push(encode(&last.to_string()));
                }
            }
        }
    }
    tokens.join(" ")
}

/// The conditions of a search string; empty when it holds no word at all.
pub fn query_terms(query: &str) -> Vec<Term> {
    runs(query)
        .into_iter()
        .map(|run| match run {
            Run::Word(word) => Term::Phrase(vec![encode(&word)]),
            Run::Cjk(chars) if chars.len() == 1 => Term::Prefix(encode(&chars[0].to_string())),
            Run::Cjk(chars) => Term::Phrase(bigrams(&chars)),
        })
        .collect()
}

/// An FTS5 MATCH expression. Tokens are ASCII letters and digits only, so quoting
/// cannot be escaped out of.
pub fn fts5_query(terms: &[Term]) -> String {
    let parts: Vec<String> = terms
        .iter()
        .map(|term| match term {
            Term::Phrase(tokens) => format!("\"{}\"", tokens.join(" ")),
            Term::Prefix(token) => format!("\"{token}\" *"),
        })
        .collect();
    parts.join(" AND ")
}

/// The archive owner as an index term: the lowercase hex of its bare JID (one ASCII
/// token, whatever the JID holds).
pub fn owner_key(owner: &str) -> String {
    owner.bytes().fold(String::with_capacity(owner.len() * 2), |mut key, b| {
        let _ = write!(key, "{b:02x}");
        key
    })
}

/// The FTS5 MATCH expression for `terms` in `owner`'s archive only: the owner's key
/// and the words, each in its own column.
pub fn fts5_owner_query(owner: &str, terms: &[Term]) -> String {
    format!("owner_key : \"{}\" AND search_text : ({})", owner_key(owner), fts5_query(terms))
}

/// What PostgreSQL indexes for a message of `owner`'s archive: the owner's term
/// (`o` + its key, so the parser sees one word) and the body's tokens.
pub fn tsvector_document(owner: &str, search_text: &str) -> String {
    format!("o{} {search_text}", owner_key(owner))
}

/// A `to_tsquery('simple', …)` expression for `terms` in `owner`'s archive only.
pub fn tsquery_owner(owner: &str, terms: &[Term]) -> String {
    format!("'o{}' & ({})", owner_key(owner), tsquery(terms))
}

/// A PostgreSQL `to_tsquery('simple', …)` expression (same quoting argument).
pub fn tsquery(terms: &[Term]) -> String {
    let parts: Vec<String> = terms
        .iter()
        .map(|term| match term {
            Term::Phrase(tokens) => {
                let quoted: Vec<String> = tokens.iter().map(|t| format!("'{t}'")).collect();
                format!("({})", quoted.join(" <-> "))
            }
            Term::Prefix(token) => format!("'{token}':*"),
        })
        .collect();
    parts.join(" & ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin_words_are_lower_cased_whole_words() {
        assert_eq!(index_text("Hello, World! cat-category"), "hello world cat category");
        assert_eq!(query_terms("CAT"), vec![Term::Phrase(vec!["cat".into()])]);
    }

    #[test]
    fn cjk_runs_become_bigrams_and_a_last_unigram() {
        let text = index_text("消息来了");
        let expected: Vec<String> = ["消息", "息来", "来了", "了"].iter().map(|t| encode(t)).collect();
        assert_eq!(text, expected.join(" "));
        assert_eq!(query_terms("息来了"), vec![Term::Phrase(vec![encode("息来"), encode("来了")])]);
        assert_eq!(query_terms("息"), vec![Term::Prefix(encode("息"))]);
    }

    #[test]
    fn mixed_text_splits_at_script_changes() {
        let text = index_text("Starling服务器ok");
        assert_eq!(text, format!("starling {} {} {} ok", encode("服务"), encode("务器"), encode("器")));
    }

    #[test]
    fn non_ascii_tokens_are_plain_ascii_words() {
        let token = encode("café");
        assert!(token.chars().all(|c| c.is_ascii_alphanumeric()), "{token}");
        assert_eq!(token, "u000063u000061u000066u0000e9");
    }

    #[test]
    fn queries_render_for_both_engines() {
        let terms = query_terms("hello 消息 息");
        assert_eq!(fts5_query(&terms), format!("\"hello\" AND \"{}\" AND \"{}\" *", encode("消息"), encode("息")));
        assert_eq!(tsquery(&terms), format!("('hello') & ('{}') & '{}':*", encode("消息"), encode("息")));
        assert!(query_terms(" ,.!").is_empty());
    }

    #[test]
    fn searches_are_confined_to_the_owners_key() {
        let terms = query_terms("hello");
        assert_eq!(fts5_owner_query("a@b", &terms), "owner_key : \"614062\" AND search_text : (\"hello\")");
    }
}
