-- no-transaction
-- Client lifecycle: clients identified by the URL of their metadata document (source
-- 'metadata_document'), RFC 7592 registration access tokens (SHA-256, like every opaque secret),
-- and when a client's metadata last changed.
--
-- SQLite cannot alter a CHECK constraint, so the table is rebuilt (sqlite.org/lang_altertable.html,
-- "making other kinds of table schema changes"). Foreign keys are switched off around the rebuild,
-- which is why this migration manages its own transaction: with them on, dropping the old table
-- would cascade into consents, grants and authorization codes. Those tables name `oauth_clients`,
-- and after the rename that name is the new table, so their constraints carry on unchanged.
PRAGMA foreign_keys = OFF;

BEGIN;

CREATE TABLE oauth_clients_rebuilt (
    id                         TEXT PRIMARY KEY,
    secret_hash                TEXT,
    client_name                TEXT NOT NULL,
    redirect_uris              TEXT NOT NULL,
    grant_types                TEXT NOT NULL,
    token_endpoint_auth_method TEXT NOT NULL,
    application_type           TEXT NOT NULL,
    scope                      TEXT,
    workspace_id               TEXT REFERENCES workspaces(id) ON DELETE CASCADE,
    source                     TEXT NOT NULL CHECK (source IN ('dynamic', 'admin', 'metadata_document')),
    metadata                   TEXT NOT NULL,
    created_at                 BIGINT NOT NULL,
    last_used_at               BIGINT,
    registration_token_hash    TEXT,
    updated_at                 BIGINT
);

INSERT INTO oauth_clients_rebuilt (id, secret_hash, client_name, redirect_uris, grant_types,
        token_endpoint_auth_method, application_type, scope, workspace_id, source, metadata, created_at,
        last_used_at)
    SELECT id, secret_hash, client_name, redirect_uris, grant_types, token_endpoint_auth_method,
        application_type, scope, workspace_id, source, metadata, created_at, last_used_at
    FROM oauth_clients;

DROP TABLE oauth_clients;
ALTER TABLE oauth_clients_rebuilt RENAME TO oauth_clients;

-- Housekeeping looks for registrations never used.
CREATE INDEX oauth_clients_unused ON oauth_clients(source, last_used_at, created_at);

COMMIT;

PRAGMA foreign_keys = ON;
