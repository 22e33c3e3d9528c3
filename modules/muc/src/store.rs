//! The tables of persistent rooms: configuration, subject, occupant-id salt and
//! affiliations. Temporary rooms never touch them.

use diesel::prelude::*;
use starling_api::jid::BareJid;
use starling_api::{DbConn, parse_bare_jid};

use crate::model::{Affiliation, Hat, Standing};
use crate::roomconfig::RoomConfig;

diesel::table! {
    /// One row per persistent room.
    muc_rooms (jid) {
        jid -> Text,
        config -> Text,
        subject -> Nullable<Text>,
        subject_nick -> Nullable<Text>,
        salt -> Text,
        created_us -> BigInt,
        vcard -> Nullable<Text>,
    }
}

diesel::table! {
    /// One row per (room, bare JID) with an affiliation other than none.
    muc_affiliations (room, jid) {
        room -> Text,
        jid -> Text,
        affiliation -> Text,
        reason -> Nullable<Text>,
        nick -> Nullable<Text>,
    }
}

diesel::table! {
    /// One row per hat a bare JID wears in a persistent room (XEP-0317).
    muc_hats (room, jid, uri) {
        room -> Text,
        jid -> Text,
        uri -> Text,
        title -> Text,
    }
}

diesel::table! {
    /// Push registrations of members on persistent rooms (XEP-0357).
    muc_push (room, jid, service, node) {
        room -> Text,
        jid -> Text,
        service -> Text,
        node -> Text,
        publish_options -> Nullable<Text>,
    }
}

diesel::joinable!(muc_affiliations -> muc_rooms (room));
diesel::allow_tables_to_appear_in_same_query!(muc_rooms, muc_affiliations);

/// A persistent room as stored.
#[derive(Debug, Clone)]
pub struct StoredRoom {
    /// Its configuration.
    pub config: RoomConfig,
    /// Subject text and the nick that set it.
    pub subject: Option<(String, String)>,
    /// Occupant-id key.
    pub salt: String,
    /// Affiliations.
    pub affiliations: Vec<(BareJid, Standing)>,
    /// The room's vCard (XEP-0486), as XML.
    pub vcard: Option<String>,
    /// Hats (XEP-0317) by bare JID.
    pub hats: Vec<(BareJid, Hat)>,
    /// Members' push registrations.
    pub push: Vec<crate::room::RoomPush>,
}

/// Loads `room`, if it is a stored persistent room.
pub fn load(conn: &mut DbConn, room: &str) -> QueryResult<Option<StoredRoom>> {
    type Row = (String, Option<String>, Option<String>, String, Option<String>);
    let row: Option<Row> = muc_rooms::table
        .filter(muc_rooms::jid.eq(room))
        .select((muc_rooms::config, muc_rooms::subject, muc_rooms::subject_nick, muc_rooms::salt, muc_rooms::vcard))
        .first(conn)
        .optional()?;
    let Some((config, subject, subject_nick, salt, vcard)) = row else { return Ok(None) };
    let rows: Vec<(String, String, Option<String>, Option<String>)> = muc_affiliations::table
        .filter(muc_affiliations::room.eq(room))
        .select((
            muc_affiliations::jid,
            muc_affiliations::affiliation,
            muc_affiliations::reason,
            muc_affiliations::nick,
        ))
        .load(conn)?;
    let affiliations = rows
        .into_iter()
        .filter_map(|(jid, affiliation, reason, nick)| {
            let affiliation = Affiliation::parse(&affiliation)?;
            Some((parse_bare_jid(&jid).ok()?, Standing { affiliation, reason, nick }))
        })
        .collect();
    let hats: Vec<(String, String, String)> = muc_hats::table
        .filter(muc_hats::room.eq(room))
        .select((muc_hats::jid, muc_hats::uri, muc_hats::title))
        .load(conn)?;
    let hats = hats
        .into_iter()
        .filter_map(|(jid, uri, title)| Some((parse_bare_jid(&jid).ok()?, Hat { uri, title })))
        .collect();
    let push: Vec<(String, String, String, Option<String>)> = muc_push::table
        .filter(muc_push::room.eq(room))
        .select((muc_push::jid, muc_push::service, muc_push::node, muc_push::publish_options))
        .load(conn)?;
    let push = push
        .into_iter()
        .filter_map(|(jid, service, node, publish_options)| {
            Some(crate::room::RoomPush {
                member: parse_bare_jid(&jid).ok()?,
                service: starling_api::parse_jid(&service).ok()?,
                node,
                publish_options,
                missed: 0,
            })
        })
        .collect();
    Ok(Some(StoredRoom {
        push,
        hats,
        config: RoomConfig::from_toml(&config).unwrap_or_default(),
        subject: subject.map(|s| (s, subject_nick.unwrap_or_default())),
        salt,
        affiliations,
        vcard,
    }))
}

