-- A registration no longer invalidates every page of the users list. The list
-- is ordered by id and a registration appends after the last one, so a full
-- page (whose last id is below the new one) cannot change: only the totals and
-- the pages that were not full can. linkhub caches them apart
-- (src/namespace.rs):
--   users        full pages; owed by changes to existing rows (update, delete)
--                and by an insert that is not an append
--   users_added  totals and pages that were not full; owed by every change
-- Measured beside four readers of pages 1-5 with a registration every 0.2 s:
-- every page missed after each registration while `users` was owed by all.

-- Whether the users `ids` just inserted in this transaction come after every
-- other user, so that no page that ended before them can hold them. Inserts
-- take a lock, held to commit, before they look: of two concurrent
-- registrations, the second looks only once the first has committed, so a
-- lower id that commits after a higher one (ids are drawn before commit) is
-- seen and owes `users`. A reader can then never have stored a full page that
-- ends past an id whose insert owed only `users_added`. Outside READ
-- COMMITTED the look may not see the latest commits, so it answers false.
CREATE FUNCTION linkhub_cache_users_appended(ids BIGINT[]) RETURNS BOOLEAN
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RETURN FALSE;
    END IF;
    -- Taken in the order linkhub_cache_owe takes its lock, so the two never
    -- wait on each other in opposite orders.
    PERFORM 1 FROM cache_epoch FOR KEY SHARE;
    PERFORM pg_advisory_xact_lock(hashtextextended('linkhub_cache_users_appended', 0));
    RETURN NOT EXISTS (
        SELECT 1 FROM users u
        WHERE u.id > (SELECT min(i) FROM unnest(ids) AS i) AND u.id <> ALL (ids));
END;
$$;

-- What a change to `users` rows owes: each user's own reads, the profile
-- under each name the rows had or have, the totals and tails of the list
-- (`users_added`), and its full pages (`users`) unless the rows were appended.
CREATE FUNCTION linkhub_cache_owe_users(ids BIGINT[], names TEXT[], appended BOOLEAN) RETURNS VOID
LANGUAGE plpgsql AS $$
BEGIN
    IF COALESCE(array_length(ids, 1), 0) > 0 THEN
        PERFORM linkhub_cache_owe(ARRAY(
            SELECT 'user:' || id FROM unnest(ids) AS id
            UNION SELECT 'profile:' || name FROM unnest(names) AS name
            UNION SELECT 'users_added'
            UNION SELECT 'users' WHERE NOT appended));
    END IF;
END;
$$;

-- The two-argument form (any caller that does not know how the rows changed)
-- owes everything.
CREATE OR REPLACE FUNCTION linkhub_cache_owe_users(ids BIGINT[], names TEXT[]) RETURNS VOID
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM linkhub_cache_owe_users(ids, names, FALSE);
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
        IF COALESCE(array_length(ids, 1), 0) > 0 THEN
            PERFORM linkhub_cache_owe_users(ids, names, linkhub_cache_users_appended(ids));
        END IF;
        RETURN NULL;
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
    PERFORM linkhub_cache_owe_users(ids, names, FALSE);
    RETURN NULL;
END;
$$;

-- What `linkhub cache invalidate --user` owes: everything one user shows in,
-- both namespaces of the list included.
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
    PERFORM linkhub_cache_owe(namespaces || ARRAY['users', 'users_added']);
    RETURN array_length(namespaces, 1) + 2;
END;
$$;
