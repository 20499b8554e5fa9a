-- Bearer tokens are stored as SHA-256 digests: a database leak yields no usable token.
-- Logout deletes one row; a password change or the user's deletion deletes them all.
CREATE TABLE auth_tokens (
    id         BIGSERIAL PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX auth_tokens_token_hash_key ON auth_tokens (token_hash);
CREATE INDEX auth_tokens_user_id_idx ON auth_tokens (user_id);
CREATE INDEX auth_tokens_expires_at_idx ON auth_tokens (expires_at);

-- Transactional outbox of cache version bumps: written in the same transaction
-- as the data it invalidates, deleted once the bump reached Redis. A row that
-- stays here means "this namespace's cache is not to be trusted yet".
CREATE TABLE cache_outbox (
    id         BIGSERIAL PRIMARY KEY,
    namespace  TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
