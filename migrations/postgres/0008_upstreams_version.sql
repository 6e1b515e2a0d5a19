-- A counter bumped by every change to a workspace's upstreams, in the same statement (this
-- trigger), so the MCP gateway can keep the listed upstreams in memory and still see a change
-- made by any process (the CLI, another node) on the very next request: it reads the counter
-- with the workspace row it reads anyway, and lists the upstreams again only when it moved.
ALTER TABLE workspaces ADD COLUMN upstreams_version BIGINT NOT NULL DEFAULT 0;

CREATE FUNCTION bump_upstreams_version() RETURNS trigger AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        UPDATE workspaces SET upstreams_version = upstreams_version + 1 WHERE id = OLD.workspace_id;
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.workspace_id IS DISTINCT FROM OLD.workspace_id) THEN
        UPDATE workspaces SET upstreams_version = upstreams_version + 1 WHERE id = NEW.workspace_id;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER upstreams_version AFTER INSERT OR UPDATE OR DELETE ON upstreams
    FOR EACH ROW EXECUTE FUNCTION bump_upstreams_version();
