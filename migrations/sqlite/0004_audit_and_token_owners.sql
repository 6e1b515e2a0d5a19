-- The audit log: security events, newest first on the pages. Rows are never updated.
-- No foreign keys: an event outlives the person, client or workspace it mentions.
CREATE TABLE audit_events (
    id           TEXT PRIMARY KEY,
    at           BIGINT NOT NULL,
    kind         TEXT NOT NULL,
    workspace_id TEXT,
    -- The user (or client) who acted, and how to show them (an email, a client name).
    actor_id     TEXT,
    actor        TEXT NOT NULL,
    -- Who or what the event is about (a member's email, a client, an upstream), if anyone.
    subject_id   TEXT,
    subject      TEXT,
    -- The source IP address of the request.
    source       TEXT,
    -- A JSON object of non-secret facts (scopes, reasons, ids).
    details      TEXT NOT NULL
);
CREATE INDEX audit_events_workspace_at ON audit_events(workspace_id, at);
CREATE INDEX audit_events_actor ON audit_events(actor_id);
CREATE INDEX audit_events_at ON audit_events(at);

-- Who created a machine token (NULL: made with the CLI), so members see their own.
ALTER TABLE machine_tokens ADD COLUMN created_by TEXT REFERENCES users(id) ON DELETE SET NULL;
