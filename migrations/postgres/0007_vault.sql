-- The credential vault: how the gateway signs in to an upstream, and the tokens it holds.
-- Static secret headers (API keys) stay where they are: sealed in upstreams.headers.
-- Every secret here is an AES-256-GCM envelope (crypto::aead) bound to its table, row and
-- column; nothing secret is stored in plain text.

-- One row per upstream that signs in with OAuth (none for upstreams without, or with headers only).
CREATE TABLE upstream_credentials (
    upstream_id     TEXT PRIMARY KEY REFERENCES upstreams(id) ON DELETE CASCADE,
    -- client_credentials: one token shared by the workspace; authorization_code: per person.
    kind            TEXT NOT NULL CHECK (kind IN ('client_credentials', 'authorization_code')),
    issuer          TEXT,
    authorization_endpoint TEXT,
    token_endpoint  TEXT NOT NULL,
    client_id       TEXT NOT NULL,
    client_secret   BYTEA,
    -- A PEM private key for private_key_jwt client authentication (sealed).
    private_key     BYTEA,
    auth_method     TEXT NOT NULL
                    CHECK (auth_method IN ('none', 'client_secret_basic', 'client_secret_post', 'private_key_jwt')),
    scope           TEXT,
    -- RFC 8707 resource sent with requests; NULL: omitted (for servers that reject it).
    resource        TEXT,
    -- An `audience` parameter some servers want instead (Auth0 style); NULL: none.
    audience        TEXT,
    updated_at      BIGINT NOT NULL
);

-- Tokens the gateway holds for an upstream: owner '' is the workspace (client_credentials),
-- anything else the user id of the person who connected their account.
CREATE TABLE upstream_tokens (
    upstream_id     TEXT NOT NULL REFERENCES upstreams(id) ON DELETE CASCADE,
    owner           TEXT NOT NULL,
    access_token    BYTEA NOT NULL,
    refresh_token   BYTEA,
    scope           TEXT,
    -- NULL: the server did not say when the token expires.
    expires_at      BIGINT,
    -- When to refresh: 80 % into the token's lifetime.
    refresh_at      BIGINT,
    -- Refresh attempts that failed in a row, and when the next may start (backoff).
    failures        BIGINT NOT NULL DEFAULT 0,
    retry_at        BIGINT,
    -- A refresh in progress (by any node) until then: nobody else spends the refresh token.
    refreshing_until BIGINT,
    status          TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'needs_reconnect')),
    problem         TEXT,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (upstream_id, owner)
);
CREATE INDEX upstream_tokens_refresh_at ON upstream_tokens(refresh_at);

-- Authorization requests in flight from the Connect button: the state is random, stored as
-- its SHA-256, single use, ten minutes, and bound to the browser session that started it.
CREATE TABLE upstream_oauth_states (
    state_hash    TEXT PRIMARY KEY,
    upstream_id   TEXT NOT NULL REFERENCES upstreams(id) ON DELETE CASCADE,
    user_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    session_hash  TEXT NOT NULL,
    -- The PKCE code verifier (sealed).
    verifier      BYTEA NOT NULL,
    redirect_uri  TEXT NOT NULL,
    issuer        TEXT NOT NULL,
    -- 1: the server promised RFC 9207 iss in its response.
    iss_required  BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    consumed_at   BIGINT
);
CREATE INDEX upstream_oauth_states_expires_at ON upstream_oauth_states(expires_at);
