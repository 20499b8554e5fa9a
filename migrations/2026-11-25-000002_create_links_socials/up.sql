CREATE TABLE links (
    id         BIGSERIAL PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title      TEXT NOT NULL,
    url        TEXT NOT NULL,
    position   INTEGER NOT NULL CHECK (position >= 0),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Serves both the ordered listing and the "after the last link" lookup.
CREATE INDEX links_user_position_idx ON links (user_id, position, id);
SELECT diesel_manage_updated_at('links');

CREATE TABLE socials (
    id         BIGSERIAL PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    platform   TEXT NOT NULL,
    url        TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- One account per platform and user; also the ordered listing's index.
CREATE UNIQUE INDEX socials_user_platform_key ON socials (user_id, platform);
SELECT diesel_manage_updated_at('socials');
