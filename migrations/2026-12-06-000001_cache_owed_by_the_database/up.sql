-- The database is the one source of truth of what the cache owes. Whatever
-- commits a change to users, links or socials (linkhub, psql, a diesel data
-- migration, another program), triggers record the cache namespaces it touched
-- in cache_outbox and announce them (pg_notify), in the same transaction: a
-- change that commits owes its invalidation, one that rolls back owes nothing.
--
-- The namespace names are those of linkhub's src/namespace.rs:
--   users | user:<id> | profile:<username> | link:<id> | social:<id>

-- Which transaction recorded a row (linkhub's writers read back their own rows
-- before they commit) and whether a linkhub writer made it (that writer
-- delivers the bumps itself before it answers; other rows are delivered by
-- every instance at once). linkhub's connections set `linkhub.writer` at
-- connect time; every other session leaves it unset.
ALTER TABLE cache_outbox
    ADD COLUMN xact BIGINT NOT NULL DEFAULT txid_current(),
    ADD COLUMN writer TEXT DEFAULT NULLIF(current_setting('linkhub.writer', true), '');
CREATE INDEX cache_outbox_xact_idx ON cache_outbox (xact);

-- The cache epoch is part of every cache key. Moving it makes every entry and
-- version counter unreachable at once: the coarse step for changes too large
-- to name namespace by namespace, and the guard against a Redis that may have
-- lost acknowledged bumps (restarted from a snapshot, restored from a backup,
-- a master replaced by a node nobody trusted). `redis_runs` names the Redis
-- processes (run ids) the current epoch was trusted on.
CREATE TABLE cache_epoch (
    id         BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    epoch      BIGINT NOT NULL,
    redis_runs TEXT NOT NULL DEFAULT '',
    reason     TEXT NOT NULL,
    moved_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO cache_epoch (epoch, reason) VALUES (1, 'created');

-- Above this many changed rows in one statement, one epoch move replaces the
-- per-row namespaces (a data migration must not flood the outbox, Redis or the
-- instances). An admin may lower or raise it for a session:
--   SET linkhub.cache_bulk_rows = 100000;
CREATE FUNCTION linkhub_cache_bulk_rows() RETURNS BIGINT
LANGUAGE sql STABLE AS $$
    SELECT COALESCE(NULLIF(current_setting('linkhub.cache_bulk_rows', true), '')::BIGINT, 5000)
$$;

-- Moves the cache epoch (every instance drops every entry) and says why.
CREATE FUNCTION linkhub_cache_move_epoch(why TEXT) RETURNS BIGINT
LANGUAGE plpgsql AS $$
DECLARE
    moved BIGINT;
BEGIN
    -- FOR UPDATE waits for every transaction that owes namespaces under the
    -- current epoch (they hold FOR KEY SHARE, see linkhub_cache_owe): their
    -- writers bump under the epoch they committed in, and an instance that
    -- adopts the new one reads the database after they committed.
    PERFORM 1 FROM cache_epoch FOR UPDATE;
    UPDATE cache_epoch SET epoch = epoch + 1, reason = why, moved_at = now()
        RETURNING epoch INTO moved;
    PERFORM pg_notify('linkhub_cache_owed', 'epoch ' || moved);
    RETURN moved;
END;
$$;

-- The epoch under which Redis served by the processes `runs` (their run ids,
-- sorted, comma-separated) may be trusted: the current one when it was trusted
-- on those very processes, else a new one (once, whichever instance comes
-- first: the row is locked). A Redis that restarted from a snapshot or was
-- restored from a backup runs under a new run id, and what it brought back is
-- left behind in the old epoch. The first record adopts the epoch as it is.
CREATE FUNCTION linkhub_cache_trust_runs(runs TEXT) RETURNS BIGINT
LANGUAGE plpgsql AS $$
DECLARE
    trusted TEXT;
    current_epoch BIGINT;
BEGIN
    SELECT epoch, redis_runs INTO current_epoch, trusted FROM cache_epoch FOR UPDATE;
    IF trusted = runs THEN
        RETURN current_epoch;
    END IF;
    IF trusted <> '' THEN
        current_epoch := linkhub_cache_move_epoch('Redis processes changed');
    END IF;
    UPDATE cache_epoch SET redis_runs = runs;
    RETURN current_epoch;
END;
$$;

-- Records `namespaces` as owed and announces them. The notification is
-- `owe <writer|-> <sent at, µs since 1970> <namespace> …`, with `*` for the
-- namespaces when the list would not fit a notification (the receivers then
-- read the outbox).
CREATE FUNCTION linkhub_cache_owe(namespaces TEXT[]) RETURNS VOID
LANGUAGE plpgsql AS $$
DECLARE
    who TEXT := COALESCE(NULLIF(current_setting('linkhub.writer', true), ''), '-');
    listed TEXT;
BEGIN
    IF COALESCE(array_length(namespaces, 1), 0) = 0 THEN
        RETURN;
    END IF;
    -- Held until commit: the epoch cannot move between these rows and the
    -- commit, so the epoch a writer reads back with them is the one its
    -- bumps are for.
    PERFORM 1 FROM cache_epoch FOR KEY SHARE;
    INSERT INTO cache_outbox (namespace)
        SELECT DISTINCT ns FROM unnest(namespaces) AS ns ORDER BY ns;
    listed := array_to_string(ARRAY(SELECT DISTINCT ns FROM unnest(namespaces) AS ns ORDER BY ns), ' ');
    IF octet_length(listed) > 7000 THEN
        listed := '*';
    END IF;
    PERFORM pg_notify('linkhub_cache_owed', 'owe ' || who || ' '
        || (extract(epoch FROM clock_timestamp()) * 1000000)::BIGINT || ' ' || listed);
END;
$$;

-- What a change to `users` rows owes: the users list, each user's own reads
-- and the profile under each name the rows had or have.
CREATE FUNCTION linkhub_cache_owe_users(ids BIGINT[], names TEXT[]) RETURNS VOID
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

-- What a change to `links` or `socials` rows owes: each item, and its
-- owner's reads and profile (the users list does not show them).
CREATE FUNCTION linkhub_cache_owe_items(item TEXT, ids BIGINT[], owners BIGINT[]) RETURNS VOID
LANGUAGE plpgsql AS $$
BEGIN
    IF COALESCE(array_length(ids, 1), 0) > 0 THEN
        PERFORM linkhub_cache_owe(ARRAY(
            SELECT item || ':' || id FROM unnest(ids) AS id
            UNION SELECT 'user:' || owner FROM unnest(owners) AS owner
            UNION SELECT 'profile:' || u.username FROM users u WHERE u.id = ANY (owners)));
    END IF;
END;
$$;

-- Whether a statement that touched `touched` rows of `tbl` is past the bulk
-- threshold; when it is, the epoch moved instead of owing its rows one by
-- one (a million-row UPDATE pays a count, not a join).
CREATE FUNCTION linkhub_cache_moved_for_bulk(op TEXT, tbl TEXT, touched BIGINT) RETURNS BOOLEAN
LANGUAGE plpgsql AS $$
BEGIN
    IF touched > linkhub_cache_bulk_rows() THEN
        PERFORM linkhub_cache_move_epoch(op || ' of ' || touched || ' ' || tbl || ' rows');
        RETURN TRUE;
    END IF;
    RETURN FALSE;
END;
$$;

-- The statement triggers: rows an UPDATE left as they were owe nothing; the
-- old and the new side of a changed row both count (a rename, a move).
CREATE FUNCTION linkhub_cache_users_changed() RETURNS TRIGGER
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

CREATE FUNCTION linkhub_cache_items_changed() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
DECLARE
    item TEXT := CASE TG_TABLE_NAME WHEN 'links' THEN 'link' ELSE 'social' END;
    ids BIGINT[];
    owners BIGINT[];
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
        SELECT array_agg(id), array_agg(user_id) INTO ids, owners FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(id), array_agg(user_id) INTO ids, owners FROM old_rows;
    ELSE
        SELECT array_agg(x.id), array_agg(x.user_id) INTO ids, owners FROM (
            SELECT o.id, o.user_id FROM old_rows o JOIN new_rows n ON n.id = o.id
                WHERE o IS DISTINCT FROM n
            UNION ALL
            SELECT n.id, n.user_id FROM old_rows o JOIN new_rows n ON n.id = o.id
                WHERE o IS DISTINCT FROM n AND n.user_id IS DISTINCT FROM o.user_id) x;
    END IF;
    PERFORM linkhub_cache_owe_items(item, ids, owners);
    RETURN NULL;
END;
$$;

CREATE TRIGGER cache_owed_insert AFTER INSERT ON users
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION linkhub_cache_users_changed();
CREATE TRIGGER cache_owed_update AFTER UPDATE ON users
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION linkhub_cache_users_changed();
CREATE TRIGGER cache_owed_delete AFTER DELETE ON users
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION linkhub_cache_users_changed();

CREATE TRIGGER cache_owed_insert AFTER INSERT ON links
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION linkhub_cache_items_changed();
CREATE TRIGGER cache_owed_update AFTER UPDATE ON links
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION linkhub_cache_items_changed();
CREATE TRIGGER cache_owed_delete AFTER DELETE ON links
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION linkhub_cache_items_changed();

CREATE TRIGGER cache_owed_insert AFTER INSERT ON socials
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION linkhub_cache_items_changed();
CREATE TRIGGER cache_owed_update AFTER UPDATE ON socials
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION linkhub_cache_items_changed();
CREATE TRIGGER cache_owed_delete AFTER DELETE ON socials
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION linkhub_cache_items_changed();

-- What `linkhub cache invalidate --user` owes: everything one user shows in.
CREATE FUNCTION linkhub_cache_owe_user(target BIGINT) RETURNS BIGINT
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

-- What each running instance last said of its cache (`linkhub cache status`
-- reads it). Unlogged: a report is worth nothing after a crash of the server,
-- and writing one every few seconds should cost no WAL.
CREATE UNLOGGED TABLE cache_instances (
    instance   TEXT PRIMARY KEY,
    started_at TIMESTAMPTZ NOT NULL,
    seen_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    cache      TEXT NOT NULL,
    epoch      BIGINT NOT NULL,
    owed       BIGINT NOT NULL
);

-- A migration that rewrites a cached table's data with DDL (`ALTER TABLE …
-- ALTER COLUMN … TYPE … USING …` fires no row trigger) moves the epoch.
-- Event triggers need a superuser: where the migrating role is not one, the
-- guard is left out and such a migration needs `linkhub cache invalidate
-- --all` (README, migrations).
CREATE FUNCTION linkhub_cache_ddl_changed() RETURNS EVENT_TRIGGER
LANGUAGE plpgsql AS $$
DECLARE
    altered RECORD;
BEGIN
    FOR altered IN SELECT objid, object_identity FROM pg_event_trigger_ddl_commands() LOOP
        IF altered.objid IN (to_regclass('users'), to_regclass('links'), to_regclass('socials')) THEN
            PERFORM linkhub_cache_move_epoch('ALTER TABLE ' || altered.object_identity);
            RETURN;
        END IF;
    END LOOP;
END;
$$;

DO $$
BEGIN
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        CREATE EVENT TRIGGER linkhub_cache_ddl ON ddl_command_end
            WHEN TAG IN ('ALTER TABLE') EXECUTE FUNCTION linkhub_cache_ddl_changed();
    END IF;
END;
$$;
