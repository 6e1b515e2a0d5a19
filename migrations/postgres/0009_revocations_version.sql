-- A counter bumped by every revocation in a workspace, in the same statement (these triggers):
-- a grant revoked or deleted, a client removed or moved, a machine token revoked or deleted.
-- The MCP gateway reads it with the workspace row it reads anyway, and trusts what it found
-- alive (a grant, a machine client) only under the counter value it was found with, so a
-- revocation made by any process (a page, the CLI, another node) is seen on the very next
-- request without a read of the grant on every request.
ALTER TABLE workspaces ADD COLUMN revocations_version BIGINT NOT NULL DEFAULT 0;

CREATE FUNCTION bump_revocations_version() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE workspaces SET revocations_version = revocations_version + 1 WHERE id = OLD.workspace_id;
    ELSE
        UPDATE workspaces SET revocations_version = revocations_version + 1
        WHERE id = OLD.workspace_id OR id = NEW.workspace_id;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER revocations_version_on_grant_change AFTER UPDATE OF revoked_at, workspace_id ON grants
    FOR EACH ROW WHEN (NEW.revoked_at IS DISTINCT FROM OLD.revoked_at OR NEW.workspace_id IS DISTINCT FROM OLD.workspace_id)
    EXECUTE FUNCTION bump_revocations_version();
CREATE TRIGGER revocations_version_on_grant_delete AFTER DELETE ON grants
    FOR EACH ROW EXECUTE FUNCTION bump_revocations_version();

CREATE TRIGGER revocations_version_on_client_move AFTER UPDATE OF workspace_id ON oauth_clients
    FOR EACH ROW WHEN (NEW.workspace_id IS DISTINCT FROM OLD.workspace_id)
    EXECUTE FUNCTION bump_revocations_version();
CREATE TRIGGER revocations_version_on_client_delete AFTER DELETE ON oauth_clients
    FOR EACH ROW EXECUTE FUNCTION bump_revocations_version();

CREATE TRIGGER revocations_version_on_machine_token_change AFTER UPDATE OF revoked_at, workspace_id ON machine_tokens
    FOR EACH ROW WHEN (NEW.revoked_at IS DISTINCT FROM OLD.revoked_at OR NEW.workspace_id IS DISTINCT FROM OLD.workspace_id)
    EXECUTE FUNCTION bump_revocations_version();
CREATE TRIGGER revocations_version_on_machine_token_delete AFTER DELETE ON machine_tokens
    FOR EACH ROW EXECUTE FUNCTION bump_revocations_version();
