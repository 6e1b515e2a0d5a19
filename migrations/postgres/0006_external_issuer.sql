-- A workspace that trusts an external authorization server (Auth0, Okta, Keycloak, Entra…)
-- instead of the built-in one. The introspection client secret is an AES-256-GCM envelope
-- (crypto::aead), never plain text.
CREATE TABLE workspace_issuers (
    workspace_id            TEXT PRIMARY KEY REFERENCES workspaces(id) ON DELETE CASCADE,
    issuer                  TEXT NOT NULL,
    -- Accepted aud instead of the workspace MCP URL, for providers without RFC 8707.
    audience                TEXT,
    -- JSON array of "provider-scope=workspace-scope ..." entries; empty: scopes as issued.
    scope_map               TEXT NOT NULL,
    introspection_client_id TEXT,
    introspection_secret    BYTEA,
    introspection_endpoint  TEXT,
    updated_at              BIGINT NOT NULL
);
