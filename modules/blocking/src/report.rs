//! XEP-0377: Spam Reporting — a `<report/>` inside an `<item/>` of a block request
//! tells the server why the user blocks that JID. The block is carried out as without
//! it; the report is logged (target `starling::spam_report`, for log-based alerting)
//! and stored in `blocking_reports` for the administrators. Reports are never
//! forwarded: `<report-origin/>` and `<third-party/>` opt-ins are recorded only.

use starling_api::jid::Jid;
use starling_api::minidom::Element;
use starling_api::xmpp_parsers::ns;

/// The reporting namespace, also the disco feature (§3).
pub const NS_REPORTING: &str = "urn:xmpp:reporting:1";
const NS_STANZA_ID: &str = "urn:xmpp:sid:0";

/// The reasons §4 defines.
const REASONS: [&str; 2] = ["urn:xmpp:reporting:spam", "urn:xmpp:reporting:abuse"];

/// One report, about the JID of its item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The reported JID.
    pub jid: Jid,
    /// `urn:xmpp:reporting:spam` or `urn:xmpp:reporting:abuse`.
    pub reason: String,
    /// The user's explanation, all `<text/>`s joined.
    pub text: String,
    /// The reported messages, `by id` pairs of their `<stanza-id/>`s.
    pub stanza_ids: Vec<String>,
}

/// `<block/>` with the reports of its items (xmpp-parsers' `Block` drops them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockRequest {
    /// The JIDs to block.
    pub items: Vec<Jid>,
    /// Reports attached to items.
    pub reports: Vec<Report>,
}

impl starling_api::IqPayload for BlockRequest {
    const NS: &'static str = ns::BLOCKING;
    const NAME: &'static str = "block";
}

/// Why a block request is malformed.
#[derive(Debug, PartialEq, Eq)]
pub struct BadBlock(pub String);

impl TryFrom<Element> for BlockRequest {
    type Error = BadBlock;

    fn try_from(element: Element) -> Result<Self, BadBlock> {
        if !element.is("block", ns::BLOCKING) {
            return Err(BadBlock("not a block".into()));
        }
        let mut request = BlockRequest { items: Vec::new(), reports: Vec::new() };
        for item in element.children().filter(|c| c.is("item", ns::BLOCKING)) {
            let jid = item.attr("jid").ok_or_else(|| BadBlock("an item without jid".into()))?;
            let jid = Jid::new(jid).map_err(|e| BadBlock(format!("{jid}: {e}")))?;
            if let Some(report) = item.get_child("report", NS_REPORTING) {
                let reason = report.attr("reason").unwrap_or_default();
                if !REASONS.contains(&reason) {
                    return Err(BadBlock(format!("unknown report reason {reason:?}")));
                }
                let texts: Vec<String> = report
                    .children()
                    .filter(|c| c.is("text", NS_REPORTING))
                    .map(|t| t.text().trim().to_owned())
                    .filter(|t| !t.is_empty())
                    .collect();
                let stanza_ids = report
                    .children()
                    .filter(|c| c.is("stanza-id", NS_STANZA_ID))
                    .filter_map(|s| Some(format!("{} {}", s.attr("by")?, s.attr("id")?)))
                    .collect();
                request.reports.push(Report {
                    jid: jid.clone(),
                    reason: reason.to_owned(),
                    text: texts.join("\n"),
                    stanza_ids,
                });
            }
            request.items.push(jid);
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// XEP-0377 Example 6, and a plain block.
    #[test]
    fn reports_are_read_from_the_items() {
        let xml = "<block xmlns='urn:xmpp:blocking'>\
            <item jid='romeo@example.net'>\
              <report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:spam'>\
                <stanza-id xmlns='urn:xmpp:sid:0' by='romeo@example.net' id='28482-98726-73623'/>\
                <stanza-id xmlns='urn:xmpp:sid:0' by='romeo@example.net' id='38383-38018-18385'/>\
                <text xml:lang='en'>Never came trouble to my house like this.</text>\
              </report>\
            </item><item jid='iago@example.net'/></block>";
        let request = BlockRequest::try_from(xml.parse::<Element>().expect("xml")).expect("parses");
        assert_eq!(request.items.len(), 2);
        assert_eq!(request.reports.len(), 1);
        let report = &request.reports[0];
        assert_eq!(report.jid.as_str(), "romeo@example.net");
        assert_eq!(report.reason, "urn:xmpp:reporting:spam");
        assert_eq!(report.text, "Never came trouble to my house like this.");
        assert_eq!(report.stanza_ids, ["romeo@example.net 28482-98726-73623", "romeo@example.net 38383-38018-18385"]);
        let bad =
            "<block xmlns='urn:xmpp:blocking'><item jid='a@b'><report xmlns='urn:xmpp:reporting:1'/></item></block>";
        assert!(BlockRequest::try_from(bad.parse::<Element>().expect("xml")).is_err(), "a report needs a reason");
        let bad = "<block xmlns='urn:xmpp:blocking'><item/></block>";
        assert!(BlockRequest::try_from(bad.parse::<Element>().expect("xml")).is_err());
    }
}
