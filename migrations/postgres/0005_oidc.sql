-- Sign-in through the organisation's OpenID Connect identity providers.

-- Who a provider's subject is here. People are linked by (provider, subject), never by email.
CREATE TABLE oidc_identities (
    provider_id   TEXT NOT NULL,
    subject       TEXT NOT NULL,
    user_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    email         TEXT,
    created_at    BIGINT NOT NULL,
    last_login_at BIGINT NOT NULL,
    PRIMARY KEY (provider_id, subject)
);
CREATE INDEX oidc_identities_user ON oidc_identities(user_id);

-- Sign-ins under way: the hash of the `state` sent to the provider, bound to the browser by the
-- hash of a random cookie; single use (consumed_at), ten minutes. Nothing secret is stored:
-- the PKCE verifier and the nonce are derived from the cookie's value.
CREATE TABLE oidc_login_states (
    state_hash   TEXT PRIMARY KEY,
    provider_id  TEXT NOT NULL,
    browser_hash TEXT NOT NULL,
    next_path    TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    consumed_at  BIGINT
);
CREATE INDEX oidc_login_states_expires ON oidc_login_states(expires_at);
