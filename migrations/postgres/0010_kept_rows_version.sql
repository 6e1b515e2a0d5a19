-- A counter bumped, in the same transaction (these triggers), by every change to a row the
-- server keeps in memory between requests: a workspace (with its revocation and upstream
-- counters), the issuer it trusts, an OAuth client. Kept rows are served only under the counter
-- value they were read at (store/changes.rs), so a change made by any process (a page, the CLI,
-- another node) is seen on the very next request, while the commits that change none of them (a
-- refresh-token rotation, an audit event, a code) leave the kept rows in place.
--
-- Inserts of workspaces and clients need no bump: only rows that were found are kept (and so a
-- registration never waits on this row's lock). A client's last use (written once a minute per
-- client) is not part of what is kept. A column added to oauth_clients must be added to its
-- trigger (a test lists the table's columns to check).
--
-- The triggers are deferred to the commit: the counter's one row is then the last lock any
-- transaction takes (after the rows it changes and the workspace counters their triggers bump),
-- so two transactions never wait on each other over it in opposite orders, and it is held only
-- while the transaction commits.
CREATE TABLE kept_rows_version (
    only_row BOOLEAN PRIMARY KEY CHECK (only_row),
    version  BIGINT NOT NULL
);
INSERT INTO kept_rows_version (only_row, version) VALUES (TRUE, 0);

CREATE FUNCTION bump_kept_rows_version() RETURNS trigger AS $$
BEGIN
    UPDATE kept_rows_version SET version = version + 1;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE CONSTRAINT TRIGGER kept_rows_on_workspace_change AFTER UPDATE OR DELETE ON workspaces
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bump_kept_rows_version();

CREATE CONSTRAINT TRIGGER kept_rows_on_issuer_change AFTER INSERT OR UPDATE OR DELETE ON workspace_issuers
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bump_kept_rows_version();

CREATE CONSTRAINT TRIGGER kept_rows_on_client_update AFTER UPDATE OF id, secret_hash, client_name, redirect_uris,
    grant_types, token_endpoint_auth_method, application_type, scope, workspace_id, source, metadata,
    created_at, registration_token_hash, updated_at ON oauth_clients
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bump_kept_rows_version();
CREATE CONSTRAINT TRIGGER kept_rows_on_client_delete AFTER DELETE ON oauth_clients
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bump_kept_rows_version();
