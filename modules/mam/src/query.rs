//! MAM queries, sans-IO: the XEP-0313 §4 query form with XEP-0059 paging parsed into
//! an [`ArchiveQuery`], the form a client discovers (§4.1.1), and the `<result/>` and
//! `<fin/>` elements of an answer (§4.2, §4.3).

use starling_api::archive::{ArchiveQuery, NS_MAM};
use starling_api::minidom::Element;
use starling_api::stanza::{escape_attr, escape_text};
use starling_api::xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use starling_api::{parse_jid, stanza_error};

const NS_DATA: &str = "jabber:x:data";
const NS_RSM: &str = "http://jabber.org/protocol/rsm";
/// XEP-0431 full-text search field.
pub const FULLTEXT_FIELD: &str = "{urn:xmpp:fulltext:0}fulltext";

fn bad_request() -> StanzaError {
    stanza_error(ErrorType::Modify, DefinedCondition::BadRequest)
}

/// A XEP-0082 date-time as µs since the epoch.
fn parse_time(text: &str) -> Result<i64, StanzaError> {
    chrono::DateTime::parse_from_rfc3339(text.trim()).map(|t| t.timestamp_micros()).map_err(|_| bad_request())
}

/// XEP-0082 form of µs since the epoch (UTC, microseconds).
pub fn format_time(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Parses `<query xmlns='urn:xmpp:mam:2'>`.
pub fn parse(query: &Element) -> Result<ArchiveQuery, StanzaError> {
    if !query.is("query", NS_MAM) {
        return Err(bad_request());
    }
    let mut parsed = ArchiveQuery { query_id: query.attr("queryid").map(str::to_owned), ..ArchiveQuery::default() };
    for child in query.children() {
        match (child.ns().as_str(), child.name()) {
            (NS_DATA, "x") => parse_form(child, &mut parsed)?,
            (NS_RSM, "set") => parse_set(child, &mut parsed)?,
            (NS_MAM, "flip-page") => parsed.flip_page = true,
            _ => return Err(bad_request()),
        }
    }
    if query.attr("node").is_some() {
        // Archives of pubsub nodes (§3) are not kept here.
        return Err(stanza_error(ErrorType::Cancel, DefinedCondition::ItemNotFound));
    }
    Ok(parsed)
}

fn values(field: &Element) -> Vec<String> {
    field.children().filter(|v| v.is("value", NS_DATA)).map(|v| v.text()).collect()
}

fn single(field: &Element) -> Result<String, StanzaError> {
    let mut all = values(field);
    match all.len() {
        1 => Ok(all.remove(0)),
        _ => Err(bad_request()),
    }
}

fn parse_form(form: &Element, parsed: &mut ArchiveQuery) -> Result<(), StanzaError> {
    for field in form.children().filter(|f| f.is("field", NS_DATA)) {
        let var = field.attr("var").unwrap_or_default();
        match var {
            "FORM_TYPE" => {
                let form_type = single(field)?;
                if form_type != NS_MAM {
                    return Err(bad_request());
                }
            }
            "with" => parsed.with = Some(parse_jid(single(field)?.trim()).map_err(|_| bad_request())?),
            "start" => parsed.start_us = Some(parse_time(&single(field)?)?),
            "end" => parsed.end_us = Some(parse_time(&single(field)?)?),
            "after-id" => parsed.after_id = Some(single(field)?),
            "before-id" => {
                parsed.before_id = Some(single(field)?);
                parsed.from_end = true;
            }
            "ids" => parsed.ids = values(field),
            FULLTEXT_FIELD => parsed.fulltext = Some(single(field)?),
            // XEP-0313 §4.1.1: a field the server does not know is an error.
            _ => return Err(bad_request()),
        }
    }
    Ok(())
}

fn parse_set(set: &Element, parsed: &mut ArchiveQuery) -> Result<(), StanzaError> {
    for child in set.children() {
        match child.name() {
            "max" => parsed.max = Some(child.text().trim().parse().map_err(|_| bad_request())?),
            "after" => parsed.after_id = Some(child.text()),
            "before" => {
                // XEP-0059 §2.5: an empty <before/> asks for the last page.
                let text = child.text();
                parsed.from_end = true;
                if !text.is_empty() {
                    parsed.before_id = Some(text);
                }
            }
            // Paging by index (§2.4) is not offered: ids page just as well.
            "index" => return Err(stanza_error(ErrorType::Cancel, DefinedCondition::FeatureNotImplemented)),
            _ => return Err(bad_request()),
        }
    }
    Ok(())
}

/// The query form (§4.1.1), for `<iq type='get'><query/></iq>`.
pub fn form() -> Element {
    let field = |var: &str, type_: &str| {
        Element::builder("field", NS_DATA)
            .attr(starling_api::minidom::rxml::xml_ncname!("var").into(), var)
            .attr(starling_api::minidom::rxml::xml_ncname!("type").into(), type_)
            .build()
    };
    let form_type = Element::builder("field", NS_DATA)
        .attr(starling_api::minidom::rxml::xml_ncname!("var").into(), "FORM_TYPE")
        .attr(starling_api::minidom::rxml::xml_ncname!("type").into(), "hidden")
        .append(Element::builder("value", NS_DATA).append(NS_MAM).build())
        .build();
    let x = Element::builder("x", NS_DATA)
        .attr(starling_api::minidom::rxml::xml_ncname!("type").into(), "form")
        .append(form_type)
        .append(field("with", "jid-single"))
        .append(field("start", "text-single"))
        .append(field("end", "text-single"))
        .append(field("before-id", "text-single"))
        .append(field("after-id", "text-single"))
        .append(field("ids", "list-multi"))
        .append(field(FULLTEXT_FIELD, "text-single"))
        .build();
    Element::builder("query", NS_MAM).append(x).build()
}

/// The children of one result message: `<result><forwarded><delay/>stored</forwarded></result>`,
/// built as canonical XML from the stored message without a DOM.
pub fn result_children(query_id: Option<&str>, stanza_id: &str, created_us: i64, stored: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(stored.len() + 256);
    out.extend_from_slice(b"<result xmlns='urn:xmpp:mam:2'");
    if let Some(query_id) = query_id {
        out.extend_from_slice(b" queryid='");
        escape_attr(&mut out, query_id);
        out.push(b'\'');
    }
    out.extend_from_slice(b" id='");
    escape_attr(&mut out, stanza_id);
    out.extend_from_slice(b"'><forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp='");
    escape_text(&mut out, &format_time(created_us));
    out.extend_from_slice(b"'/>");
    out.extend_from_slice(stored.as_bytes());
    out.extend_from_slice(b"</forwarded></result>");
    out
}

/// `<fin/>` (§4.3) with its RSM set (XEP-0059 §2.6).
pub fn fin(first: Option<&str>, last: Option<&str>, count: Option<i64>, complete: bool) -> Element {
    let mut set = Element::builder("set", NS_RSM);
    if let Some(first) = first {
        set = set.append(Element::builder("first", NS_RSM).append(first).build());
    }
    if let Some(last) = last {
        set = set.append(Element::builder("last", NS_RSM).append(last).build());
    }
    if let Some(count) = count {
        set = set.append(Element::builder("count", NS_RSM).append(count.to_string()).build());
    }
    let mut fin = Element::builder("fin", NS_MAM);
    if complete {
        fin = fin.attr(starling_api::minidom::rxml::xml_ncname!("complete").into(), "true");
    }
    fin.append(set.build()).build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(xml: &str) -> Result<ArchiveQuery, StanzaError> {
        parse(&xml.parse::<Element>().expect("xml"))
    }

    #[test]
    fn xep_0313_example_filters_parse() {
        // XEP-0313 Example 6 (with) and Example 8 (start, end), with RSM and flip-page.
        let parsed = query(
            "<query xmlns='urn:xmpp:mam:2' queryid='f27'><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>\
             <field var='with'><value>juliet@capulet.lit</value></field>\
             <field var='start'><value>2010-06-07T00:00:00Z</value></field>\
             <field var='end'><value>2010-07-07T13:23:54Z</value></field></x>\
             <set xmlns='http://jabber.org/protocol/rsm'><max>10</max><before/></set><flip-page/></query>",
        )
        .expect("valid");
        assert_eq!(parsed.query_id.as_deref(), Some("f27"));
        assert_eq!(parsed.with.as_ref().map(|j| j.as_str()), Some("juliet@capulet.lit"));
        assert_eq!(parsed.start_us, Some(1_275_868_800_000_000));
        assert_eq!(parsed.max, Some(10));
        assert!(parsed.from_end && parsed.flip_page && parsed.before_id.is_none());
    }

    #[test]
    fn ids_and_fulltext_parse_and_unknown_fields_are_refused() {
        let parsed = query(
            "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'>\
             <field var='ids'><value>a</value><value>b</value></field>\
             <field var='{urn:xmpp:fulltext:0}fulltext'><value>hello</value></field></x></query>",
        )
        .expect("valid");
        assert_eq!(parsed.ids, ["a", "b"]);
        assert_eq!(parsed.fulltext.as_deref(), Some("hello"));
        let unknown = query(
            "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data'><field var='colour'><value>x</value></field></x></query>",
        );
        assert!(unknown.is_err());
        let bad_time = query(
            "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data'><field var='start'><value>yesterday</value></field></x></query>",
        );
        assert!(bad_time.is_err());
    }

    #[test]
    fn result_children_are_canonical_xml() {
        let stored = "<message xmlns='jabber:client' from='a@x/r' to='b@x'><body>1 &lt; 2</body></message>";
        let bytes = result_children(Some("q'1"), "id1", 0, stored);
        let text = String::from_utf8(bytes).expect("utf8");
        let element: Element = text.parse().expect("well-formed");
        assert_eq!(element.attr("queryid"), Some("q'1"));
        let forwarded = element.get_child("forwarded", "urn:xmpp:forward:0").expect("forwarded");
        assert_eq!(
            forwarded.get_child("delay", "urn:xmpp:delay").and_then(|d| d.attr("stamp")),
            Some("1970-01-01T00:00:00.000000Z")
        );
        assert!(forwarded.get_child("message", "jabber:client").is_some());
    }
}
