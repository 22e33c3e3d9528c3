//! Roster storage: items, groups and the version counter (all queries of the module).

use diesel::prelude::*;
use starling_api::DbConn;

use crate::schema::{roster_groups, roster_items, roster_versions};
use crate::subscription::{ItemState, Subscription};

/// A roster item with its subscription state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RosterItem {
    /// The contact's bare JID.
    pub contact: String,
    /// The user's name for the contact.
    pub name: Option<String>,
    /// Groups, in the order the client sent them.
    pub groups: Vec<String>,
    /// Subscription state.
    pub state: ItemState,
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = roster_items)]
struct ItemRow {
    host: String,
    username: String,
    contact: String,
    name: Option<String>,
    subscription: String,
    ask: i16,
    pending_in: i16,
    approved: i16,
    in_roster: i16,
}

impl ItemRow {
    fn into_item(self, groups: Vec<String>) -> RosterItem {
        RosterItem {
            contact: self.contact,
            name: self.name,
            groups,
            state: ItemState {
                subscription: Subscription::parse(&self.subscription),
                ask: self.ask != 0,
                pending_in: self.pending_in != 0,
                approved: self.approved != 0,
                in_roster: self.in_roster != 0,
            },
        }
    }
}

fn groups_of(conn: &mut DbConn, host: &str, user: &str, contact: &str) -> QueryResult<Vec<String>> {
    roster_groups::table
        .filter(roster_groups::host.eq(host))
        .filter(roster_groups::username.eq(user))
        .filter(roster_groups::contact.eq(contact))
        .select(roster_groups::name)
        .order(roster_groups::name.asc())
        .load(conn)
}

/// The visible roster (items in the roster) and its version.
pub fn roster(conn: &mut DbConn, host: &str, user: &str) -> QueryResult<(Vec<RosterItem>, i64)> {
    let rows: Vec<ItemRow> = roster_items::table
        .filter(roster_items::host.eq(host))
        .filter(roster_items::username.eq(user))
        .filter(roster_items::in_roster.eq(1i16))
        .order(roster_items::contact.asc())
        .select(ItemRow::as_select())
        .load(conn)?;
    let groups: Vec<(String, String)> = roster_groups::table
        .filter(roster_groups::host.eq(host))
        .filter(roster_groups::username.eq(user))
        .select((roster_groups::contact, roster_groups::name))
        .order(roster_groups::name.asc())
        .load(conn)?;
    let items = rows
        .into_iter()
        .map(|row| {
            let mine = groups.iter().filter(|(c, _)| *c == row.contact).map(|(_, g)| g.clone()).collect();
            row.into_item(mine)
        })
        .collect();
    Ok((items, version(conn, host, user)?))
}

/// How many items are in the roster (pending subscriptions from others not counted).
pub fn count(conn: &mut DbConn, host: &str, user: &str) -> QueryResult<i64> {
    roster_items::table
        .filter(roster_items::host.eq(host))
        .filter(roster_items::username.eq(user))
        .filter(roster_items::in_roster.eq(1i16))
        .count()
        .get_result(conn)
}

/// One item, visible or not.
pub fn item(conn: &mut DbConn, host: &str, user: &str, contact: &str) -> QueryResult<Option<RosterItem>> {
    let row = roster_items::table
        .filter(roster_items::host.eq(host))
        .filter(roster_items::username.eq(user))
        .filter(roster_items::contact.eq(contact))
        .select(ItemRow::as_select())
        .first(conn)
        .optional()?;
    match row {
        Some(row) => {
            let groups = groups_of(conn, host, user, contact)?;
            Ok(Some(row.into_item(groups)))
        }
        None => Ok(None),
    }
}

/// The roster version (0 for an empty, never-changed roster).
pub fn version(conn: &mut DbConn, host: &str, user: &str) -> QueryResult<i64> {
    Ok(roster_versions::table
        .filter(roster_versions::host.eq(host))
        .filter(roster_versions::username.eq(user))
        .select(roster_versions::version)
        .first(conn)
        .optional()?
        .unwrap_or(0))
}

