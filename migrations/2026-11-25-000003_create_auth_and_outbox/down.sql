DROP TABLE cache_outbox;
DROP TABLE auth_tokens;
