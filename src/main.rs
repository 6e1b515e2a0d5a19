//! The `gatehouse` command: argument parsing and wiring only; the work lives in the library.

mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use cli::args::{
    Cli, ClientCommand, Command, KeysCommand, MemberCommand, TokenCommand, UpstreamCommand, UserCommand,
    WorkspaceCommand,
};
use cli::upstream_auth::{connect_command, sign_in_command, unreachable_connect};
use cli::{ago, find_user, find_workspace, password_from};
use gatehouse::app::{self, AppState};
use gatehouse::clock::{Clock, SystemClock};
use gatehouse::config::{FlagSettings, Settings, parse_duration};
use gatehouse::gateway::registry;
use gatehouse::gateway::upstream::UpstreamSpec;
use gatehouse::oauth::preregistered;
use gatehouse::resource::external::{self, TrustRequest};
use gatehouse::store::Store;
use gatehouse::workspace;
use gatehouse::{identity, oauth};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let flags = FlagSettings {
        listen: cli.global.listen.clone(),
        public_url: cli.global.public_url.clone(),
        data_dir: cli.global.data_dir.clone(),
        database_url: cli.global.database_url.clone(),
    };
    let settings = match Settings::load(cli.global.config.as_deref(), &flags) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("gatehouse: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&settings.log);
    match run(cli.command, settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gatehouse: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(filter: &str) {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| filter.to_owned());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        // Colour only for people; logs captured to files or CI stay plain.
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .init();
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    let clock = SystemClock;
    match command {
        Command::Serve => serve(settings).await,
        Command::Migrate => {
            let (store, _, _) = app::open(&settings).await?;
            println!("migrations applied ({})", store.backend_name());
            Ok(())
        }
        Command::User(cmd) => {
            let (store, _, _) = app::open(&settings).await?;
            match cmd {
                UserCommand::Add { email, admin, password_stdin } => {
                    let (password, generated) = password_from(password_stdin)?;
                    let user = identity::create_user(&store, &clock, &email, &password, admin).await?;
                    println!("created {}{}", user.email, if admin { " (admin)" } else { "" });
                    if generated {
                        println!("password: {password}  (shown once)");
                    }
                }
                UserCommand::Passwd { email, password_stdin } => {
                    let (password, generated) = password_from(password_stdin)?;
                    identity::password::check_strength(&password).map_err(anyhow::Error::msg)?;
                    let user = find_user(&store, &email).await?;
                    let hash = identity::password::hash_async(password.clone()).await?;
                    store.set_password_hash(&user.id, &hash).await?;
                    println!("password changed for {}", user.email);
                    if generated {
                        println!("password: {password}  (shown once)");
                    }
                }
            }
            Ok(())
        }
        Command::Workspace(cmd) => {
            let (store, sealer, _) = app::open(&settings).await?;
            match cmd {
                WorkspaceCommand::Add { slug, name } => {
                    let ws = workspace::create(&store, &clock, &slug, name.as_deref()).await?;
                    println!(
                        "created workspace {}; MCP URL: {}",
                        ws.slug,
                        workspace::mcp_url(&settings.public_url, &ws.slug)
                    );
                }
                WorkspaceCommand::Member(MemberCommand::Add { slug, email, role }) => {
                    let ws = find_workspace(&store, &slug).await?;
                    let user = find_user(&store, &email).await?;
                    workspace::add_member(&store, &clock, &ws.id, &user.id, role).await?;
                    println!("{} is now {} of {}", user.email, role.as_str(), ws.slug);
                }
                WorkspaceCommand::Trust {
                    slug,
                    issuer,
                    audience,
                    scope_map,
                    introspection_client_id,
                    introspection_secret_stdin,
                    introspection_endpoint,
                } => {
                    let ws = find_workspace(&store, &slug).await?;
                    let introspection_secret =
                        if introspection_secret_stdin { Some(password_from(true)?.0) } else { None };
                    let request = TrustRequest {
                        issuer,
                        audience,
                        scope_map,
                        introspection_client_id,
                        introspection_secret,
                        introspection_endpoint,
                    };
                    let row = external::trust(&store, &sealer, &settings, clock.now(), &ws, request).await?;
                    println!(
                        "workspace {} now trusts {} (audience {}); MCP URL: {}",
                        ws.slug,
                        row.issuer,
                        row.audience.as_deref().unwrap_or("= the MCP URL"),
                        workspace::mcp_url(&settings.public_url, &ws.slug)
                    );
                }
                WorkspaceCommand::Untrust { slug } => {
                    let ws = find_workspace(&store, &slug).await?;
                    if store.delete_workspace_issuer(&ws.id).await? {
                        println!("workspace {} is back on this server's own authorization server", ws.slug);
                    } else {
                        println!("workspace {} already uses this server's own authorization server", ws.slug);
                    }
                }
            }
            Ok(())
        }
        Command::Token(cmd) => {
            let (store, _, _) = app::open(&settings).await?;
            match cmd {
                TokenCommand::Create { workspace, scope, expires, name } => {
                    let ttl = parse_duration(&expires).map_err(|e| anyhow::anyhow!("--expires: {e}"))?;
                    let (token, row) = oauth::machine::create(&store, &clock, &workspace, &scope, ttl, &name).await?;
                    eprintln!(
                        "machine token {} for {} ({}), expires in {}d; shown once:",
                        row.id,
                        workspace,
                        row.scope,
                        ttl / 86_400
                    );
                    println!("{token}");
                }
                TokenCommand::Revoke { id } => {
                    if store.revoke_machine_token(&id, clock.now()).await? {
                        println!("revoked {id}");
                    } else {
                        anyhow::bail!("no live machine token with id {id}");
                    }
                }
            }
            Ok(())
        }
        Command::Upstream(UpstreamCommand::Connect(args)) => connect_command(&settings, args).await,
        Command::Upstream(cmd) => {
            let (store, sealer, _) = app::open(&settings).await?;
            match cmd {
                UpstreamCommand::Add { slug, name, url, command, builtin: _, headers } => {
                    let ws = find_workspace(&store, &slug).await?;
                    let spec = match (url, command) {
                        (Some(url), _) => UpstreamSpec::Http {
                            url,
                            headers: headers.iter().map(|h| registry::parse_header(h)).collect::<Result<_, _>>()?,
                        },
                        (None, Some(command)) => registry::parse_command(&command)?,
                        (None, None) => UpstreamSpec::Demo,
                    };
                    registry::add(&store, &sealer, &clock, &ws.id, &name, &spec).await?;
                    println!("added upstream {name} to {slug}");
                }
                UpstreamCommand::List { slug } => {
                    let ws = find_workspace(&store, &slug).await?;
                    for upstream in registry::list(&store, &sealer, &ws.id).await? {
                        let name = &upstream.name;
                        match upstream.spec {
                            UpstreamSpec::Http { url, headers } => {
                                let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
                                println!(
                                    "{name}\thttp\t{url}\theaders: {}",
                                    if names.is_empty() { "-".into() } else { names.join(", ") }
                                );
                            }
                            UpstreamSpec::Stdio { command, args } => {
                                let argv = std::iter::once(&command).chain(&args);
                                println!("{name}\tstdio\t{}", shell_words::join(argv));
                            }
                            UpstreamSpec::Demo => println!("{name}\tdemo"),
                        }
                    }
                }
                UpstreamCommand::Connect(_) => unreachable_connect()?,
                UpstreamCommand::SignIn(args) => sign_in_command(&settings, &store, sealer, args).await?,
                UpstreamCommand::Remove { slug, name } => {
                    let ws = find_workspace(&store, &slug).await?;
                    if !store.delete_upstream(&ws.id, &name).await? {
                        anyhow::bail!("workspace {slug} has no upstream {name}");
                    }
                    println!("removed upstream {name} from {slug}");
                }
            }
            Ok(())
        }
        Command::Keys(KeysCommand::RotateMaster) => rotate_master(&settings, &clock).await,
        Command::Client(cmd) => {
            let (store, _, _) = app::open(&settings).await?;
            client_command(&store, &clock, cmd).await
        }
    }
}

async fn client_command(store: &Store, clock: &dyn Clock, cmd: ClientCommand) -> anyhow::Result<()> {
    match cmd {
        ClientCommand::Add { name, workspace: Some(workspace), scope, .. } => {
            let scope = scope.as_deref().unwrap_or("mcp:read mcp:tools");
            let (client_id, secret) =
                preregistered::create_machine_client(store, clock, &workspace, &name, scope).await?;
            println!("client_id: {client_id}");
            println!("client_secret: {secret}  (shown once)");
        }
        ClientCommand::Add { name, workspace: None, redirect_uris, public, scope } => {
            let spec = preregistered::AuthorizationCodeClient {
                name: &name,
                redirect_uris: &redirect_uris,
                public,
                scope: scope.as_deref(),
                workspace_id: None,
            };
            let created = preregistered::create_authorization_code_client(store, clock, &spec).await?;
            println!("client_id: {}", created.client_id);
            match created.client_secret {
                Some(secret) => println!("client_secret: {secret}  (shown once)"),
                None => println!("public client: no secret (the app uses PKCE)"),
            }
        }
        ClientCommand::List { source } => {
            let clients = store.list_clients(source.as_deref()).await?;
            if clients.is_empty() {
                eprintln!("no clients");
            }
            for c in clients {
                let reach = match &c.workspace_id {
                    Some(_) => "client_credentials".to_owned(),
                    None => c.redirect_uri_list().join(" "),
                };
                let used =
                    c.last_used_at.map_or_else(|| "never used".to_owned(), |t| format!("last used {}", ago(clock, t)));
                let kind = if c.is_public() { "public" } else { "confidential" };
                println!("{}\t{}\t{}\t{kind}\t{used}\t{reach}", c.id, c.source, c.client_name);
            }
        }
        ClientCommand::Remove { client_id } => {
            if !store.delete_client(&client_id).await? {
                anyhow::bail!("no client {client_id}");
            }
            println!("removed client {client_id} and everything issued to it");
        }
    }
    Ok(())
}

/// "3d ago", "5m ago": coarse, for listings.
async fn rotate_master(settings: &Settings, clock: &dyn Clock) -> anyhow::Result<()> {
    use gatehouse::crypto::aead::Sealer;
    use gatehouse::crypto::master::MasterKey;
    let (store, _, _) = app::open(settings).await?;
    let (ring, _) = MasterKey::load_ring(settings.master_key.as_deref(), &settings.data_dir)?;
    let new = MasterKey::generate()?;
    let new_kid = new.kid().to_owned();
    let mut new_ring = vec![new];
    new_ring.extend(ring);
    if settings.master_key.is_some() {
        // Printed before anything is re-sealed, so it cannot be lost to a failure below.
        let joined: Vec<String> = new_ring.iter().map(MasterKey::encoded).collect();
        println!("set GATEHOUSE_MASTER_KEY to (new key first, then the earlier ones):\n{}", joined.join(","));
    } else {
        MasterKey::write_ring(&settings.data_dir, &new_ring)?;
    }
    let sealer = Sealer::with_ring(&new_ring)?;
    let done = gatehouse::vault::rotate::reseal_all(&store, &sealer, clock.now()).await?;
    println!(
        "master key rotated to {new_kid}: re-sealed {} signing keys, {} upstream header sets, {} upstream secrets, \
         {} upstream tokens, {} connections in progress, {} introspection secrets; restart running servers",
        done.signing_keys,
        done.upstream_headers,
        done.upstream_secrets,
        done.upstream_tokens,
        done.connect_states,
        done.issuer_secrets
    );
    Ok(())
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    if !settings.is_https() {
        tracing::warn!(public_url = %settings.public_url, "the public URL is http: fine on this machine, but put https in front before anyone else connects");
    }
    let running = app::start(settings, Arc::new(SystemClock), true).await?;
    print_banner(&running.state, running.first_run.as_ref());
    running.handle.await??;
    running.state.store.close().await;
    Ok(())
}

fn print_banner(state: &AppState, first_run: Option<&app::FirstRun>) {
    let url = &state.settings.public_url;
    println!("Gatehouse is running at {url}");
    println!("  MCP URL (paste into your MCP client): {}", state.mcp_url(workspace::DEFAULT_WORKSPACE));
    println!("  Sign in:                              {url}/login");
    if let Some(first) = first_run {
        println!("  Admin account:  {}", first.admin_email);
        println!(
            "  Password:       {}   (shown only this once; change it with `gatehouse user passwd {}`)",
            first.admin_password, first.admin_email
        );
    }
}