fn bump_version(conn: &mut DbConn, host: &str, user: &str) -> QueryResult<i64> {
    let updated = diesel::update(
        roster_versions::table.filter(roster_versions::host.eq(host)).filter(roster_versions::username.eq(user)),
    )
    .set(roster_versions::version.eq(roster_versions::version + 1))
    .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(roster_versions::table)
            .values((
                roster_versions::host.eq(host),
                roster_versions::username.eq(user),
                roster_versions::version.eq(1i64),
            ))
            .execute(conn)?;
    }
    version(conn, host, user)
}

/// Stores `item` (replacing any previous state and groups) and returns the new roster
/// version. Items with no state left (not in the roster, nothing pending) are deleted.
pub fn save(conn: &mut DbConn, host: &str, user: &str, item: &RosterItem) -> QueryResult<i64> {
    conn.transaction(|conn| {
        // Start with writes so SQLite takes the write lock before reading.
        let version = bump_version(conn, host, user)?;
        delete_rows(conn, host, user, &item.contact)?;
        let s = item.state;
        if s.in_roster || s.pending_in || s.approved || s.ask || s.subscription != Subscription::None {
            let row = ItemRow {
                host: host.to_owned(),
                username: user.to_owned(),
                contact: item.contact.clone(),
                name: item.name.clone(),
                subscription: s.subscription.as_str().to_owned(),
                ask: i16::from(s.ask),
                pending_in: i16::from(s.pending_in),
                approved: i16::from(s.approved),
                in_roster: i16::from(s.in_roster),
            };
            diesel::insert_into(roster_items::table).values(&row).execute(conn)?;
            for group in &item.groups {
                diesel::insert_into(roster_groups::table)
                    .values((
                        roster_groups::host.eq(host),
                        roster_groups::username.eq(user),
                        roster_groups::contact.eq(&item.contact),
                        roster_groups::name.eq(group),
                    ))
                    .execute(conn)?;
            }
        }
        Ok(version)
    })
}

fn delete_rows(conn: &mut DbConn, host: &str, user: &str, contact: &str) -> QueryResult<()> {
    diesel::delete(
        roster_groups::table
            .filter(roster_groups::host.eq(host))
            .filter(roster_groups::username.eq(user))
            .filter(roster_groups::contact.eq(contact)),
    )
    .execute(conn)?;
    diesel::delete(
        roster_items::table
            .filter(roster_items::host.eq(host))
            .filter(roster_items::username.eq(user))
            .filter(roster_items::contact.eq(contact)),
    )
    .execute(conn)?;
    Ok(())
}

/// Contacts with the given relation: subscribers (`from`/`both`), subscriptions
/// (`to`/`both`) or pending incoming requests.
pub fn contacts(conn: &mut DbConn, host: &str, user: &str, relation: Relation) -> QueryResult<Vec<String>> {
    let base = roster_items::table.filter(roster_items::host.eq(host)).filter(roster_items::username.eq(user));
    match relation {
        Relation::Subscribers => {
            base.filter(roster_items::subscription.eq_any(["from", "both"])).select(roster_items::contact).load(conn)
        }
        Relation::Subscriptions => {
            base.filter(roster_items::subscription.eq_any(["to", "both"])).select(roster_items::contact).load(conn)
        }
        Relation::PendingIn => base.filter(roster_items::pending_in.eq(1i16)).select(roster_items::contact).load(conn),
    }
}

/// Which contacts [`contacts`] returns.
#[derive(Debug, Clone, Copy)]
pub enum Relation {
    /// They receive the user's presence.
    Subscribers,
    /// The user receives theirs.
    Subscriptions,
    /// They asked to subscribe, unanswered.
    PendingIn,
}

/// Deletes the account's roster; the contacts' items about it stay (they are theirs).
pub fn forget_user(conn: &mut DbConn, host: &str, user: &str) -> QueryResult<()> {
    diesel::delete(roster_groups::table.filter(roster_groups::host.eq(host)).filter(roster_groups::username.eq(user)))
        .execute(conn)?;
    diesel::delete(roster_items::table.filter(roster_items::host.eq(host)).filter(roster_items::username.eq(user)))
        .execute(conn)?;
    diesel::delete(
        roster_versions::table.filter(roster_versions::host.eq(host)).filter(roster_versions::username.eq(user)),
    )
    .execute(conn)?;
    Ok(())
}
