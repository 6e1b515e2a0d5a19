//! The `gatehouse` command: argument parsing and wiring only; the work lives in the library.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use gatehouse::app::{self, AppState};
use gatehouse::clock::{Clock, SystemClock};
use gatehouse::config::{FlagSettings, Settings, parse_duration};
use gatehouse::gateway::registry;
use gatehouse::gateway::upstream::UpstreamSpec;
use gatehouse::oauth::preregistered;
use gatehouse::resource::external::{self, TrustRequest};
use gatehouse::store::Store;
use gatehouse::workspace::{self, Role};
use gatehouse::{identity, oauth};

#[derive(Parser)]
#[command(name = "gatehouse", version, about = "OAuth 2.1 in front of MCP servers")]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Settings every command accepts; they override gatehouse.toml and GATEHOUSE_* variables.
#[derive(Args)]
struct Global {
    /// Settings file (default: ./gatehouse.toml if present) [env: GATEHOUSE_CONFIG]
    #[arg(long, global = true, env = "GATEHOUSE_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080; env: GATEHOUSE_LISTEN]
    #[arg(long, global = true)]
    listen: Option<String>,
    /// URL clients use to reach this server: the OAuth issuer [default: http://<listen>; env: GATEHOUSE_PUBLIC_URL]
    #[arg(long, global = true)]
    public_url: Option<String>,
    /// Directory for the SQLite database and master key [default: ./gatehouse-data; env: GATEHOUSE_DATA_DIR]
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// postgres:// URL to use PostgreSQL instead of SQLite [env: GATEHOUSE_DATABASE_URL]
    #[arg(long, global = true)]
    database_url: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (creates the database, keys and an admin account on first run).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage people.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage workspaces and their members.
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// Machine tokens for headless use.
    #[command(subcommand)]
    Token(TokenCommand),
    /// OAuth clients created by an operator.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Upstream MCP servers of a workspace.
    #[command(subcommand)]
    Upstream(UpstreamCommand),
    /// Keys: the master key everything at rest is sealed under.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make a new master key and re-seal everything under it (signing keys, upstream headers,
    /// secrets and tokens). The earlier key stays readable (kept after the new one in the key
    /// file); restart running servers afterwards so they seal under the new key.
    RotateMaster,
}

#[derive(Subcommand)]
enum UpstreamCommand {
    /// Add an upstream: a Streamable HTTP URL, a stdio command, or the built-in demo server.
    #[command(group(clap::ArgGroup::new("kind").required(true).args(["url", "command", "builtin"])))]
    Add {
        slug: String,
        name: String,
        #[arg(long)]
        url: Option<String>,
        /// Program and arguments, shell-quoted: --command "npx -y @scope/server"
        #[arg(long)]
        command: Option<String>,
        #[arg(long, value_parser = ["demo"])]
        builtin: Option<String>,
        /// A header sent to an HTTP upstream on every request, e.g. "Authorization: Bearer ..." (repeatable).
        #[arg(long = "header", requires = "url")]
        headers: Vec<String>,
    },
    /// List a workspace's upstreams (header values are not shown).
    List { slug: String },
    /// Set how the gateway signs in to an HTTP upstream with OAuth: client_credentials (one
    /// token shared by the workspace) or authorization_code (each person connects their
    /// account). The secret is read from standard input, never from the command line.
    SignIn(SignInArgs),
    /// Connect to an MCP server as the gateway would, completing an authorization that needs
    /// no person (for scripts and tests), list its tools and exit.
    Connect(ConnectArgs),
    /// Remove an upstream.
    Remove { slug: String, name: String },
}

#[derive(Args)]
struct ConnectArgs {
    /// Required: people connect their accounts on the pages; this is the no-person path.
    #[arg(long)]
    headless: bool,
    /// authorization_code (the authorization server must redirect back without a person) or
    /// client_credentials.
    #[arg(long, default_value = "authorization_code", value_parser = ["authorization_code", "client_credentials"])]
    grant: String,
    /// A client id registered with the authorization server beforehand (else CIMD or DCR).
    #[arg(long)]
    client_id: Option<String>,
    /// Read the client secret (with --client-id) from the first line of standard input.
    #[arg(long, requires = "client_id")]
    client_secret_stdin: bool,
    /// PEM private key for private_key_jwt (with --client-id).
    #[arg(long, requires = "client_id")]
    private_key_file: Option<PathBuf>,
    /// After listing, call this tool (no arguments) and print its text.
    #[arg(long)]
    call: Option<String>,
    #[arg(long, value_parser = ["none", "client_secret_basic", "client_secret_post", "private_key_jwt"])]
    auth_method: Option<String>,
    /// Our Client ID Metadata Document [default: <public URL>/oauth/upstream/client.json when https].
    #[arg(long)]
    client_metadata_url: Option<String>,
    /// The MCP server's URL.
    url: String,
}

