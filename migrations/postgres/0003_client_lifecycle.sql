-- Client lifecycle: clients identified by the URL of their metadata document (source
-- 'metadata_document'), RFC 7592 registration access tokens (SHA-256, like every opaque secret),
-- and when a client's metadata last changed.
ALTER TABLE oauth_clients DROP CONSTRAINT oauth_clients_source_check;
ALTER TABLE oauth_clients ADD CONSTRAINT oauth_clients_source_check
    CHECK (source IN ('dynamic', 'admin', 'metadata_document'));
ALTER TABLE oauth_clients ADD COLUMN registration_token_hash TEXT;
ALTER TABLE oauth_clients ADD COLUMN updated_at BIGINT;

-- Housekeeping looks for registrations never used.
CREATE INDEX oauth_clients_unused ON oauth_clients(source, last_used_at, created_at);
