//! What a client asks for inline in its SASL2 `<authenticate/>` (XEP-0388 §2.3): a
//! Bind 2 request (XEP-0386) with the features to enable on the new session, and a
//! stream management resumption (XEP-0198 §5 with SASL2).
//!
//! Bind 2 binds a server-chosen resource: a prefix stable per client — the client's
//! `<tag/>` and a short hash of its user-agent id, which identifies the installation
//! without revealing the id itself (XEP-0386 §2.4) — and a random suffix, so two
//! sessions of one installation never collide. Stream management and CSI are the core's
//! own inline features; modules add theirs through
//! [`starling_api::Registrar::bind2_feature`].

use base64::Engine;
use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD};
use jid::FullJid;
use sha2::{Digest, Sha256};
use starling_api::Stanza;
use starling_api::minidom::Element;

use super::C2sShared;
use super::negotiate::{NS_FAST, NS_SASL2, escaped};
use super::sm::NS_SM;

/// Bind 2 (XEP-0386).
pub(super) const NS_BIND2: &str = "urn:xmpp:bind:0";
/// XEP-0352 Client State Indication.
pub(super) const NS_CSI: &str = "urn:xmpp:csi:0";

/// A successful authentication whose `<success/>` is still to be written. In SASL2 it
/// names the full JID, known only once a resource is bound or a session resumed.
pub(super) struct SaslSuccess {
    /// The mechanism's final data (SCRAM's server-final-message).
    pub additional_data: Option<Vec<u8>>,
    /// A FAST token issued in this login (XEP-0484 §3.3).
    pub fast_token: Option<crate::fast::IssuedToken>,
}

impl SaslSuccess {
    /// The SASL2 `<success>` with its additional data and `authzid`, left open for what the
    /// inline features answer; the caller closes it with `</success>`.
    pub fn open(&self, authzid: &str) -> String {
        let data = self
            .additional_data
            .as_ref()
            .map(|d| format!("<additional-data>{}</additional-data>", BASE64.encode(d)))
            .unwrap_or_default();
        let token = self
            .fast_token
            .as_ref()
            .map(|t| {
                let expiry = chrono::DateTime::from_timestamp_millis(t.expires_at_ms)
                    .unwrap_or_default()
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                format!("<token xmlns='{NS_FAST}' expiry='{expiry}' token='{}'/>", escaped(&t.token))
            })
            .unwrap_or_default();
        format!(
            "<success xmlns='{NS_SASL2}'>{data}<authorization-identifier>{}</authorization-identifier>{token}",
            escaped(authzid)
        )
    }
}

/// The inline requests of one `<authenticate/>`.
pub(super) struct Inline {
    /// `<user-agent id=…/>`: the client installation.
    pub user_agent_id: Option<String>,
    /// `<bind xmlns='urn:xmpp:bind:0'/>`.
    pub bind: Option<Element>,
    /// `<resume xmlns='urn:xmpp:sm:3'/>`: `Err` when `previd` or `h` is missing or bad.
    pub resume: Option<Result<(String, u32), ()>>,
}

impl Inline {
    /// Reads the inline requests of `authenticate`.
    pub fn of(authenticate: &Stanza) -> Inline {
        let Ok(element) = authenticate.to_element() else {
            return Inline { user_agent_id: None, bind: None, resume: None };
        };
        let user_agent_id = element
            .get_child("user-agent", NS_SASL2)
            .and_then(|ua| ua.attr("id"))
            .filter(|id| !id.is_empty())
            .map(str::to_owned);
        let resume = element.get_child("resume", NS_SM).map(|resume| {
            let previd = resume.attr("previd").ok_or(())?;
            let h = resume.attr("h").and_then(|h| h.parse::<u32>().ok()).ok_or(())?;
            Ok((previd.to_owned(), h))
        });
        Inline { user_agent_id, bind: element.get_child("bind", NS_BIND2).cloned(), resume }
    }
}

/// What the new session does before anything else: answer the SASL2 authentication with
/// `<success/>` and `<bound/>`, with stream management and CSI as requested inline.
pub(super) struct InlineBound {
    /// The pending `<success/>`.
    pub success: SaslSuccess,
    /// Written in `<success/>` before `<bound/>` (a failed inline resumption).
    pub before_bound: Vec<u8>,
    /// What modules' inline features answered, for `<bound/>`.
    pub module_answers: String,
    /// `<enable xmlns='urn:xmpp:sm:3'/>`, answered inside `<bound/>`.
    pub sm_enable: Option<Stanza>,
    /// `<inactive xmlns='urn:xmpp:csi:0'/>`: the session starts inactive.
    pub inactive: bool,
}

