//! The command line: every command, its arguments and their help (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use gatehouse::workspace::Role;

#[derive(Parser)]
#[command(name = "gatehouse", version, about = "OAuth 2.1 in front of MCP servers")]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Settings every command accepts; they override gatehouse.toml and GATEHOUSE_* variables.
#[derive(Args)]
pub struct Global {
    /// Settings file (default: ./gatehouse.toml if present) [env: GATEHOUSE_CONFIG]
    #[arg(long, global = true, env = "GATEHOUSE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080; env: GATEHOUSE_LISTEN]
    #[arg(long, global = true)]
    pub listen: Option<String>,
    /// URL clients use to reach this server: the OAuth issuer [default: http://<listen>; env: GATEHOUSE_PUBLIC_URL]
    #[arg(long, global = true)]
    pub public_url: Option<String>,
    /// Directory for the SQLite database and master key [default: ./gatehouse-data; env: GATEHOUSE_DATA_DIR]
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// postgres:// URL to use PostgreSQL instead of SQLite [env: GATEHOUSE_DATABASE_URL]
    #[arg(long, global = true)]
    pub database_url: Option<String>,
}

#[derive(Subcommand)]
pub enum Command {
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
pub enum KeysCommand {
    /// Make a new master key and re-seal everything under it (signing keys, upstream headers,
    /// secrets and tokens). The earlier key stays readable (kept after the new one in the key
    /// file); restart running servers afterwards so they seal under the new key.
    RotateMaster,
}

#[derive(Subcommand)]
pub enum UpstreamCommand {
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
pub struct ConnectArgs {
    /// Required: people connect their accounts on the pages; this is the no-person path.
    #[arg(long)]
    pub headless: bool,
    /// authorization_code (the authorization server must redirect back without a person) or
    /// client_credentials.
    #[arg(long, default_value = "authorization_code", value_parser = ["authorization_code", "client_credentials"])]
    pub grant: String,
    /// A client id registered with the authorization server beforehand (else CIMD or DCR).
    #[arg(long)]
    pub client_id: Option<String>,
    /// Read the client secret (with --client-id) from the first line of standard input.
    #[arg(long, requires = "client_id")]
    pub client_secret_stdin: bool,
    /// PEM private key for private_key_jwt (with --client-id).
    #[arg(long, requires = "client_id")]
    pub private_key_file: Option<PathBuf>,
    /// After listing, call this tool (no arguments) and print its text.
    #[arg(long)]
    pub call: Option<String>,
    #[arg(long, value_parser = ["none", "client_secret_basic", "client_secret_post", "private_key_jwt"])]
    pub auth_method: Option<String>,
    /// Our Client ID Metadata Document [default: <public URL>/oauth/upstream/client.json when https].
    #[arg(long)]
    pub client_metadata_url: Option<String>,
    /// The MCP server's URL.
    pub url: String,
}

#[derive(Args)]
pub struct SignInArgs {
    pub slug: String,
    pub name: String,
    /// client_credentials, authorization_code, or none (forget the settings and every token).
    #[arg(long, value_parser = ["client_credentials", "authorization_code", "none"])]
    pub grant: String,
    #[arg(long, required_if_eq_any = [("grant", "client_credentials"), ("grant", "authorization_code")])]
    pub token_endpoint: Option<String>,
    #[arg(long, required_if_eq("grant", "authorization_code"))]
    pub authorization_endpoint: Option<String>,
    #[arg(long)]
    pub issuer: Option<String>,
    #[arg(long, required_if_eq_any = [("grant", "client_credentials"), ("grant", "authorization_code")])]
    pub client_id: Option<String>,
    /// Read the client secret from the first line of standard input.
    #[arg(long)]
    pub client_secret_stdin: bool,
    /// PEM private key for private_key_jwt.
    #[arg(long)]
    pub private_key_file: Option<PathBuf>,
    /// How to authenticate at the token endpoint [default: client_secret_basic with a secret,
    /// private_key_jwt with a key, else none].
    #[arg(long, value_parser = ["none", "client_secret_basic", "client_secret_post", "private_key_jwt"])]
    pub auth_method: Option<String>,
    #[arg(long)]
    pub scope: Option<String>,
    /// RFC 8707 resource to ask for [default: the upstream's URL].
    #[arg(long, conflicts_with = "no_resource")]
    pub resource: Option<String>,
    /// Send no `resource` parameter (for servers that reject it).
    #[arg(long)]
    pub no_resource: bool,
    /// An `audience` parameter for servers that want one.
    #[arg(long)]
    pub audience: Option<String>,
}

#[derive(Subcommand)]
pub enum UserCommand {
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
pub enum WorkspaceCommand {
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
pub enum MemberCommand {
    /// Add a person to a workspace (or change their role).
    Add {
        slug: String,
        email: String,
        #[arg(long, default_value = "member")]
        role: Role,
    },
}

#[derive(Subcommand)]
pub enum TokenCommand {
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
pub enum ClientCommand {
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
