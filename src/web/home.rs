//! The signed-in home page: your workspaces and the MCP URL of each.

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;

use super::layout::Nav;
use super::pages::render;
use super::viewer::{Person, Reject};
use crate::app::AppState;

pub struct WorkspaceTile {
    pub name: String,
    pub slug: String,
    pub mcp_url: String,
    pub role: Option<String>,
    /// Runs the workspace (owner or server admin).
    pub owner: bool,
}

#[derive(Template)]
#[template(path = "home.html")]
pub struct HomePage {
    pub nav: Nav,
    pub workspaces: Vec<WorkspaceTile>,
}

pub async fn home(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Result<Response, Reject> {
    let person = Person::load(&state, &headers, &uri).await?;
    let mut workspaces = Vec::new();
    for w in &person.workspaces {
        let role = state.store.membership(&w.id, &person.user.id).await?.map(|m| m.role);
        workspaces.push(WorkspaceTile {
            name: w.name.clone(),
            slug: w.slug.clone(),
            mcp_url: state.mcp_url(&w.slug),
            owner: person.user.is_admin || role.as_deref() == Some("owner"),
            role: role.or_else(|| person.user.is_admin.then(|| "server admin".to_owned())),
        });
    }
    Ok(render(&HomePage { nav: Nav::for_person(&person, None), workspaces }))
}