impl InlineBound {
    /// The session's inline setup from the client's `<bind/>`, once `jid` is bound: the
    /// enabled modules' features run now, the core's are kept for the session.
    pub fn new(shared: &C2sShared, jid: &FullJid, bind: &Element, success: SaslSuccess, before_bound: Vec<u8>) -> Self {
        let context = &shared.context;
        let host = jid.domain().as_str();
        let mut module_answers = String::new();
        let mut sm_enable = None;
        let mut inactive = false;
        for child in bind.children() {
            let ns = child.ns();
            match (ns.as_str(), child.name()) {
                (NS_SM, "enable") => sm_enable = Some(Stanza::from_element(child)),
                (NS_CSI, "inactive") => inactive = true,
                (NS_CSI, "active") => inactive = false,
                (ns, _) => {
                    let handlers = context
                        .registry()
                        .bind2_features()
                        .filter(|(feature, _, module)| *feature == ns && context.module_enabled(module.name, host));
                    for (_, handler, _) in handlers {
                        if let Some(answer) = handler(context, jid, child) {
                            module_answers.push_str(&answer);
                        }
                    }
                }
            }
        }
        InlineBound { success, before_bound, module_answers, sm_enable, inactive }
    }
}

/// The core's part of the SASL2 `<inline/>` feature list: stream management
/// resumption, and Bind 2 with the features it can enable on `host`.
pub(super) fn inline_features(shared: &C2sShared, host: &str) -> String {
    let context = &shared.context;
    let mut features: Vec<&str> = vec![NS_SM, NS_CSI];
    for (ns, _, module) in context.registry().bind2_features() {
        if context.module_enabled(module.name, host) && !features.contains(&ns) {
            features.push(ns);
        }
    }
    let features: String = features.iter().map(|ns| format!("<feature var='{ns}'/>")).collect();
    format!("<sm xmlns='{NS_SM}'/><bind xmlns='{NS_BIND2}'><inline>{features}</inline></bind>")
}

/// The resource Bind 2 binds for a client: `tag.hash~random`, or `hash~random`
/// without a usable tag, where `hash` comes from the user-agent id (a fresh random one
/// when the client sent none).
pub(super) fn resource(bind: &Element, user_agent_id: Option<&str>) -> String {
    let tag = bind
        .get_child("tag", NS_BIND2)
        .map(|t| t.text())
        .map(|t| t.trim().chars().filter(|c| !c.is_whitespace() && *c != '/').take(32).collect::<String>())
        .filter(|t| !t.is_empty());
    let stable = match user_agent_id {
        Some(id) => URL_SAFE_NO_PAD.encode(&Sha256::digest(id.as_bytes())[..6]),
        None => URL_SAFE_NO_PAD.encode(rand::random::<[u8; 6]>()),
    };
    let random = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 3]>());
    match tag {
        Some(tag) => format!("{tag}.{stable}~{random}"),
        None => format!("{stable}~{random}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(xml: &str) -> Element {
        xml.parse().expect("xml")
    }

    #[test]
    fn the_resource_prefix_is_stable_per_user_agent_and_the_suffix_is_not() {
        let request = bind("<bind xmlns='urn:xmpp:bind:0'><tag>Conversations</tag></bind>");
        let a = resource(&request, Some("d4565fa7-4d72-4749-b3d3-740edbf87770"));
        let b = resource(&request, Some("d4565fa7-4d72-4749-b3d3-740edbf87770"));
        let other = resource(&request, Some("another installation"));
        let prefix = |r: &str| r.split('~').next().map(str::to_owned);
        assert!(a.starts_with("Conversations."), "{a}");
        assert_eq!(prefix(&a), prefix(&b));
        assert_ne!(a, b, "random suffix");
        assert_ne!(prefix(&a), prefix(&other));
        assert!(jid::ResourcePart::new(&a).is_ok());
    }

    #[test]
    fn a_tag_without_text_leaves_only_the_hash() {
        let request = bind("<bind xmlns='urn:xmpp:bind:0'><tag> </tag></bind>");
        assert!(!resource(&request, Some("x")).contains('.'));
    }
}
