//! Diesel table definitions of the roster module.

diesel::table! {
    /// One row per (account, contact): the RFC 6121 subscription state.
    roster_items (host, username, contact) {
        host -> Text,
        username -> Text,
        contact -> Text,
        name -> Nullable<Text>,
        subscription -> Text,
        ask -> SmallInt,
        pending_in -> SmallInt,
        approved -> SmallInt,
        in_roster -> SmallInt,
    }
}

diesel::table! {
    /// Roster groups of an item.
    roster_groups (host, username, contact, name) {
        host -> Text,
        username -> Text,
        contact -> Text,
        name -> Text,
    }
}

diesel::table! {
    /// XEP-0237 roster version counter per account.
    roster_versions (host, username) {
        host -> Text,
        username -> Text,
        version -> BigInt,
    }
}
