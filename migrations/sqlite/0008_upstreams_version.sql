-- A counter bumped by every change to a workspace's upstreams, in the same statement (these
-- triggers), so the MCP gateway can keep the listed upstreams in memory and still see a change
-- made by any process (the CLI, another node) on the very next request: it reads the counter
-- with the workspace row it reads anyway, and lists the upstreams again only when it moved.
ALTER TABLE workspaces ADD COLUMN upstreams_version BIGINT NOT NULL DEFAULT 0;

CREATE TRIGGER upstreams_version_on_insert AFTER INSERT ON upstreams
BEGIN
    UPDATE workspaces SET upstreams_version = upstreams_version + 1 WHERE id = NEW.workspace_id;
END;

CREATE TRIGGER upstreams_version_on_update AFTER UPDATE ON upstreams
BEGIN
    UPDATE workspaces SET upstreams_version = upstreams_version + 1
    WHERE id = NEW.workspace_id OR id = OLD.workspace_id;
END;

CREATE TRIGGER upstreams_version_on_delete AFTER DELETE ON upstreams
BEGIN
    UPDATE workspaces SET upstreams_version = upstreams_version + 1 WHERE id = OLD.workspace_id;
END;
