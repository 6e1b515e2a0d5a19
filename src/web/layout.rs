//! The frame around signed-in pages: the workspace switcher, the workspace's tabs (owner
//! tabs only for owners), the account link and the sign-out button.

use super::viewer::{Person, Viewer};

pub struct WorkspaceLink {
    pub slug: String,
    pub name: String,
    pub current: bool,
}

pub struct Tab {
    pub href: String,
    pub label: &'static str,
    pub active: bool,
}

pub struct Nav {
    pub email: String,
    pub csrf: String,
    pub workspaces: Vec<WorkspaceLink>,
    /// The workspace being looked at (its name), if any.
    pub current: Option<String>,
    pub tabs: Vec<Tab>,
    pub account_active: bool,
    /// A confirmation after a form, from a fixed list (never from the request).
    pub notice: Option<&'static str>,
}

/// Workspace pages and who may see them.
const TABS: &[(&str, &str, bool)] = &[
    ("apps", "Connected apps", false),
    ("sessions", "Sessions", false),
    ("tokens", "Machine tokens", false),
    ("clients", "OAuth clients", true),
    ("upstreams", "Upstreams", true),
    ("members", "Members", true),
    ("audit", "Audit log", true),
];

impl Nav {
    pub fn for_person(person: &Person, current_slug: Option<&str>) -> Self {
        Nav {
            email: person.user.email.clone(),
            csrf: person.csrf.clone(),
            workspaces: person
                .workspaces
                .iter()
                .map(|w| WorkspaceLink {
                    slug: w.slug.clone(),
                    name: w.name.clone(),
                    current: Some(w.slug.as_str()) == current_slug,
                })
                .collect(),
            current: None,
            tabs: Vec::new(),
            account_active: false,
            notice: None,
        }
    }

    /// The frame of a workspace page; `active` is the tab's path segment (e.g. `apps`).
    pub fn for_workspace(viewer: &Viewer, active: &str) -> Self {
        let mut nav = Self::for_person(&viewer.person, Some(&viewer.ws.slug));
        nav.current = Some(viewer.ws.name.clone());
        nav.tabs = TABS
            .iter()
            .filter(|(_, _, owners_only)| !owners_only || viewer.is_owner())
            .map(|(path, label, _)| Tab {
                href: format!("/w/{}/{path}", viewer.ws.slug),
                label,
                active: *path == active,
            })
            .collect();
        nav
    }

    pub fn with_notice(mut self, notice: Option<&'static str>) -> Self {
        self.notice = notice;
        self
    }
}

/// Confirmations shown after a form redirects back with `?done=<key>`.
pub fn notice(key: Option<&str>) -> Option<&'static str> {
    Some(match key? {
        "app-revoked" => "The app was disconnected. Its next request will be refused.",
        "session-revoked" => "The session was revoked. The app must sign in again.",
        "consent-revoked" => "Consent revoked. The registration stays; people must authorize the app again.",
        "client-deleted" => "The client was deleted. Its next connection must register again.",
        "token-revoked" => "The machine token was revoked.",
        "upstream-added" => "The upstream was added and tested. New MCP sessions see its tools.",
        "upstream-changed" => "The upstream was changed and tested. New MCP sessions use the new settings.",
        "upstream-removed" => "The upstream was removed. New MCP sessions no longer see it.",
        "upstream-discovered" => {
            "Gatehouse found where this upstream signs in and registered there. Press Connect to sign in."
        }
        "upstream-connected" => "Your account is connected. Your calls to this upstream now use it.",
        "upstream-disconnected" => "Your account was disconnected. Gatehouse no longer holds its tokens.",
        "member-removed" => "The member was removed, with their apps, sessions and machine tokens here.",
        "role-changed" => "The role was changed.",
        "password-changed" => "Your password was changed.",
        _ => return None,
    })
}

/// The `?done=` of a page a form redirected back to.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Done {
    pub done: Option<String>,
}

impl Done {
    pub fn notice(&self) -> Option<&'static str> {
        notice(self.done.as_deref())
    }
}
