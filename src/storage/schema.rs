//! Diesel table definitions for the core's tables.

diesel::table! {
    /// One row per account: `host` is the domain, `username` the normalised localpart.
    accounts (host, username) {
        host -> Text,
        username -> Text,
        created_at -> BigInt,
        disabled -> SmallInt,
    }
}

diesel::table! {
    /// SCRAM keys per account and mechanism (RFC 5802 §3); binary values are base64.
    account_credentials (host, username, mechanism) {
        host -> Text,
        username -> Text,
        mechanism -> Text,
        salt -> Text,
        iterations -> Integer,
        stored_key -> Text,
        server_key -> Text,
    }
}

diesel::table! {
    /// FAST tokens (XEP-0484) per account and client installation: slot 0 is the token
    /// in use, slot 1 one issued but not yet used. Tokens are derived, not stored.
    account_fast_tokens (host, username, client_id, slot) {
        host -> Text,
        username -> Text,
        client_id -> Text,
        slot -> SmallInt,
        mechanism -> Text,
        token_id -> Text,
        issued_at -> BigInt,
        expires_at -> BigInt,
        last_count -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(accounts, account_credentials, account_fast_tokens);
