//! The Audit log page (owners only): the workspace's events newest first, filtered by kind
//! and person, a page of 100 at a time.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use serde::Deserialize;

use super::format::When;
use super::layout::Nav;
use super::pages::render;
use super::viewer::{Reject, Viewer};
use crate::app::AppState;
use crate::audit::EventKind;
use crate::store::AuditQuery;

const PAGE_SIZE: i64 = 100;

#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    kind: Option<String>,
    person: Option<String>,
    /// `at:id` of the last event of the previous page.
    before: Option<String>,
}

pub struct KindChoice {
    pub name: &'static str,
    pub label: &'static str,
    pub selected: bool,
}

pub struct EventLine {
    pub at: When,
    pub kind: String,
    pub label: &'static str,
    pub alarm: bool,
    pub actor: String,
    pub subject: String,
    pub source: String,
    pub details: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
pub struct AuditPage {
    pub nav: Nav,
    pub ws_name: String,
    pub slug: String,
    pub kinds: Vec<KindChoice>,
    pub person: String,
    pub filtered: bool,
    pub rows: Vec<EventLine>,
    pub older: Option<String>,
}

/// Details as `key: value` lines: strings unquoted, lists comma-separated, `*_at` times as
/// dates, empty values left out.
fn details_text(json: &str, now: i64) -> String {
    use serde_json::Value;
    let Ok(map) = serde_json::from_str::<serde_json::Map<String, Value>>(json) else {
        return json.to_owned();
    };
    map.iter()
        .filter_map(|(k, v)| {
            let text = match v {
                Value::String(s) if s.is_empty() => return None,
                Value::String(s) => s.clone(),
                Value::Array(items) if items.is_empty() => return None,
                Value::Array(items) => items
                    .iter()
                    .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join(", "),
                Value::Number(n) if k.ends_with("_at") => match n.as_i64() {
                    Some(t) => When::at(t, now).absolute,
                    None => n.to_string(),
                },
                other => other.to_string(),
            };
            Some(format!("{}: {text}", k.replace('_', " ")))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub async fn audit_log(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(slug): Path<String>,
    Query(filters): Query<Filters>,
) -> Result<Response, Reject> {
    let viewer = Viewer::load(&state, &headers, &uri, &slug).await?;
    viewer.require_owner()?;
    let kind = filters.kind.as_deref().and_then(EventKind::parse);
    let person = filters.person.as_deref().map(str::trim).filter(|p| !p.is_empty()).map(str::to_lowercase);
    let person_id = match &person {
        Some(email) => state.store.user_by_email(email).await?.map(|u| u.id),
        None => None,
    };
    let before = filters
        .before
        .as_deref()
        .and_then(|b| b.split_once(':'))
        .and_then(|(at, id)| at.parse::<i64>().ok().map(|at| (at, id.to_owned())));
    let query = AuditQuery {
        workspace_id: viewer.ws.id.clone(),
        all_server_wide: viewer.person.user.is_admin,
        kind: kind.map(|k| k.as_str().to_owned()),
        person: person.clone(),
        person_id,
        before,
        limit: PAGE_SIZE,
    };
    let events = state.store.audit_events(&query).await?;
    let now = state.clock.now();
    let older = match events.last() {
        Some(last) if events.len() as i64 == PAGE_SIZE => {
            let mut next = url::form_urlencoded::Serializer::new(String::new());
            if let Some(k) = kind {
                next.append_pair("kind", k.as_str());
            }
            if let Some(p) = &person {
                next.append_pair("person", p);
            }
            next.append_pair("before", &format!("{}:{}", last.at, last.id));
            Some(format!("/w/{}/audit?{}", viewer.ws.slug, next.finish()))
        }
        _ => None,
    };
    let rows = events
        .into_iter()
        .map(|e| {
            let known = EventKind::parse(&e.kind);
            EventLine {
                at: When::at(e.at, now),
                label: known.map_or("Other event", EventKind::label),
                alarm: known.is_some_and(EventKind::is_alarm),
                actor: e.actor,
                subject: e.subject.unwrap_or_default(),
                source: e.source.unwrap_or_default(),
                details: details_text(&e.details, now),
                kind: e.kind,
            }
        })
        .collect();
    let page = AuditPage {
        nav: Nav::for_workspace(&viewer, "audit"),
        ws_name: viewer.ws.name.clone(),
        slug: viewer.ws.slug.clone(),
        kinds: EventKind::ALL
            .iter()
            .map(|k| KindChoice { name: k.as_str(), label: k.label(), selected: Some(*k) == kind })
            .collect(),
        filtered: kind.is_some() || person.is_some(),
        person: person.unwrap_or_default(),
        rows,
        older,
    };
    Ok(render(&page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_read_as_plain_lines() {
        let text = details_text(r#"{"scope":"mcp:read","header_names":[],"uris":["a","b"],"expires_at":0,"n":2}"#, 0);
        assert_eq!(text, "expires at: 1970-01-01 00:00 UTC\nn: 2\nscope: mcp:read\nuris: a, b");
    }
}
