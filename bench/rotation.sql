-- pgbench: one refresh-token rotation, as the statement Gatehouse runs for it on PostgreSQL
-- (src/store/rotations.rs, `rotate_pg`, there for a whole group at once): spend the presented token,
-- store its successor, touch the grant and return the grant's row, all in one statement committed on
-- its own. Each pgbench client walks its own chain: the token it inserts is the one it spends next
-- (:cur starts as 'none' via -D, so each client's first transaction only starts its chain). Run with
-- -M prepared, as sqlx does.
--
-- Until 3 December this script (and Gatehouse) ran the rotation as four statements in a transaction
-- (BEGIN, spend, read the grant, insert, touch, COMMIT). In one statement pgbench does about twice as
-- many rotations a second, so the baseline moved with the statement: both sides run the same SQL.
\set r random(1, 9223372036854775806)
WITH spent AS (
  UPDATE refresh_tokens SET used_at = 1900000000
  WHERE token_hash = :cur AND used_at IS NULL AND expires_at > 1900000000
    AND grant_id IN (SELECT id FROM grants WHERE revoked_at IS NULL AND client_id = :cid)
  RETURNING grant_id, scope),
stored AS (
  INSERT INTO refresh_tokens (token_hash, grant_id, scope, created_at, expires_at)
  VALUES ('bench-' || CAST(:r AS text), 'bench-pg-' || CAST(:client_id AS text), :scope, 1900000000, 2000000000)
  RETURNING token_hash),
touched AS (
  UPDATE grants SET last_used_at = 1900000000 WHERE id = 'bench-pg-' || CAST(:client_id AS text)
  RETURNING id, user_id, client_id, workspace_id, scope, redirect_uri, created_at, last_used_at, revoked_at, revoked_reason)
SELECT stored.token_hash AS cur, touched.id AS g_id, touched.user_id AS g_user_id, touched.client_id AS g_client_id,
       touched.workspace_id AS g_workspace_id, touched.scope AS g_scope, touched.redirect_uri AS g_redirect_uri,
       touched.created_at AS g_created_at, touched.last_used_at AS g_last_used_at, touched.revoked_at AS g_revoked_at,
       touched.revoked_reason AS g_revoked_reason, (SELECT count(*) FROM spent) AS g_spent
FROM stored, touched \gset