/// Writes the whole room (configuration, subject, affiliations), replacing what was
/// stored: run when a room becomes persistent and on every configuration change.
pub fn save(conn: &mut DbConn, room: &str, stored: &StoredRoom, now_us: i64) -> QueryResult<()> {
    conn.transaction(|conn| {
        let exists = muc_rooms::table.filter(muc_rooms::jid.eq(room)).count().get_result::<i64>(conn)? > 0;
        let config = stored.config.to_toml();
        let (subject, nick) = stored.subject.clone().unzip();
        if exists {
            diesel::update(muc_rooms::table.filter(muc_rooms::jid.eq(room)))
                .set((
                    muc_rooms::config.eq(&config),
                    muc_rooms::subject.eq(&subject),
                    muc_rooms::subject_nick.eq(&nick),
                    muc_rooms::vcard.eq(&stored.vcard),
                ))
                .execute(conn)?;
        } else {
            diesel::insert_into(muc_rooms::table)
                .values((
                    muc_rooms::jid.eq(room),
                    muc_rooms::config.eq(&config),
                    muc_rooms::subject.eq(&subject),
                    muc_rooms::subject_nick.eq(&nick),
                    muc_rooms::salt.eq(&stored.salt),
                    muc_rooms::created_us.eq(now_us),
                    muc_rooms::vcard.eq(&stored.vcard),
                ))
                .execute(conn)?;
        }
        diesel::delete(muc_affiliations::table.filter(muc_affiliations::room.eq(room))).execute(conn)?;
        for (jid, standing) in &stored.affiliations {
            insert_standing(conn, room, jid.as_str(), standing)?;
        }
        diesel::delete(muc_hats::table.filter(muc_hats::room.eq(room))).execute(conn)?;
        for (jid, hat) in &stored.hats {
            diesel::insert_into(muc_hats::table)
                .values((
                    muc_hats::room.eq(room),
                    muc_hats::jid.eq(jid.as_str()),
                    muc_hats::uri.eq(&hat.uri),
                    muc_hats::title.eq(&hat.title),
                ))
                .execute(conn)?;
        }
        diesel::delete(muc_push::table.filter(muc_push::room.eq(room))).execute(conn)?;
        for registration in &stored.push {
            save_push(conn, room, registration)?;
        }
        Ok(())
    })
}

/// Stores a new subject.
pub fn save_subject(conn: &mut DbConn, room: &str, subject: &str, nick: &str) -> QueryResult<()> {
    diesel::update(muc_rooms::table.filter(muc_rooms::jid.eq(room)))
        .set((muc_rooms::subject.eq(subject), muc_rooms::subject_nick.eq(nick)))
        .execute(conn)
        .map(drop)
}

/// Stores the room's vCard.
pub fn save_vcard(conn: &mut DbConn, room: &str, vcard: &str) -> QueryResult<()> {
    diesel::update(muc_rooms::table.filter(muc_rooms::jid.eq(room)))
        .set(muc_rooms::vcard.eq(vcard))
        .execute(conn)
        .map(drop)
}

