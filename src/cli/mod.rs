//! The `gatehouse` binary's own modules (the library does not use them): the command line's
//! definition, and the commands too long to sit in `main.rs`.

use std::io::{BufRead, IsTerminal};

use gatehouse::clock::Clock;
use gatehouse::identity;
use gatehouse::store::Store;

pub mod args;
pub mod upstream_auth;

pub(crate) fn ago(clock: &dyn Clock, then: i64) -> String {
    let secs = (clock.now() - then).max(0);
    match secs {
        s if s >= 86_400 => format!("{}d ago", s / 86_400),
        s if s >= 3_600 => format!("{}h ago", s / 3_600),
        s if s >= 60 => format!("{}m ago", s / 60),
        s => format!("{s}s ago"),
    }
}

pub(crate) async fn find_user(store: &Store, email: &str) -> anyhow::Result<gatehouse::store::UserRow> {
    let email = identity::normalize_email(email).map_err(anyhow::Error::msg)?;
    store
        .user_by_email(&email)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no user {email}; create one with `gatehouse user add {email}`"))
}

pub(crate) async fn find_workspace(store: &Store, slug: &str) -> anyhow::Result<gatehouse::store::WorkspaceRow> {
    store
        .workspace_by_slug(slug)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no workspace `{slug}`; create it with `gatehouse workspace add {slug}`"))
}

/// The password from stdin's first line, or a generated one.
pub(crate) fn password_from(stdin: bool) -> anyhow::Result<(String, bool)> {
    if !stdin {
        return Ok((identity::password::generate()?, true));
    }
    if std::io::stdin().is_terminal() {
        eprintln!("type the password and press Enter:");
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    Ok((password, false))
}
