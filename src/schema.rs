// @generated automatically by Diesel CLI.

diesel::table! {
    auth_tokens (id) {
        id -> Int8,
        user_id -> Int8,
        token_hash -> Bytea,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    cache_epoch (id) {
        id -> Bool,
        epoch -> Int8,
        redis_runs -> Text,
        reason -> Text,
        moved_at -> Timestamptz,
    }
}

diesel::table! {
    cache_instances (instance) {
        instance -> Text,
        started_at -> Timestamptz,
        seen_at -> Timestamptz,
        cache -> Text,
        epoch -> Int8,
        owed -> Int8,
    }
}

diesel::table! {
    cache_outbox (id) {
        id -> Int8,
        namespace -> Text,
        created_at -> Timestamptz,
        xact -> Int8,
        writer -> Nullable<Text>,
    }
}

diesel::table! {
    click_batches (writer) {
        writer -> Text,
        last_batch -> Int8,
        seen_at -> Timestamptz,
    }
}

diesel::table! {
    click_salts (day) {
        day -> Date,
        salt -> Bytea,
    }
}

diesel::table! {
    link_clicks (link_id, day) {
        link_id -> Int8,
        day -> Date,
        clicks -> Int8,
    }
}

diesel::table! {
    link_visitors (link_id, day) {
        link_id -> Int8,
        day -> Date,
        registers -> Bytea,
        visitors -> Int8,
    }
}

diesel::table! {
    links (id) {
        id -> Int8,
        user_id -> Int8,
        title -> Text,
        url -> Text,
        position -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    socials (id) {
        id -> Int8,
        user_id -> Int8,
        platform -> Text,
        url -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    user_search_grams (gram, user_id) {
        gram -> Text,
        user_id -> Int8,
    }
}

diesel::table! {
    users (id) {
        id -> Int8,
        username -> Text,
        email -> Text,
        password_hash -> Text,
        name -> Text,
        bio -> Text,
        avatar_url -> Nullable<Text>,
        role -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::joinable!(auth_tokens -> users (user_id));
diesel::joinable!(link_clicks -> links (link_id));
diesel::joinable!(link_visitors -> links (link_id));
diesel::joinable!(links -> users (user_id));
diesel::joinable!(socials -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    auth_tokens,
    cache_epoch,
    cache_instances,
    cache_outbox,
    click_batches,
    click_salts,
    link_clicks,
    link_visitors,
    links,
    socials,
    user_search_grams,
    users,
);