#[derive(Args)]
struct SignInArgs {
    slug: String,
    name: String,
    /// client_credentials, authorization_code, or none (forget the settings and every token).
    #[arg(long, value_parser = ["client_credentials", "authorization_code", "none"])]
    grant: String,
    #[arg(long, required_if_eq_any = [("grant", "client_credentials"), ("grant", "authorization_code")])]
    token_endpoint: Option<String>,
    #[arg(long, required_if_eq("grant", "authorization_code"))]
    authorization_endpoint: Option<String>,
    #[arg(long)]
    issuer: Option<String>,
    #[arg(long, required_if_eq_any = [("grant", "client_credentials"), ("grant", "authorization_code")])]
    client_id: Option<String>,
    /// Read the client secret from the first line of standard input.
    #[arg(long)]
    client_secret_stdin: bool,
    /// PEM private key for private_key_jwt.
    #[arg(long)]
    private_key_file: Option<PathBuf>,
    /// How to authenticate at the token endpoint [default: client_secret_basic with a secret,
    /// private_key_jwt with a key, else none].
    #[arg(long, value_parser = ["none", "client_secret_basic", "client_secret_post", "private_key_jwt"])]
    auth_method: Option<String>,
    #[arg(long)]
    scope: Option<String>,
    /// RFC 8707 resource to ask for [default: the upstream's URL].
    #[arg(long, conflicts_with = "no_resource")]
    resource: Option<String>,
    /// Send no `resource` parameter (for servers that reject it).
    #[arg(long)]
    no_resource: bool,
    /// An `audience` parameter for servers that want one.
    #[arg(long)]
    audience: Option<String>,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a local account (prints a generated password unless --password-stdin).
    Add {
        email: String,
        #[arg(long)]
        admin: bool,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a new password (prints a generated one unless --password-stdin).
    Passwd {
        email: String,
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Subcommand)]
enum WorkspaceCommand {
    /// Create a workspace.
    Add {
        slug: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// Manage members.
    #[command(subcommand)]
    Member(MemberCommand),
    /// Trust an external authorization server (Auth0, Okta, Keycloak, Entra…) for this
    /// workspace instead of the built-in one: its MCP endpoint then accepts that issuer's
    /// tokens and this server issues none for it (machine tokens keep working).
    Trust {
        slug: String,
        /// The issuer, exactly as its tokens' `iss` (https).
        #[arg(long)]
        issuer: String,
        /// Accept this `aud` instead of the workspace MCP URL (for providers without RFC 8707
        /// resource indicators: an Auth0 API identifier, an Entra application ID URI).
        #[arg(long)]
        audience: Option<String>,
        /// `provider-scope=workspace-scope [workspace-scope…]`, repeatable. Without any, the
        /// token's `scope`/`scp` values are taken as workspace scopes.
        #[arg(long = "scope-map")]
        scope_map: Vec<String>,
        /// For opaque tokens: this gateway's client id at the issuer for RFC 7662 introspection.
        #[arg(long)]
        introspection_client_id: Option<String>,
        /// Read the introspection client secret from the first line of standard input.
        #[arg(long, requires = "introspection_client_id")]
        introspection_secret_stdin: bool,
        /// Introspection endpoint, if the discovery document names none.
        #[arg(long, requires = "introspection_client_id")]
        introspection_endpoint: Option<String>,
    },
    /// Go back to the built-in authorization server.
    Untrust { slug: String },
}

#[derive(Subcommand)]
enum MemberCommand {
    /// Add a person to a workspace (or change their role).
    Add {
        slug: String,
        email: String,
        #[arg(long, default_value = "member")]
        role: Role,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a machine token and print it once.
    Create {
        #[arg(long)]
        workspace: String,
        #[arg(long)]
        scope: String,
        /// Lifetime such as 90d, 12h (at most 365d).
        #[arg(long, default_value = "90d")]
        expires: String,
        #[arg(long, default_value = "machine token")]
        name: String,
    },
    /// Revoke a machine token by id.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Create a client and print its id (and secret, once). With --redirect-uri: an
    /// authorization-code client for an app people sign in to (confidential unless --public).
    /// With --workspace: a confidential client_credentials client acting in that workspace.
    #[command(group(clap::ArgGroup::new("kind").required(true).args(["workspace", "redirect_uris"])))]
    Add {
        #[arg(long)]
        name: String,
        /// Workspace of a client_credentials client.
        #[arg(long, conflicts_with_all = ["redirect_uris", "public"])]
        workspace: Option<String>,
        /// Redirect URI of an authorization-code client (repeatable).
        #[arg(long = "redirect-uri", value_name = "URI")]
        redirect_uris: Vec<String>,
        /// A public client (native or browser app): no secret, PKCE only.
        #[arg(long, requires = "redirect_uris")]
        public: bool,
        /// Scopes the client may have [client_credentials default: "mcp:read mcp:tools";
        /// authorization-code default: whatever the person consents to].
        #[arg(long)]
        scope: Option<String>,
    },
    /// List OAuth clients (newest first), optionally only those from one source.
    List {
        #[arg(long, value_parser = ["dynamic", "admin", "metadata_document"])]
        source: Option<String>,
    },
    /// Remove a client and everything issued to it (consents, grants, refresh tokens); its next
    /// request is answered invalid_client, so MCP clients register again.
    Remove { client_id: String },
}

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

fn unreachable_connect() -> anyhow::Result<()> {
    anyhow::bail!("upstream connect is handled before the database is opened")
}

async fn connect_command(settings: &Settings, args: ConnectArgs) -> anyhow::Result<()> {
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

async fn sign_in_command(
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

fn ago(clock: &dyn Clock, then: i64) -> String {
    let secs = (clock.now() - then).max(0);
    match secs {
        s if s >= 86_400 => format!("{}d ago", s / 86_400),
        s if s >= 3_600 => format!("{}h ago", s / 3_600),
        s if s >= 60 => format!("{}m ago", s / 60),
        s => format!("{s}s ago"),
    }
}

async fn find_user(store: &Store, email: &str) -> anyhow::Result<gatehouse::store::UserRow> {
    let email = identity::normalize_email(email).map_err(anyhow::Error::msg)?;
    store
        .user_by_email(&email)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no user {email}; create one with `gatehouse user add {email}`"))
}

async fn find_workspace(store: &Store, slug: &str) -> anyhow::Result<gatehouse::store::WorkspaceRow> {
    store
        .workspace_by_slug(slug)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no workspace `{slug}`; create it with `gatehouse workspace add {slug}`"))
}

/// The password from stdin's first line, or a generated one.
fn password_from(stdin: bool) -> anyhow::Result<(String, bool)> {
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
