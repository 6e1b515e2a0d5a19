//! The kinds of security event, with their stable names (stored and logged) and the words
//! the Audit log page uses for them.

/// Every kind of audit event. The names returned by [`EventKind::as_str`] are stored in the
/// database and appear in logs: never rename one, add new kinds instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    SignIn,
    SignInFailed,
    SignOut,
    PasswordChanged,
    ConsentGranted,
    ConsentDenied,
    TokenIssued,
    RefreshReuseDetected,
    CodeReplayDetected,
    GrantRevoked,
    ConsentRevoked,
    ClientRegistered,
    ClientDeleted,
    MachineTokenCreated,
    MachineTokenRevoked,
    UpstreamAdded,
    UpstreamChanged,
    UpstreamRemoved,
    UpstreamAccountConnected,
    UpstreamNeedsReconnect,
    UpstreamCredentialsChanged,
    MemberAdded,
    MemberRoleChanged,
    MemberRemoved,
}

impl EventKind {
    pub const ALL: &[EventKind] = &[
        EventKind::SignIn,
        EventKind::SignInFailed,
        EventKind::SignOut,
        EventKind::PasswordChanged,
        EventKind::ConsentGranted,
        EventKind::ConsentDenied,
        EventKind::TokenIssued,
        EventKind::RefreshReuseDetected,
        EventKind::CodeReplayDetected,
        EventKind::GrantRevoked,
        EventKind::ConsentRevoked,
        EventKind::ClientRegistered,
        EventKind::ClientDeleted,
        EventKind::MachineTokenCreated,
        EventKind::MachineTokenRevoked,
        EventKind::UpstreamAdded,
        EventKind::UpstreamChanged,
        EventKind::UpstreamRemoved,
        EventKind::UpstreamAccountConnected,
        EventKind::UpstreamNeedsReconnect,
        EventKind::UpstreamCredentialsChanged,
        EventKind::MemberAdded,
        EventKind::MemberRoleChanged,
        EventKind::MemberRemoved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::SignIn => "sign_in",
            EventKind::SignInFailed => "sign_in_failed",
            EventKind::SignOut => "sign_out",
            EventKind::PasswordChanged => "password_changed",
            EventKind::ConsentGranted => "consent_granted",
            EventKind::ConsentDenied => "consent_denied",
            EventKind::TokenIssued => "token_issued",
            EventKind::RefreshReuseDetected => "refresh_reuse_detected",
            EventKind::CodeReplayDetected => "code_replay_detected",
            EventKind::GrantRevoked => "grant_revoked",
            EventKind::ConsentRevoked => "consent_revoked",
            EventKind::ClientRegistered => "client_registered",
            EventKind::ClientDeleted => "client_deleted",
            EventKind::MachineTokenCreated => "machine_token_created",
            EventKind::MachineTokenRevoked => "machine_token_revoked",
            EventKind::UpstreamAdded => "upstream_added",
            EventKind::UpstreamChanged => "upstream_changed",
            EventKind::UpstreamRemoved => "upstream_removed",
            EventKind::UpstreamAccountConnected => "upstream_account_connected",
            EventKind::UpstreamNeedsReconnect => "upstream_needs_reconnect",
            EventKind::UpstreamCredentialsChanged => "upstream_credentials_changed",
            EventKind::MemberAdded => "member_added",
            EventKind::MemberRoleChanged => "member_role_changed",
            EventKind::MemberRemoved => "member_removed",
        }
    }

    /// Plain words for people.
    pub fn label(self) -> &'static str {
        match self {
            EventKind::SignIn => "Signed in",
            EventKind::SignInFailed => "Sign-in failed",
            EventKind::SignOut => "Signed out",
            EventKind::PasswordChanged => "Password changed",
            EventKind::ConsentGranted => "App authorized",
            EventKind::ConsentDenied => "Authorization declined",
            EventKind::TokenIssued => "Tokens issued",
            EventKind::RefreshReuseDetected => "Refresh token reuse detected",
            EventKind::CodeReplayDetected => "Authorization code replayed",
            EventKind::GrantRevoked => "Session revoked",
            EventKind::ConsentRevoked => "App access revoked",
            EventKind::ClientRegistered => "App registered",
            EventKind::ClientDeleted => "App deleted",
            EventKind::MachineTokenCreated => "Machine token created",
            EventKind::MachineTokenRevoked => "Machine token revoked",
            EventKind::UpstreamAdded => "Upstream added",
            EventKind::UpstreamChanged => "Upstream changed",
            EventKind::UpstreamRemoved => "Upstream removed",
            EventKind::UpstreamAccountConnected => "Upstream account connected",
            EventKind::UpstreamNeedsReconnect => "Upstream account needs reconnecting",
            EventKind::UpstreamCredentialsChanged => "Upstream sign-in changed",
            EventKind::MemberAdded => "Member added",
            EventKind::MemberRoleChanged => "Member role changed",
            EventKind::MemberRemoved => "Member removed",
        }
    }

    /// Events that call for attention (shown highlighted).
    pub fn is_alarm(self) -> bool {
        matches!(self, EventKind::RefreshReuseDetected | EventKind::CodeReplayDetected | EventKind::SignInFailed)
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_parse_back() {
        let mut names: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), EventKind::ALL.len());
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(*k));
        }
        assert_eq!(EventKind::parse("nope"), None);
    }
}
