-- Loads :users users (psql -v users=N) into a migrated linkhub database by
-- SQL, each with 2 links and 1 social; run by scripts/seed-scale.sh, which
-- says how to use it. Users go after the ones already there: user number g
-- (a count that continues from the largest id) is
--
--   username  <first>_<last>_<g>      e.g. ada_lovelace_20
--   name      <First> <Last>           e.g. Ada Lovelace
--   email     <username>@example.com
--   password  the one of seed-scale.sh (one argon2id hash, reused by every row)
--
-- First and last names are drawn by a hash of g from the lists below, so a
-- common 3-letter search matches many users (`son`: Johnson, Wilson, Jackson
-- and others, about 1 user in 8; `ann`, `mar`, `ell` likewise), except that
-- every 20th user is a Lovelace: `search=lovelace` matches users/20 of them
-- (50,000 of a million), and no other name contains it.
--
-- The load is one transaction: the search grams of the new users are
-- inserted in one statement (see below), and the secondary indexes of
-- users, links and socials (those no constraint owns, read from the catalogue, so an index a
-- later migration adds is rebuilt too) are dropped, the rows inserted, the
-- indexes re-created from their own definitions. A failure (a duplicate
-- username, say) rolls all of it back, indexes included. VACUUM ANALYZE
-- follows, outside the transaction.
--
-- The cache: the outbox triggers stay on. This session sets
-- `linkhub.cache_bulk_rows` to 0, so each INSERT, whatever its size, moves
-- the cache epoch (one move per table) instead of owing a namespace per row:
-- every running instance drops its cache, which is what a bulk load must do.
-- (Past the default threshold, 5,000 rows, the triggers do that anyway; below
-- it, 2,000 users would owe about 18,000 namespaces for the instances to
-- deliver one by one.)
\set ON_ERROR_STOP on
\timing off
SET client_min_messages = warning;
-- Index builds: memory and parallel workers for this session only.
SET maintenance_work_mem = '512MB';
SET max_parallel_maintenance_workers = 2;
SET linkhub.cache_bulk_rows = 0;

BEGIN;

SELECT COALESCE(max(id), 0) AS seed_base FROM users \gset

CREATE TEMP TABLE seed_indexes ON COMMIT DROP AS
    SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS def
    FROM pg_index i
    WHERE i.indrelid IN ('users'::regclass, 'links'::regclass, 'socials'::regclass)
      AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid);
SELECT format('DROP INDEX %s', name) FROM seed_indexes \gexec
-- The search grams (user_search_grams, about 20 per user): the trigger that
-- adds a new user's grams is off for the load and the table's key dropped;
-- the new users' grams go in by one INSERT and the key is built once, sorted
-- (the trigger would add 20 million keys to a growing index, one by one).
ALTER TABLE users DISABLE TRIGGER users_grams_inserted;
ALTER TABLE user_search_grams DROP CONSTRAINT user_search_grams_pkey;

\timing on
\echo seed-scale: users
INSERT INTO users (username, email, password_hash, name, bio, created_at, updated_at)
SELECT p.username, p.username || '@example.com', :'hash',
       initcap(p.first) || ' ' || initcap(p.last), p.bio, p.at, p.at
