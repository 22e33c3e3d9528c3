//! Room configuration (XEP-0045 §10.2, the `muc#roomconfig` form as Prosody and
//! ejabberd expose it) and its TOML form in the database.

use serde::{Deserialize, Serialize};
use starling_api::minidom::Element;

use crate::xml::Node;

/// `jabber:x:data`
pub const NS_DATA: &str = "jabber:x:data";
const FORM_TYPE: &str = "http://jabber.org/protocol/muc#roomconfig";

/// Who may send private messages to occupants (`muc#roomconfig_allowpm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PmPolicy {
    /// Every occupant.
    Anyone,
    /// Participants and moderators (not visitors).
    Participants,
    /// Moderators only.
    Moderators,
    /// Nobody.
    None,
}

impl PmPolicy {
    fn as_str(self) -> &'static str {
        match self {
            PmPolicy::Anyone => "anyone",
            PmPolicy::Participants => "participants",
            PmPolicy::Moderators => "moderators",
            PmPolicy::None => "none",
        }
    }

    fn parse(text: &str) -> Option<PmPolicy> {
        Some(match text {
            "anyone" => PmPolicy::Anyone,
            "participants" => PmPolicy::Participants,
            "moderators" => PmPolicy::Moderators,
            "none" => PmPolicy::None,
            _ => return None,
        })
    }
}

/// A room's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoomConfig {
    /// `muc#roomconfig_roomname`
    pub name: String,
    /// `muc#roomconfig_roomdesc`
    pub description: String,
    /// `muc#roomconfig_persistentroom`: survives its last occupant and restarts.
    pub persistent: bool,
    /// `muc#roomconfig_publicroom`: listed in the service's disco#items.
    pub public: bool,
    /// `muc#roomconfig_membersonly`
    pub members_only: bool,
    /// `muc#roomconfig_roomsecret` (with `passwordprotectedroom`); empty for none.
    pub password: String,
    /// `muc#roomconfig_moderatedroom`: unaffiliated occupants join as visitors.
    pub moderated: bool,
    /// `muc#roomconfig_whois` = `anyone`: every occupant sees real JIDs
    /// (non-anonymous); otherwise only moderators do (semi-anonymous).
    pub whois_anyone: bool,
    /// `muc#roomconfig_maxusers`; 0 for the service's limit.
    pub max_occupants: usize,
    /// `muc#roomconfig_historylength`: messages kept for joiners.
    pub history_length: usize,
    /// `muc#roomconfig_allowpm`
    pub allow_pm: PmPolicy,
    /// `muc#roomconfig_allowinvites`: occupants (not only admins) may invite.
    pub allow_invites: bool,
    /// `muc#roomconfig_changesubject`: participants (not only moderators) may.
    pub change_subject: bool,
    /// `muc#roomconfig_enablearchiving`: messages go to the room's archive (XEP-0313).
    pub archiving: bool,
}

impl Default for RoomConfig {
    fn default() -> Self {
        RoomConfig {
            name: String::new(),
            description: String::new(),
            persistent: false,
            public: true,
            members_only: false,
            password: String::new(),
            moderated: false,
            whois_anyone: false,
            max_occupants: 0,
            history_length: 20,
            allow_pm: PmPolicy::Anyone,
            allow_invites: false,
            change_subject: false,
            archiving: true,
        }
    }
}

fn field(var: &'static str, type_: &'static str, label: &'static str, values: &[String]) -> Node {
    let mut node = Node::new("field", NS_DATA).attr("var", var).attr("type", type_).attr("label", label);
    for value in values {
        node.push(Node::text_element("value", NS_DATA, value.clone()));
    }
    node
}

fn boolean(value: bool) -> Vec<String> {
    vec![if value { "1" } else { "0" }.to_owned()]
}

fn list_single(var: &'static str, label: &'static str, value: &str, options: &[(&str, &str)]) -> Node {
    let mut node = field(var, "list-single", label, &[value.to_owned()]);
    for (label, value) in options {
        node.push(
            Node::new("option", NS_DATA).attr("label", *label).child(Node::text_element("value", NS_DATA, *value)),
        );
    }
    node
}

