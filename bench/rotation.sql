-- pgbench: one refresh-token rotation, as the statements Gatehouse runs for it (src/store/rotations.rs,
-- there for a whole group at once), in a transaction of its own. Each pgbench client walks its own chain:
-- the token it inserts is the one it spends next (:cur starts as 'none' via -D, so each
-- client's first transaction only starts its chain). Run with -M prepared, as sqlx does.
\set r random(1, 9223372036854775806)
BEGIN;
UPDATE refresh_tokens SET used_at = 1900000000 WHERE token_hash = :cur AND used_at IS NULL AND expires_at > 1900000000 AND grant_id IN (SELECT id FROM grants WHERE revoked_at IS NULL AND client_id = :cid) RETURNING grant_id, scope \aset
SELECT id, user_id, client_id, workspace_id, scope, redirect_uri, created_at, last_used_at, revoked_at, revoked_reason FROM grants WHERE id = 'bench-pg-' || CAST(:client_id AS text);
INSERT INTO refresh_tokens (token_hash, grant_id, scope, created_at, expires_at, used_at) VALUES ('bench-' || CAST(:r AS text), 'bench-pg-' || CAST(:client_id AS text), :scope, 1900000000, 2000000000, NULL) RETURNING token_hash AS cur \gset
UPDATE grants SET last_used_at = 1900000000 WHERE id = 'bench-pg-' || CAST(:client_id AS text);
COMMIT;
