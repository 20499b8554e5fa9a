-- The 3-grams of every user's `lower(username)` and `lower(name)`, one row
-- per (gram, user), so that a search of GET /users walks its matches in id
-- order. The trigram GIN indexes of users answer "which rows hold these
-- grams" as a bitmap, never in id order: a deep page or a capped count had to
-- find and sort every match (`search=son`, 80,000 of 1,000,000 users, took
-- 167 ms at page 100). Here the primary key (gram, user_id) is that order: a
-- search walks the rarest gram of its term from an id on, rechecks its LIKE
-- on the users row (a term of exactly 3 characters is one gram and needs
-- none), and stops at its page or at the count's cap.
--
-- Triggers on users keep it (inserts, changes of username or name, deletes,
-- TRUNCATE), so rows written by SQL outside linkhub are searched right too.
-- It has no foreign key: a registration adds about 20 rows, and a bulk load
-- millions, and the triggers own them.

-- The distinct 3-character substrings of `t` (characters, not bytes).
CREATE FUNCTION linkhub_grams(t TEXT) RETURNS SETOF TEXT
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT DISTINCT substr(t, i, 3) FROM generate_series(1, char_length(t) - 2) AS i
$$;

-- The grams a user is searched by: those of lower(username) and lower(name),
-- the expressions the search's LIKE rechecks.
CREATE FUNCTION linkhub_user_grams(username TEXT, name TEXT) RETURNS SETOF TEXT
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT linkhub_grams(lower(username)) UNION SELECT linkhub_grams(lower(name))
$$;

-- "C": grams are only compared for equality, bytewise is enough and cheaper.
-- The primary key comes after the backfill: one sorted build, not 20 million
-- inserts into a growing index (1,000,000 users: about 20,600,000 rows).
CREATE TABLE user_search_grams (
    gram    TEXT COLLATE "C" NOT NULL,
    user_id BIGINT NOT NULL
);
INSERT INTO user_search_grams (gram, user_id)
SELECT g.gram, u.id
FROM users u CROSS JOIN LATERAL linkhub_user_grams(u.username, u.name) AS g (gram);
ALTER TABLE user_search_grams ADD PRIMARY KEY (gram, user_id);
-- A search walks its rarest gram, picked from the planner's estimate of each
-- (linkhub_rarest_gram): the most-common list holds up to 10,000 grams, so
-- a common gram is not taken for a rare one.
ALTER TABLE user_search_grams ALTER COLUMN gram SET STATISTICS 10000;
ANALYZE user_search_grams;

-- The trigram indexes served the search; the grams serve it now (in id order,
-- which those never could), and every registration no longer updates them.
DROP INDEX users_username_trgm_idx;
DROP INDEX users_name_trgm_idx;

-- Of `grams`, the one the planner expects the fewest users to hold: the
-- one a search walks. EXPLAIN (planning only, about 0.1 ms a gram) reads the
-- column's statistics in their binary form; reading pg_stats' most-common
-- list as text took 2 ms at 1,000,000 users. The caller sends at most a few
-- grams (src/db/users.rs).
CREATE FUNCTION linkhub_rarest_gram(grams TEXT[]) RETURNS TEXT
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    g TEXT;
    plan JSON;
    expected FLOAT8;
    best TEXT;
    best_expected FLOAT8;
BEGIN
    FOREACH g IN ARRAY grams LOOP
        EXECUTE format('EXPLAIN (FORMAT JSON) SELECT 1 FROM user_search_grams WHERE gram = %L', g)
            INTO plan;
        expected := (plan -> 0 -> 'Plan' ->> 'Plan Rows')::FLOAT8;
        IF best IS NULL OR expected < best_expected THEN
            best := g;
            best_expected := expected;
        END IF;
    END LOOP;
    RETURN best;
END;
$$;

CREATE FUNCTION linkhub_user_grams_inserted() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO user_search_grams (gram, user_id)
    SELECT g.gram, n.id
    FROM new_rows n CROSS JOIN LATERAL linkhub_user_grams(n.username, n.name) AS g (gram);
    RETURN NULL;
END;
$$;

CREATE FUNCTION linkhub_user_grams_deleted() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM user_search_grams s
    USING (SELECT g.gram, o.id
           FROM old_rows o CROSS JOIN LATERAL linkhub_user_grams(o.username, o.name) AS g (gram)) d
    WHERE s.gram = d.gram AND s.user_id = d.id;
    RETURN NULL;
END;
$$;

-- A change of username, name or id: the grams the row lost go, those it
-- gained come (a rename keeps most of them).
CREATE FUNCTION linkhub_user_grams_updated() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.id <> NEW.id THEN
        DELETE FROM user_search_grams s
        USING linkhub_user_grams(OLD.username, OLD.name) AS g (gram)
        WHERE s.gram = g.gram AND s.user_id = OLD.id;
        INSERT INTO user_search_grams (gram, user_id)
        SELECT g.gram, NEW.id FROM linkhub_user_grams(NEW.username, NEW.name) AS g (gram);
        RETURN NULL;
    END IF;
    DELETE FROM user_search_grams s
    USING (SELECT linkhub_user_grams(OLD.username, OLD.name)
           EXCEPT SELECT linkhub_user_grams(NEW.username, NEW.name)) AS g (gram)
    WHERE s.gram = g.gram AND s.user_id = OLD.id;
    INSERT INTO user_search_grams (gram, user_id)
    SELECT g.gram, NEW.id
    FROM (SELECT linkhub_user_grams(NEW.username, NEW.name)
          EXCEPT SELECT linkhub_user_grams(OLD.username, OLD.name)) AS g (gram);
    RETURN NULL;
END;
$$;

CREATE FUNCTION linkhub_user_grams_truncated() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE user_search_grams;
    RETURN NULL;
END;
$$;

CREATE TRIGGER users_grams_inserted AFTER INSERT ON users
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION linkhub_user_grams_inserted();
CREATE TRIGGER users_grams_deleted AFTER DELETE ON users
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION linkhub_user_grams_deleted();
-- Row-level: PostgreSQL gives no transition tables to a trigger with a
-- column list, and every other update (a password, a bio) must cost nothing.
CREATE TRIGGER users_grams_updated AFTER UPDATE OF id, username, name ON users
    FOR EACH ROW
    WHEN (OLD.id IS DISTINCT FROM NEW.id OR OLD.username IS DISTINCT FROM NEW.username
          OR OLD.name IS DISTINCT FROM NEW.name)
    EXECUTE FUNCTION linkhub_user_grams_updated();
CREATE TRIGGER users_grams_truncated AFTER TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION linkhub_user_grams_truncated();