impl RoomConfig {
    /// The `<x type='form'/>` an owner fills in (§10.2), showing the current values;
    /// `max_occupants` is the service's limit.
    pub fn form(&self, max_occupants: usize, max_history: usize) -> Node {
        let max = if self.max_occupants == 0 { max_occupants } else { self.max_occupants };
        let sizes: Vec<(String, String)> = [10, 20, 30, 50, 100, 200, 500, 1000, max_occupants]
            .into_iter()
            .filter(|n| *n <= max_occupants)
            .map(|n| (n.to_string(), n.to_string()))
            .collect();
        let sizes: Vec<(&str, &str)> = sizes.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        Node::new("x", NS_DATA)
            .attr("type", "form")
            .child(Node::text_element("title", NS_DATA, "Room configuration"))
            .child(field("FORM_TYPE", "hidden", "", &[FORM_TYPE.to_owned()]))
            .child(field("muc#roomconfig_roomname", "text-single", "Name", std::slice::from_ref(&self.name)))
            .child(field(
                "muc#roomconfig_roomdesc",
                "text-single",
                "Description",
                std::slice::from_ref(&self.description),
            ))
            .child(field("muc#roomconfig_persistentroom", "boolean", "Persistent", &boolean(self.persistent)))
            .child(field("muc#roomconfig_publicroom", "boolean", "Listed in the directory", &boolean(self.public)))
            .child(field("muc#roomconfig_membersonly", "boolean", "Members only", &boolean(self.members_only)))
            .child(field(
                "muc#roomconfig_passwordprotectedroom",
                "boolean",
                "Password protected",
                &boolean(!self.password.is_empty()),
            ))
            .child(field("muc#roomconfig_roomsecret", "text-private", "Password", std::slice::from_ref(&self.password)))
            .child(field("muc#roomconfig_moderatedroom", "boolean", "Moderated", &boolean(self.moderated)))
            .child(list_single(
                "muc#roomconfig_whois",
                "Who may see real JIDs",
                if self.whois_anyone { "anyone" } else { "moderators" },
                &[("Moderators", "moderators"), ("Anyone", "anyone")],
            ))
            .child(list_single("muc#roomconfig_maxusers", "Maximum occupants", &max.to_string(), &sizes))
            .child(field(
                "muc#roomconfig_historylength",
                "text-single",
                "Messages of history (at most the service's limit)",
                &[self.history_length.min(max_history).to_string()],
            ))
            .child(list_single(
                "muc#roomconfig_allowpm",
                "Who may send private messages",
                self.allow_pm.as_str(),
                &[
                    ("Anyone", "anyone"),
                    ("Participants", "participants"),
                    ("Moderators", "moderators"),
                    ("Nobody", "none"),
                ],
            ))
            .child(field(
                "muc#roomconfig_allowinvites",
                "boolean",
                "Occupants may invite",
                &boolean(self.allow_invites),
            ))
            .child(field(
                "muc#roomconfig_changesubject",
                "boolean",
                "Participants may change the subject",
                &boolean(self.change_subject),
            ))
            .child(field("muc#roomconfig_enablearchiving", "boolean", "Archive messages", &boolean(self.archiving)))
    }

