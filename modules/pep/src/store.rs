//! PEP nodes and items (all SQL of the module). Items are ordered by `id`: publishing
//! an existing item id replaces it and makes it the newest.

use diesel::prelude::*;
use starling_api::DbConn;

use crate::config::NodeConfig;

diesel::table! {
    /// One node of one account, with its configuration.
    pep_nodes (owner, node) {
        owner -> Text,
        node -> Text,
        access_model -> Text,
        max_items -> BigInt,
        persist_items -> SmallInt,
        send_last_published_item -> Text,
        title -> Text,
    }
}

diesel::table! {
    /// Published items.
    pep_items (id) {
        id -> BigInt,
        owner -> Text,
        node -> Text,
        item_id -> Text,
        published_us -> BigInt,
        payload -> Text,
    }
}

type NodeRow = (String, String, i64, i16, String, String);

fn to_config(row: NodeRow) -> (String, NodeConfig) {
    let (node, access_model, max_items, persist, send_last, title) = row;
    let config = NodeConfig {
        access_model: access_model.parse().unwrap_or_default(),
        max_items: max_items.max(1) as u32,
        persist_items: persist != 0,
        send_last_published_item: send_last,
        title,
    };
    (node, config)
}

fn node_columns() -> (
    pep_nodes::node,
    pep_nodes::access_model,
    pep_nodes::max_items,
    pep_nodes::persist_items,
    pep_nodes::send_last_published_item,
    pep_nodes::title,
) {
    (
        pep_nodes::node,
        pep_nodes::access_model,
        pep_nodes::max_items,
        pep_nodes::persist_items,
        pep_nodes::send_last_published_item,
        pep_nodes::title,
    )
}

/// A node's configuration.
pub fn node(conn: &mut DbConn, owner: &str, node: &str) -> QueryResult<Option<NodeConfig>> {
    let row: Option<NodeRow> = pep_nodes::table
        .filter(pep_nodes::owner.eq(owner))
        .filter(pep_nodes::node.eq(node))
        .select(node_columns())
        .first(conn)
        .optional()?;
    Ok(row.map(|r| to_config(r).1))
}

/// Every node of an account.
pub fn nodes(conn: &mut DbConn, owner: &str) -> QueryResult<Vec<(String, NodeConfig)>> {
    let rows: Vec<NodeRow> = pep_nodes::table.filter(pep_nodes::owner.eq(owner)).select(node_columns()).load(conn)?;
    Ok(rows.into_iter().map(to_config).collect())
}

/// Creates or reconfigures a node.
pub fn save_node(conn: &mut DbConn, owner: &str, node: &str, config: &NodeConfig) -> QueryResult<()> {
    conn.transaction(|conn| {
        diesel::delete(pep_nodes::table.filter(pep_nodes::owner.eq(owner)).filter(pep_nodes::node.eq(node)))
            .execute(conn)?;
        diesel::insert_into(pep_nodes::table)
            .values((
                pep_nodes::owner.eq(owner),
                pep_nodes::node.eq(node),
                pep_nodes::access_model.eq(config.access_model.as_str()),
                pep_nodes::max_items.eq(i64::from(config.max_items)),
                pep_nodes::persist_items.eq(i16::from(config.persist_items)),
                pep_nodes::send_last_published_item.eq(&config.send_last_published_item),
                pep_nodes::title.eq(&config.title),
            ))
            .execute(conn)?;
        trim(conn, owner, node, config.max_items)
    })
}

/// Deletes a node and its items; whether it existed.
pub fn delete_node(conn: &mut DbConn, owner: &str, node: &str) -> QueryResult<bool> {
    conn.transaction(|conn| {
        diesel::delete(pep_items::table.filter(pep_items::owner.eq(owner)).filter(pep_items::node.eq(node)))
            .execute(conn)?;
        let deleted =
            diesel::delete(pep_nodes::table.filter(pep_nodes::owner.eq(owner)).filter(pep_nodes::node.eq(node)))
                .execute(conn)?;
        Ok(deleted > 0)
    })
}

fn trim(conn: &mut DbConn, owner: &str, node: &str, max_items: u32) -> QueryResult<()> {
    let threshold: Option<i64> = pep_items::table
        .filter(pep_items::owner.eq(owner))
        .filter(pep_items::node.eq(node))
        .order(pep_items::id.desc())
        .offset(i64::from(max_items))
        .limit(1)
        .select(pep_items::id)
        .first(conn)
        .optional()?;
    if let Some(threshold) = threshold {
        diesel::delete(
            pep_items::table
                .filter(pep_items::owner.eq(owner))
                .filter(pep_items::node.eq(node))
                .filter(pep_items::id.le(threshold)),
        )
        .execute(conn)?;
    }
    Ok(())
}

/// Stores an item (replacing one with the same id) and keeps the newest `max_items`.
pub fn publish(
    conn: &mut DbConn,
    owner: &str,
    node: &str,
    item_id: &str,
    payload: &str,
    now_us: i64,
    max_items: u32,
) -> QueryResult<()> {
    conn.transaction(|conn| {
        retract(conn, owner, node, item_id)?;
        diesel::insert_into(pep_items::table)
            .values((
                pep_items::owner.eq(owner),
                pep_items::node.eq(node),
                pep_items::item_id.eq(item_id),
                pep_items::published_us.eq(now_us),
                pep_items::payload.eq(payload),
            ))
            .execute(conn)?;
        trim(conn, owner, node, max_items)
    })
}

/// Deletes an item; whether it existed.
pub fn retract(conn: &mut DbConn, owner: &str, node: &str, item_id: &str) -> QueryResult<bool> {
    let deleted = diesel::delete(
        pep_items::table
            .filter(pep_items::owner.eq(owner))
            .filter(pep_items::node.eq(node))
            .filter(pep_items::item_id.eq(item_id)),
    )
    .execute(conn)?;
    Ok(deleted > 0)
}

/// The newest `max` items (all when `None`), oldest first, as (id, payload).
pub fn items(conn: &mut DbConn, owner: &str, node: &str, max: Option<i64>) -> QueryResult<Vec<(String, String)>> {
    let mut rows: Vec<(String, String)> = pep_items::table
        .filter(pep_items::owner.eq(owner))
        .filter(pep_items::node.eq(node))
        .order(pep_items::id.desc())
        .limit(max.unwrap_or(i64::MAX))
        .select((pep_items::item_id, pep_items::payload))
        .load(conn)?;
    rows.reverse();
    Ok(rows)
}

/// Items by id, in publish order.
pub fn items_by_id(conn: &mut DbConn, owner: &str, node: &str, ids: &[String]) -> QueryResult<Vec<(String, String)>> {
    pep_items::table
        .filter(pep_items::owner.eq(owner))
        .filter(pep_items::node.eq(node))
        .filter(pep_items::item_id.eq_any(ids))
        .order(pep_items::id.asc())
        .select((pep_items::item_id, pep_items::payload))
        .load(conn)
}

/// Deletes everything of the account.
pub fn forget_user(conn: &mut DbConn, host: &str, user: &str) -> QueryResult<()> {
    let owner = format!("{user}@{host}");
    diesel::delete(pep_items::table.filter(pep_items::owner.eq(&owner))).execute(conn)?;
    diesel::delete(pep_nodes::table.filter(pep_nodes::owner.eq(&owner))).execute(conn)?;
    Ok(())
}
