-- Link clicks: counted per link and UTC day, never per click, in tables of
-- their own. None of them is a cached table: no outbox trigger fires on
-- them, so a click never moves a cache namespace (src/clicks/mod.rs).

-- Clicks of a link on a day. A batch of clicks adds to these rows with one
-- upsert; the rows a bot can make grow with links × days, not with clicks.
CREATE TABLE link_clicks (
    link_id BIGINT NOT NULL REFERENCES links (id) ON DELETE CASCADE,
    day     DATE NOT NULL,
    clicks  BIGINT NOT NULL CHECK (clicks >= 0),
    PRIMARY KEY (link_id, day)
);

-- Distinct visitors of a link on a day: a HyperLogLog sketch (2^14 one-byte
-- registers, 0.81 % standard error; TOAST compresses a sparse one to a few
-- bytes) and the estimate it gave when last merged.
CREATE TABLE link_visitors (
    link_id   BIGINT NOT NULL REFERENCES links (id) ON DELETE CASCADE,
    day       DATE NOT NULL,
    registers BYTEA NOT NULL,
    visitors  BIGINT NOT NULL CHECK (visitors >= 0),
    PRIMARY KEY (link_id, day)
);

-- The record that a batch was applied: each committer of each process (a
-- writer) numbers its batches, and a batch counts only when its number is
-- above the last one applied, in the same statement. A batch retried after
-- an unknown outcome (a connection cut during COMMIT) is then counted once.
-- One row per writer, so it stays small whatever the click rate.
CREATE TABLE click_batches (
    writer     TEXT PRIMARY KEY,
    last_batch BIGINT NOT NULL,
    seen_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The salt of a day's visitor digests, shared by every instance so that one
-- visitor is one visitor across them; removed after two days, after which
-- nothing can tie a register to an address any more.
CREATE TABLE click_salts (
    day  DATE PRIMARY KEY,
    salt BYTEA NOT NULL
);