    /// Applies a submitted form (`<x type='submit'/>`): fields left out keep their
    /// value, unknown fields are ignored (§10.2: other services' extensions). Fails
    /// with the offending field's name on a malformed value.
    pub fn apply(&mut self, form: &Element, max_occupants: usize, max_history: usize) -> Result<(), String> {
        let mut password_protected = None;
        for field in form.children().filter(|c| c.is("field", NS_DATA)) {
            let Some(var) = field.attr("var") else { continue };
            let values: Vec<String> = field.children().filter(|c| c.is("value", NS_DATA)).map(|v| v.text()).collect();
            let first = values.first().map(String::as_str).unwrap_or_default();
            let flag = || match first {
                "1" | "true" => Ok(true),
                "0" | "false" | "" => Ok(false),
                _ => Err(var.to_owned()),
            };
            match var {
                "FORM_TYPE" if first != FORM_TYPE => return Err(var.to_owned()),
                "muc#roomconfig_roomname" => self.name = first.to_owned(),
                "muc#roomconfig_roomdesc" => self.description = first.to_owned(),
                "muc#roomconfig_persistentroom" => self.persistent = flag()?,
                "muc#roomconfig_publicroom" => self.public = flag()?,
                "muc#roomconfig_membersonly" => self.members_only = flag()?,
                "muc#roomconfig_passwordprotectedroom" => password_protected = Some(flag()?),
                "muc#roomconfig_roomsecret" => self.password = first.to_owned(),
                "muc#roomconfig_moderatedroom" => self.moderated = flag()?,
                "muc#roomconfig_whois" => {
                    self.whois_anyone = match first {
                        "anyone" => true,
                        "moderators" => false,
                        _ => return Err(var.to_owned()),
                    }
                }
                "muc#roomconfig_maxusers" => {
                    let n: usize = match first {
                        "" | "none" => 0,
                        n => n.parse().map_err(|_| var.to_owned())?,
                    };
                    self.max_occupants = if n == 0 { 0 } else { n.min(max_occupants) };
                }
                "muc#roomconfig_historylength" => {
                    let n: usize = first.parse().map_err(|_| var.to_owned())?;
                    self.history_length = n.min(max_history);
                }
                "muc#roomconfig_allowpm" => self.allow_pm = PmPolicy::parse(first).ok_or_else(|| var.to_owned())?,
                "muc#roomconfig_allowinvites" => self.allow_invites = flag()?,
                "muc#roomconfig_changesubject" => self.change_subject = flag()?,
                // The registry's name for the same switch; Prosody's is the first.
                "muc#roomconfig_enablearchiving" | "muc#roomconfig_enablelogging" => self.archiving = flag()?,
                _ => {}
            }
        }
        if password_protected == Some(false) {
            self.password.clear();
        }
        Ok(())
    }

    /// The disco#info features describing the room (§6.4, §15.6 registry).
    pub fn features(&self) -> Vec<&'static str> {
        vec![
            if self.persistent { "muc_persistent" } else { "muc_temporary" },
            if self.public { "muc_public" } else { "muc_hidden" },
            if self.members_only { "muc_membersonly" } else { "muc_open" },
            if self.moderated { "muc_moderated" } else { "muc_unmoderated" },
            if self.password.is_empty() { "muc_unsecured" } else { "muc_passwordprotected" },
            if self.whois_anyone { "muc_nonanonymous" } else { "muc_semianonymous" },
        ]
    }

    /// The stored form.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// Reads the stored form; fields added since it was written take their defaults.
    pub fn from_toml(text: &str) -> Option<RoomConfig> {
        toml::from_str(text).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submitted_forms_apply_and_the_stored_form_round_trips() {
        let form: Element = format!(
            "<x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE'><value>{FORM_TYPE}</value></field>\
             <field var='muc#roomconfig_roomname'><value>Council</value></field>\
             <field var='muc#roomconfig_persistentroom'><value>1</value></field>\
             <field var='muc#roomconfig_moderatedroom'><value>true</value></field>\
             <field var='muc#roomconfig_maxusers'><value>5000</value></field>\
             <field var='muc#roomconfig_whois'><value>anyone</value></field>\
             <field var='x-unknown'><value>ignored</value></field></x>"
        )
        .parse()
        .expect("xml");
        let mut config = RoomConfig::default();
        config.apply(&form, 200, 50).expect("applies");
        assert_eq!(config.name, "Council");
        assert!(config.persistent && config.moderated && config.whois_anyone);
        assert_eq!(config.max_occupants, 200, "capped by the service");
        assert_eq!(RoomConfig::from_toml(&config.to_toml()), Some(config.clone()));
        let bad: Element = "<x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_publicroom'><value>maybe</value></field></x>"
            .parse()
            .expect("xml");
        assert_eq!(config.apply(&bad, 200, 50), Err("muc#roomconfig_publicroom".to_owned()));
    }
}
