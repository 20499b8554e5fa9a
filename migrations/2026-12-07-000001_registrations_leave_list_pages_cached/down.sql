-- Back to one `users` namespace owed by every change to `users`.
CREATE OR REPLACE FUNCTION linkhub_cache_owe_user(target BIGINT) RETURNS BIGINT
LANGUAGE plpgsql AS $$
DECLARE
    namespaces TEXT[];
BEGIN
    namespaces := ARRAY(
        SELECT 'user:' || id FROM users WHERE id = target
        UNION SELECT 'profile:' || username FROM users WHERE id = target
        UNION SELECT 'link:' || id FROM links WHERE user_id = target
        UNION SELECT 'social:' || id FROM socials WHERE user_id = target);
    IF array_length(namespaces, 1) IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM linkhub_cache_owe(namespaces || ARRAY['users']);
    RETURN array_length(namespaces, 1) + 1;
END;
$$;

CREATE OR REPLACE FUNCTION linkhub_cache_users_changed() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
DECLARE
    ids BIGINT[];
    names TEXT[];
    touched BIGINT;
BEGIN
    IF TG_OP = 'DELETE' THEN
        SELECT count(*) INTO touched FROM old_rows;
    ELSE
        SELECT count(*) INTO touched FROM new_rows;
    END IF;
    IF linkhub_cache_moved_for_bulk(TG_OP, TG_TABLE_NAME, touched) THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(id), array_agg(username) INTO ids, names FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(id), array_agg(username) INTO ids, names FROM old_rows;
    ELSE
        SELECT array_agg(x.id), array_agg(x.username) INTO ids, names FROM (
            SELECT o.id, o.username FROM old_rows o JOIN new_rows n ON n.id = o.id
                WHERE o IS DISTINCT FROM n
            UNION ALL
            SELECT n.id, n.username FROM old_rows o JOIN new_rows n ON n.id = o.id
                WHERE o IS DISTINCT FROM n AND (n.id, n.username) IS DISTINCT FROM (o.id, o.username)) x;
    END IF;
    PERFORM linkhub_cache_owe_users(ids, names);
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION linkhub_cache_owe_users(ids BIGINT[], names TEXT[]) RETURNS VOID
LANGUAGE plpgsql AS $$
BEGIN
    IF COALESCE(array_length(ids, 1), 0) > 0 THEN
        PERFORM linkhub_cache_owe(ARRAY(
            SELECT 'user:' || id FROM unnest(ids) AS id
            UNION SELECT 'profile:' || name FROM unnest(names) AS name
            UNION SELECT 'users'));
    END IF;
END;
$$;

DROP FUNCTION linkhub_cache_owe_users(BIGINT[], TEXT[], BOOLEAN);
DROP FUNCTION linkhub_cache_users_appended(BIGINT[]);