FROM (
    SELECT n.first, n.last, n.first || '_' || n.last || '_' || n.g AS username,
           (ARRAY['Builds things for the web.', 'Writes about databases.',
                  'Photographer and runner.', '', 'Open source maintainer.',
                  'Coffee, code and cats.'])[1 + n.g % 6] AS bio,
           now() - make_interval(secs => (:seed_base + :users - n.g)) AS at
    FROM (
        SELECT g,
               f.names[1 + abs(hashint8(g::bigint)) % array_length(f.names, 1)] AS first,
               CASE WHEN g % 20 = 0 THEN 'lovelace'
                    ELSE l.names[1 + abs(hashint8(g::bigint * 7919)) % array_length(l.names, 1)]
               END AS last
        FROM generate_series(:seed_base + 1, :seed_base + :users) AS g,
        (SELECT ARRAY[
            'ada', 'alan', 'grace', 'linus', 'margaret', 'ken', 'dennis', 'barbara',
            'edsger', 'donald', 'john', 'mary', 'james', 'patricia', 'robert',
            'jennifer', 'michael', 'linda', 'william', 'elizabeth', 'david', 'susan',
            'richard', 'jessica', 'joseph', 'sarah', 'thomas', 'karen', 'charles',
            'nancy', 'daniel', 'lisa', 'matthew', 'betty', 'anthony', 'sandra', 'mark',
            'ashley', 'paul', 'emily', 'steven', 'kimberly', 'andrew', 'donna',
            'joshua', 'michelle', 'kevin', 'carol', 'brian', 'amanda', 'george',
            'melissa', 'timothy', 'deborah', 'ronald', 'stephanie', 'jason', 'rebecca',
            'jeffrey', 'sharon', 'ryan', 'laura', 'jacob', 'cynthia', 'gary', 'amy',
            'nicholas', 'angela', 'eric', 'anna', 'hannah', 'joanne', 'sofia', 'mateo',
            'yuki', 'chen', 'priya', 'omar', 'fatima', 'ines', 'lars', 'ingrid',
            'kwame', 'amara', 'diego', 'lucia', 'noah', 'emma', 'liam', 'olivia'
        ] AS names) AS f,
        (SELECT ARRAY[
            'smith', 'johnson', 'williams', 'brown', 'jones', 'garcia', 'miller',
            'davis', 'rodriguez', 'martinez', 'hernandez', 'lopez', 'gonzalez',
            'wilson', 'anderson', 'thomas', 'taylor', 'moore', 'jackson', 'martin',
            'lee', 'perez', 'thompson', 'white', 'harris', 'sanchez', 'clark',
            'ramirez', 'lewis', 'robinson', 'walker', 'young', 'allen', 'king',
            'wright', 'scott', 'torres', 'nguyen', 'hill', 'flores', 'green', 'adams',
            'nelson', 'baker', 'hall', 'rivera', 'campbell', 'mitchell', 'carter',
            'roberts', 'turing', 'hopper', 'torvalds', 'hamilton', 'knuth', 'ritchie',
            'dijkstra', 'liskov', 'kernighan', 'stroustrup', 'berners', 'babbage',
            'noether', 'curie', 'tanaka', 'suzuki', 'kim', 'park', 'singh', 'patel',
            'khan', 'muller', 'schmidt', 'rossi', 'silva', 'santos', 'novak',
            'kowalski', 'jensen', 'larsen', 'dubois', 'moreau', 'okafor', 'mensah'
        ] AS names) AS l
    ) AS n
) AS p
ORDER BY p.at;

\echo seed-scale: search grams
INSERT INTO user_search_grams (gram, user_id)
SELECT g.gram, u.id
FROM users u CROSS JOIN LATERAL linkhub_user_grams(u.username, u.name) AS g (gram)
WHERE u.id > :seed_base;
ALTER TABLE user_search_grams ADD PRIMARY KEY (gram, user_id);
ALTER TABLE users ENABLE TRIGGER users_grams_inserted;

\echo seed-scale: links
INSERT INTO links (user_id, title, url, position, created_at, updated_at)
SELECT u.id, t.title, t.site || u.username, t.position, u.created_at, u.created_at
FROM users u
CROSS JOIN (VALUES ('Website', 'https://example.com/', 0),
                   ('Blog', 'https://blog.example.com/', 1)) AS t (title, site, position)
WHERE u.id > :seed_base
ORDER BY u.id, t.position;

\echo seed-scale: socials
INSERT INTO socials (user_id, platform, url, created_at, updated_at)
SELECT u.id, s.platform, s.site || u.username, u.created_at, u.created_at
FROM users u
CROSS JOIN LATERAL (SELECT (ARRAY['github', 'mastodon', 'linkedin', 'bluesky'])[1 + u.id % 4] AS platform) AS p
CROSS JOIN LATERAL (SELECT p.platform,
                           CASE p.platform WHEN 'github' THEN 'https://github.com/'
                                           WHEN 'mastodon' THEN 'https://mastodon.social/@'
                                           WHEN 'linkedin' THEN 'https://www.linkedin.com/in/'
                                           ELSE 'https://bsky.app/profile/' END AS site) AS s
WHERE u.id > :seed_base
ORDER BY u.id;

\echo seed-scale: indexes
SELECT def FROM seed_indexes \gexec

COMMIT;
\timing off

\echo seed-scale: vacuum analyze
VACUUM (ANALYZE) users;
VACUUM (ANALYZE) user_search_grams;
VACUUM (ANALYZE) links;
VACUUM (ANALYZE) socials;
VACUUM (ANALYZE) cache_outbox;
