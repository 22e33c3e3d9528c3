//! Parsing addresses (RFC 7622) to a fixed point.
//!
//! The `jid` crate's stringprep is not idempotent for some inputs: fuzzing found that
//! U+03F9 (GREEK CAPITAL LUNATE SIGMA) normalises to a capital sigma, which a second
//! pass lower-cases. Two spellings of one account must not end up as two identities,
//! so every address the server stores or compares goes through [`parse_jid`], which
//! normalises until the result no longer changes.

use jid::{BareJid, Error, Jid};

/// Normalisation passes before giving up (real inputs settle in one or two).
const MAX_PASSES: usize = 4;

/// Parses and normalises `text` until it is stable.
pub fn parse_jid(text: &str) -> Result<Jid, Error> {
    let mut jid = Jid::new(text)?;
    for _ in 0..MAX_PASSES {
        let again = Jid::new(jid.as_str())?;
        if again == jid {
            return Ok(jid);
        }
        jid = again;
    }
    Ok(jid)
}

/// [`parse_jid`] for a bare JID (a resource, if any, is dropped).
pub fn parse_bare_jid(text: &str) -> Result<BareJid, Error> {
    parse_jid(text).map(|j| j.to_bare())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lunate_sigma_reaches_a_fixed_point() {
        // Regression input from fuzz/artifacts/jid (crash-2042e1bd…).
        let once = Jid::new("\u{3f9}KIKKKKKSSSSSSSS").expect("valid").to_string();
        let twice = Jid::new(&once).expect("valid").to_string();
        assert_ne!(once, twice, "the jid crate itself is not idempotent here");
        let fixed = parse_jid("\u{3f9}KIKKKKKSSSSSSSS").expect("valid");
        assert_eq!(parse_jid(fixed.as_str()).expect("valid"), fixed);
        assert_eq!(fixed.as_str(), twice);
        let user = parse_bare_jid("\u{3f9}x@localhost").expect("valid");
        assert_eq!(parse_bare_jid(&user.to_string()).expect("valid"), user);
    }

    #[test]
    fn ordinary_addresses_are_unchanged() {
        assert_eq!(parse_jid("Alice@Example.ORG/Desk").expect("valid").as_str(), "alice@example.org/Desk");
        assert!(parse_jid("a@b@c").is_err());
    }
}
