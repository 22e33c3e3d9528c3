//! Affiliations and roles (XEP-0045 §5): the long-lived standing of a JID in a room,
//! and the standing of an occupant while present.

/// `http://jabber.org/protocol/muc`
pub const NS_MUC: &str = "http://jabber.org/protocol/muc";
/// `http://jabber.org/protocol/muc#user`
pub const NS_USER: &str = "http://jabber.org/protocol/muc#user";
/// `http://jabber.org/protocol/muc#admin`
pub const NS_ADMIN: &str = "http://jabber.org/protocol/muc#admin";
/// `http://jabber.org/protocol/muc#owner`
pub const NS_OWNER: &str = "http://jabber.org/protocol/muc#owner";
/// XEP-0421 occupant ids.
pub const NS_OCCUPANT_ID: &str = "urn:xmpp:occupant-id:0";
/// XEP-0203 delayed delivery.
pub const NS_DELAY: &str = "urn:xmpp:delay";
/// XEP-0425 message moderation.
pub const NS_MODERATE: &str = "urn:xmpp:message-moderate:1";
/// XEP-0424 message retraction.
pub const NS_RETRACT: &str = "urn:xmpp:message-retract:1";
/// `urn:xmpp:hats:0` (XEP-0317)
pub const NS_HATS: &str = "urn:xmpp:hats:0";

/// A hat (XEP-0317): a role beyond affiliations, named by its URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hat {
    /// Identifies the hat.
    pub uri: String,
    /// Shown to people.
    pub title: String,
}

/// A JID's long-lived standing in a room (§5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Affiliation {
    /// Banned: cannot enter.
    Outcast,
    /// No affiliation.
    None,
    /// May enter a members-only room.
    Member,
    /// Moderates, manages members and bans.
    Admin,
    /// Configures and destroys the room.
    Owner,
}

impl Affiliation {
    /// The protocol name.
    pub fn as_str(self) -> &'static str {
        match self {
            Affiliation::Outcast => "outcast",
            Affiliation::None => "none",
            Affiliation::Member => "member",
            Affiliation::Admin => "admin",
            Affiliation::Owner => "owner",
        }
    }

    /// Parses a protocol name.
    pub fn parse(text: &str) -> Option<Affiliation> {
        Some(match text {
            "outcast" => Affiliation::Outcast,
            "none" => Affiliation::None,
            "member" => Affiliation::Member,
            "admin" => Affiliation::Admin,
            "owner" => Affiliation::Owner,
            _ => return None,
        })
    }
}

/// A JID's affiliation with a room, why it was given, and the nickname the JID
/// registered (§7.10), which nobody else may use there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    /// The affiliation (never [`Affiliation::None`] in a room's table).
    pub affiliation: Affiliation,
    /// The reason given with it.
    pub reason: Option<String>,
    /// The registered nickname.
    pub nick: Option<String>,
}

/// An occupant's standing while present (§5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Not in the room (the role of a leaving occupant).
    None,
    /// Present, cannot speak in a moderated room.
    Visitor,
    /// May speak.
    Participant,
    /// Kicks, grants and revokes voice.
    Moderator,
}

impl Role {
    /// The protocol name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::None => "none",
            Role::Visitor => "visitor",
            Role::Participant => "participant",
            Role::Moderator => "moderator",
        }
    }

    /// Parses a protocol name.
    pub fn parse(text: &str) -> Option<Role> {
        Some(match text {
            "none" => Role::None,
            "visitor" => Role::Visitor,
            "participant" => Role::Participant,
            "moderator" => Role::Moderator,
            _ => return None,
        })
    }
}
