//! `gatehouse upstream connect` and `gatehouse upstream sign-in`: an upstream's OAuth, set up
//! from the command line.

use std::sync::Arc;

use gatehouse::clock::SystemClock;
use gatehouse::config::Settings;
use gatehouse::store::Store;

use super::args::{ConnectArgs, SignInArgs};
use super::{find_workspace, password_from};

pub(crate) fn unreachable_connect() -> anyhow::Result<()> {
    anyhow::bail!("upstream connect is handled before the database is opened")
}

pub(crate) async fn connect_command(settings: &Settings, args: ConnectArgs) -> anyhow::Result<()> {
    use gatehouse::vault::headless::{self, HeadlessOptions};
    use gatehouse::vault::mcp_oauth::{ClientIdentity, Preregistered};
    use gatehouse::vault::{AuthMethod, GrantKind};
    if !args.headless {
        anyhow::bail!(
            "only --headless connections run from the command line; people connect their accounts on the pages"
        );
    }
    let grant = GrantKind::parse(&args.grant).unwrap_or(GrantKind::AuthorizationCode);
    let private_key = match &args.private_key_file {
        Some(path) => Some(std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?),
        None => None,
    };
    let client_secret = if args.client_secret_stdin { Some(password_from(true)?.0) } else { None };
    let auth_method = match args.auth_method.as_deref() {
        Some(m) => Some(AuthMethod::parse(m).ok_or_else(|| anyhow::anyhow!("unknown --auth-method {m}"))?),
        None => None,
    };
    let preregistered =
        args.client_id.map(|client_id| Preregistered { client_id, client_secret, private_key, auth_method });
    if grant == GrantKind::ClientCredentials && preregistered.is_none() {
        anyhow::bail!("--grant client_credentials needs --client-id (and a secret or --private-key-file)");
    }
    let public = settings.public_url.trim_end_matches('/');
    let metadata_url = args.client_metadata_url.or_else(|| {
        public.starts_with("https://").then(|| format!("{public}{}", gatehouse::vault::CLIENT_DOCUMENT_PATH))
    });
    let mut loopback_hosts = settings.cimd.allow_loopback_hosts.clone();
    if let Ok(parsed) = url::Url::parse(&args.url)
        && let Some(host) = parsed.host_str()
        && matches!(host, "localhost" | "127.0.0.1" | "[::1]")
    {
        loopback_hosts.push(host.to_owned());
    }
    let options = HeadlessOptions {
        grant,
        identity: ClientIdentity {
            client_name: "Gatehouse".into(),
            redirect_uri: format!("{public}{}", gatehouse::vault::CALLBACK_PATH),
            metadata_url,
        },
        preregistered,
        loopback_hosts,
    };
    let report = headless::connect(&args.url, options, Arc::new(SystemClock), args.call.as_deref())
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    if !report.ok {
        anyhow::bail!("{}", report.error.unwrap_or_else(|| "the connection failed".into()));
    }
    println!("connected to {}", report.server.as_deref().unwrap_or("the server"));
    for tool in report.tools {
        println!("{}\t{}", tool.name, tool.description);
    }
    if let (Some(tool), Some(text)) = (&args.call, &report.called) {
        println!("{tool}: {text}");
    }
    Ok(())
}

pub(crate) async fn sign_in_command(
    _settings: &Settings,
    store: &Store,
    sealer: gatehouse::crypto::aead::Sealer,
    args: SignInArgs,
) -> anyhow::Result<()> {
    use gatehouse::vault::{AuthMethod, GrantKind, OAuthCredential, Vault};
    let ws = find_workspace(store, &args.slug).await?;
    let upstream = store
        .upstream_by_name(&ws.id, &args.name)
        .await?
        .ok_or_else(|| anyhow::anyhow!("workspace {} has no upstream {}", args.slug, args.name))?;
    let vault = Vault::new(store.clone(), Arc::new(sealer), Arc::new(SystemClock))?;
    let Some(grant) = GrantKind::parse(&args.grant) else {
        store.delete_upstream_credential(&upstream.id).await?;
        println!("upstream {} signs in with no OAuth credential now", args.name);
        return Ok(());
    };
    if upstream.kind != "http" {
        anyhow::bail!("only HTTP upstreams sign in with OAuth");
    }
    let client_secret = if args.client_secret_stdin { Some(password_from(true)?.0) } else { None };
    let private_key = match &args.private_key_file {
        Some(path) => Some(std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?),
        None => None,
    };
    let auth_method = match args.auth_method.as_deref() {
        Some(method) => AuthMethod::parse(method).ok_or_else(|| anyhow::anyhow!("unknown --auth-method {method}"))?,
        None if private_key.is_some() => AuthMethod::PrivateKeyJwt,
        None if client_secret.is_some() => AuthMethod::ClientSecretBasic,
        None => AuthMethod::None,
    };
    let resource = match (args.no_resource, args.resource) {
        (true, _) => None,
        (false, Some(resource)) => Some(resource),
        (false, None) => upstream.url.clone(),
    };
    let credential = OAuthCredential {
        grant,
        issuer: args.issuer,
        authorization_endpoint: args.authorization_endpoint,
        token_endpoint: args.token_endpoint.unwrap_or_default(),
        client_id: args.client_id.unwrap_or_default(),
        client_secret,
        private_key,
        auth_method,
        scope: args.scope,
        resource,
        audience: args.audience,
    };
    vault.set_credential(&upstream.id, &credential).await?;
    println!("upstream {} signs in with {} ({})", args.name, grant.as_str(), auth_method.as_str());
    Ok(())
}
