//! XEP-0313 §6 archiving preferences: what to archive by default (always, never, or
//! only for contacts in the roster) and JIDs always or never archived. Kept in memory
//! (loaded at start, written through) because the routing hooks decide synchronously.

use std::collections::{BTreeSet, HashMap};
use std::sync::RwLock;

use serde::Deserialize;
use starling_api::archive::NS_MAM;
use starling_api::minidom::Element;
use starling_api::xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use starling_api::{IqPayload, parse_bare_jid, stanza_error};

/// The `default` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Archive everything.
    #[default]
    Always,
    /// Archive nothing.
    Never,
    /// Archive messages with contacts in the roster.
    Roster,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Always => "always",
            Mode::Never => "never",
            Mode::Roster => "roster",
        }
    }

    fn parse(text: &str) -> Option<Mode> {
        match text {
            "always" => Some(Mode::Always),
            "never" => Some(Mode::Never),
            "roster" => Some(Mode::Roster),
            _ => None,
        }
    }
}

/// One account's preferences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefs {
    /// The default.
    pub default: Mode,
    /// Bare JIDs always archived.
    pub always: BTreeSet<String>,
    /// Bare JIDs never archived.
    pub never: BTreeSet<String>,
}

/// What to do with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Archive it.
    Archive,
    /// Do not.
    Skip,
    /// Archive it if the other party is in the owner's roster (checked by the writer).
    IfInRoster,
}

impl Prefs {
    /// Preferences of an account that never set any.
    pub fn with_default(default: Mode) -> Prefs {
        Prefs { default, always: BTreeSet::new(), never: BTreeSet::new() }
    }

    /// The decision for a message exchanged with `with` (a bare JID). A JID in both
    /// lists is never archived: "never" is the safer reading.
    pub fn decide(&self, with: &str) -> Decision {
        if self.never.contains(with) {
            return Decision::Skip;
        }
        if self.always.contains(with) {
            return Decision::Archive;
        }
        match self.default {
            Mode::Always => Decision::Archive,
            Mode::Never => Decision::Skip,
            Mode::Roster => Decision::IfInRoster,
        }
    }

    /// The stored row.
    pub fn to_row(&self, owner: &str) -> crate::store::PrefsRow {
        let join = |set: &BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>().join("\n");
        (owner.to_owned(), self.default.as_str().to_owned(), join(&self.always), join(&self.never))
    }

    /// From a stored row (unknown modes fall back to `fallback`).
    pub fn from_row(row: &crate::store::PrefsRow, fallback: Mode) -> Prefs {
        let split = |text: &str| text.lines().filter(|l| !l.is_empty()).map(str::to_owned).collect();
        Prefs { default: Mode::parse(&row.1).unwrap_or(fallback), always: split(&row.2), never: split(&row.3) }
    }

    /// `<prefs/>` (§6.1).
    pub fn to_element(&self) -> Element {
        let list = |name: &str, set: &BTreeSet<String>| {
            let mut list = Element::builder(name, NS_MAM);
            for jid in set {
                list = list.append(Element::builder("jid", NS_MAM).append(jid.as_str()).build());
            }
            list.build()
        };
        Element::builder("prefs", NS_MAM)
            .attr(starling_api::minidom::rxml::xml_ncname!("default").into(), self.default.as_str())
            .append(list("always", &self.always))
            .append(list("never", &self.never))
            .build()
    }

    /// Parses a `<prefs/>` set request.
    pub fn from_element(prefs: &Element) -> Result<Prefs, StanzaError> {
        let bad = || stanza_error(ErrorType::Modify, DefinedCondition::BadRequest);
        let default = prefs.attr("default").and_then(Mode::parse).ok_or_else(bad)?;
        let list = |name: &str| -> Result<BTreeSet<String>, StanzaError> {
            let mut out = BTreeSet::new();
            for list in prefs.children().filter(|c| c.is(name, NS_MAM)) {
                for jid in list.children().filter(|c| c.is("jid", NS_MAM)) {
                    out.insert(parse_bare_jid(jid.text().trim()).map_err(|_| bad())?.to_string());
                }
            }
            Ok(out)
        };
        Ok(Prefs { default, always: list("always")?, never: list("never")? })
    }
}

/// Every account's preferences, by owner.
#[derive(Default)]
pub struct PrefsTable {
    by_owner: RwLock<HashMap<String, Prefs>>,
}

impl PrefsTable {
    /// The decision for `owner`'s message with `with` (bare JID).
    pub fn decide(&self, owner: &str, with: &str, default: Mode) -> Decision {
        let table = self.by_owner.read().unwrap_or_else(|e| e.into_inner());
        match table.get(owner) {
            Some(prefs) => prefs.decide(with),
            None => Prefs::with_default(default).decide(with),
        }
    }

    /// `owner`'s preferences.
    pub fn get(&self, owner: &str, default: Mode) -> Prefs {
        let table = self.by_owner.read().unwrap_or_else(|e| e.into_inner());
        table.get(owner).cloned().unwrap_or_else(|| Prefs::with_default(default))
    }

    /// Replaces `owner`'s preferences (after they were stored).
    pub fn set(&self, owner: String, prefs: Prefs) {
        self.by_owner.write().unwrap_or_else(|e| e.into_inner()).insert(owner, prefs);
    }
}

/// The `<prefs xmlns='urn:xmpp:mam:2'/>` IQ payload.
pub struct PrefsPayload(pub Element);

impl TryFrom<Element> for PrefsPayload {
    type Error = Element;

    fn try_from(element: Element) -> Result<Self, Element> {
        if element.is("prefs", NS_MAM) { Ok(PrefsPayload(element)) } else { Err(element) }
    }
}

impl IqPayload for PrefsPayload {
    const NS: &'static str = NS_MAM;
    const NAME: &'static str = "prefs";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xep_0313_prefs_example_round_trips_and_decides() {
        // XEP-0313 §6.1 Example 33.
        let element: Element = "<prefs xmlns='urn:xmpp:mam:2' default='roster'>\
             <always><jid>romeo@montague.lit</jid></always>\
             <never><jid>montague@montague.lit</jid></never></prefs>"
            .parse()
            .expect("xml");
        let prefs = Prefs::from_element(&element).expect("valid");
        assert_eq!(prefs.decide("romeo@montague.lit"), Decision::Archive);
        assert_eq!(prefs.decide("montague@montague.lit"), Decision::Skip);
        assert_eq!(prefs.decide("tybalt@capulet.lit"), Decision::IfInRoster);
        assert_eq!(Prefs::from_element(&prefs.to_element()).expect("again"), prefs);
        let row = prefs.to_row("juliet@capulet.lit");
        assert_eq!(Prefs::from_row(&row, Mode::Always), prefs);
    }

    #[test]
    fn a_bad_default_is_refused() {
        let element: Element = "<prefs xmlns='urn:xmpp:mam:2' default='sometimes'/>".parse().expect("xml");
        assert!(Prefs::from_element(&element).is_err());
    }
}
