//! The upstream servers configured for each workspace (`gatehouse upstream add`): checked,
//! stored (static headers sealed, since they often carry API keys) and read back.

use super::upstream::{Upstream, UpstreamSpec};
use crate::clock::Clock;
use crate::crypto::CryptoError;
use crate::crypto::aead::{Sealer, Slot};
use crate::store::{Store, StoreError, UpstreamRow};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// Upstream names prefix tool names (`{upstream}__{tool}`), so they are short, lower case,
/// and never contain the `__` separator.
pub fn validate_name(name: &str) -> Result<(), RegistryError> {
    let ok = (1..=32).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && !name.contains("__");
    if ok {
        Ok(())
    } else {
        Err(RegistryError::Invalid(format!(
            "`{name}` is not a valid upstream name: use 1-32 lowercase letters, digits, - and _ (not `__`), starting with a letter or digit"
        )))
    }
}

/// Parses `--command "CMD ARGS"` with shell quoting rules into a stdio upstream.
pub fn parse_command(command: &str) -> Result<UpstreamSpec, RegistryError> {
    let argv = shell_words::split(command).map_err(|e| {
        RegistryError::Invalid(format!("--command could not be parsed ({e}); quote arguments with spaces"))
    })?;
    match argv.split_first() {
        Some((program, args)) => Ok(UpstreamSpec::Stdio { command: program.clone(), args: args.to_vec() }),
        None => Err(RegistryError::Invalid("--command is empty".into())),
    }
}

/// Parses `--header "Name: value"`.
pub fn parse_header(header: &str) -> Result<(String, String), RegistryError> {
    let (name, value) = header
        .split_once(':')
        .ok_or_else(|| RegistryError::Invalid(format!("--header `{header}` must look like `Name: value`")))?;
    let name = name.trim();
    let value = value.trim();
    if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err() || axum::http::HeaderValue::from_str(value).is_err()
    {
        return Err(RegistryError::Invalid(format!("--header `{name}` is not a valid HTTP header")));
    }
    if name.eq_ignore_ascii_case("host") || name.eq_ignore_ascii_case("content-length") {
        return Err(RegistryError::Invalid(format!("--header `{name}` cannot be set")));
    }
    Ok((name.to_owned(), value.to_owned()))
}

fn headers_slot(id: &str) -> Slot<'_> {
    Slot { table: "upstreams", row: id, column: "headers" }
}

pub async fn add(
    store: &Store,
    sealer: &Sealer,
    clock: &dyn Clock,
    workspace_id: &str,
    name: &str,
    spec: &UpstreamSpec,
) -> Result<UpstreamRow, RegistryError> {
    validate_name(name)?;
    let id = uuid::Uuid::now_v7().to_string();
    let row = build_row(sealer, id, workspace_id, name, clock.now(), spec)?;
    store.insert_upstream(&row).await?;
    Ok(row)
}

/// Points an existing upstream somewhere else (name and id stay). False if there is none.
pub async fn update(
    store: &Store,
    sealer: &Sealer,
    workspace_id: &str,
    name: &str,
    spec: &UpstreamSpec,
) -> Result<bool, RegistryError> {
    let Some(existing) = store.upstream_by_name(workspace_id, name).await? else {
        return Ok(false);
    };
    let row = build_row(sealer, existing.id, workspace_id, name, existing.created_at, spec)?;
    Ok(store.update_upstream(&row).await?)
}

fn build_row(
    sealer: &Sealer,
    id: String,
    workspace_id: &str,
    name: &str,
    created_at: i64,
    spec: &UpstreamSpec,
) -> Result<UpstreamRow, RegistryError> {
    let mut row = UpstreamRow {
        id,
        workspace_id: workspace_id.to_owned(),
        name: name.to_owned(),
        kind: String::new(),
        url: None,
        command: None,
        headers: None,
        created_at,
    };
    match spec {
        UpstreamSpec::Http { url, headers } => {
            let parsed = url::Url::parse(url).map_err(|e| RegistryError::Invalid(format!("--url `{url}`: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                return Err(RegistryError::Invalid(format!("--url `{url}` must be an http(s) URL")));
            }
            row.kind = "http".into();
            row.url = Some(url.clone());
            if !headers.is_empty() {
                let json = serde_json::to_vec(headers).map_err(|e| RegistryError::Invalid(e.to_string()))?;
                row.headers = Some(sealer.seal(&json, &headers_slot(&row.id))?);
            }
        }
        UpstreamSpec::Stdio { command, args } => {
            if command.trim().is_empty() {
                return Err(RegistryError::Invalid("--command is empty".into()));
            }
            let argv: Vec<&String> = std::iter::once(command).chain(args).collect();
            row.kind = "stdio".into();
            row.command = Some(serde_json::to_string(&argv).map_err(|e| RegistryError::Invalid(e.to_string()))?);
        }
        UpstreamSpec::Demo => row.kind = "demo".into(),
    }
    Ok(row)
}

/// The configured upstreams of a workspace, headers unsealed.
pub async fn list(store: &Store, sealer: &Sealer, workspace_id: &str) -> Result<Vec<Upstream>, RegistryError> {
    let mut out = Vec::new();
    for row in store.upstreams_of_workspace(workspace_id).await? {
        let spec = match row.kind.as_str() {
            "http" => {
                let headers = match &row.headers {
                    Some(sealed) => {
                        serde_json::from_slice(&sealer.open(sealed, &headers_slot(&row.id))?).map_err(|e| {
                            RegistryError::Invalid(format!("stored headers of `{}` unreadable: {e}", row.name))
                        })?
                    }
                    None => Vec::new(),
                };
                UpstreamSpec::Http { url: row.url.clone().unwrap_or_default(), headers }
            }
            "stdio" => {
                let argv: Vec<String> = serde_json::from_str(row.command.as_deref().unwrap_or("[]"))
                    .map_err(|e| RegistryError::Invalid(format!("stored command of `{}` unreadable: {e}", row.name)))?;
                match argv.split_first() {
                    Some((command, args)) => UpstreamSpec::Stdio { command: command.clone(), args: args.to_vec() },
                    None => return Err(RegistryError::Invalid(format!("stored command of `{}` is empty", row.name))),
                }
            }
            _ => UpstreamSpec::Demo,
        };
        out.push(Upstream { name: row.name, spec });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_commands_and_headers() {
        assert!(validate_name("github").is_ok());
        assert!(validate_name("my_api-2").is_ok());
        for bad in ["", "Git", "a__b", "-x", &"a".repeat(33), "a b"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_command("npx -y \"@scope/server\" --flag 'a b'").unwrap(),
            UpstreamSpec::Stdio {
                command: "npx".into(),
                args: vec!["-y".into(), "@scope/server".into(), "--flag".into(), "a b".into()]
            }
        );
        assert!(parse_command("   ").is_err());
        assert!(parse_command("unterminated 'quote").is_err());
        assert_eq!(parse_header("Authorization: Bearer x").unwrap(), ("Authorization".into(), "Bearer x".into()));
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("Bad Name: x").is_err());
        assert!(parse_header("Host: evil").is_err());
    }
}
