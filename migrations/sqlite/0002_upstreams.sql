-- Upstream MCP servers of a workspace. Static headers may carry API keys, so they are an
-- AES-256-GCM envelope (crypto::aead), never plain text.
CREATE TABLE upstreams (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('http', 'stdio', 'demo')),
    url          TEXT,
    command      TEXT,
    headers      BLOB,
    created_at   BIGINT NOT NULL,
    UNIQUE (workspace_id, name)
);