fn insert_standing(conn: &mut DbConn, room: &str, jid: &str, standing: &Standing) -> QueryResult<()> {
    diesel::insert_into(muc_affiliations::table)
        .values((
            muc_affiliations::room.eq(room),
            muc_affiliations::jid.eq(jid),
            muc_affiliations::affiliation.eq(standing.affiliation.as_str()),
            muc_affiliations::reason.eq(&standing.reason),
            muc_affiliations::nick.eq(&standing.nick),
        ))
        .execute(conn)
        .map(drop)
}

/// Sets (`Some`) or removes (`None`) one JID's standing.
pub fn save_standing(conn: &mut DbConn, room: &str, jid: &str, standing: Option<&Standing>) -> QueryResult<()> {
    conn.transaction(|conn| {
        diesel::delete(
            muc_affiliations::table.filter(muc_affiliations::room.eq(room)).filter(muc_affiliations::jid.eq(jid)),
        )
        .execute(conn)?;
        match standing {
            Some(standing) => insert_standing(conn, room, jid, standing),
            None => Ok(()),
        }
    })
}

/// Stores a push registration, replacing the same member's for the same node.
pub fn save_push(conn: &mut DbConn, room: &str, registration: &crate::room::RoomPush) -> QueryResult<()> {
    let member = registration.member.to_string();
    delete_push(conn, room, &registration.member, registration.service.as_str(), Some(&registration.node))?;
    diesel::insert_into(muc_push::table)
        .values((
            muc_push::room.eq(room),
            muc_push::jid.eq(member),
            muc_push::service.eq(registration.service.as_str()),
            muc_push::node.eq(&registration.node),
            muc_push::publish_options.eq(registration.publish_options.as_deref()),
        ))
        .execute(conn)
        .map(drop)
}

/// Removes a member's push registrations for `service` (one node, or all).
pub fn delete_push(
    conn: &mut DbConn,
    room: &str,
    member: &BareJid,
    service: &str,
    node: Option<&str>,
) -> QueryResult<()> {
    let rows = muc_push::table
        .filter(muc_push::room.eq(room))
        .filter(muc_push::jid.eq(member.as_str()))
        .filter(muc_push::service.eq(service));
    match node {
        Some(node) => diesel::delete(rows.filter(muc_push::node.eq(node))).execute(conn),
        None => diesel::delete(rows).execute(conn),
    }
    .map(drop)
}

/// Deletes a room (destroyed, or no longer persistent) and its affiliations.
pub fn delete(conn: &mut DbConn, room: &str) -> QueryResult<()> {
    conn.transaction(|conn| {
        diesel::delete(muc_push::table.filter(muc_push::room.eq(room))).execute(conn)?;
        diesel::delete(muc_affiliations::table.filter(muc_affiliations::room.eq(room))).execute(conn)?;
        diesel::delete(muc_rooms::table.filter(muc_rooms::jid.eq(room))).execute(conn).map(drop)
    })
}

/// The JIDs of every public persistent room of `domain`, with their names (for
/// disco#items of rooms not loaded in memory).
pub fn public_rooms(conn: &mut DbConn, domain: &str) -> QueryResult<Vec<(String, RoomConfig)>> {
    let pattern = format!("%@{domain}");
    let rows: Vec<(String, String)> =
        muc_rooms::table.filter(muc_rooms::jid.like(pattern)).select((muc_rooms::jid, muc_rooms::config)).load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|(jid, config)| Some((jid, RoomConfig::from_toml(&config)?)))
        .filter(|(_, config)| config.public)
        .collect())
}

/// Removes every affiliation of the account `username@host` (account deletion).
pub fn forget_user(conn: &mut DbConn, host: &str, username: &str) -> QueryResult<()> {
    let jid = format!("{username}@{host}");
    diesel::delete(muc_push::table.filter(muc_push::jid.eq(&jid))).execute(conn)?;
    diesel::delete(muc_hats::table.filter(muc_hats::jid.eq(&jid))).execute(conn)?;
    diesel::delete(muc_affiliations::table.filter(muc_affiliations::jid.eq(jid))).execute(conn).map(drop)
}
