//! The `starling` command line: run the server, check the config, migrate the
//! database, manage accounts, describe the modules, and act on the running server
//! through its admin socket (`status`, `sessions`, `announce`, `reload`, `shutdown`;
//! the `user` commands go through it too when the server runs, so that deleting or
//! disabling an account ends its sessions).
//!
//! Exit codes: 0 success, 1 failure (the message says why), 2 bad usage (clap),
//! 3 the server is not running (for the commands that need it).

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

use crate::admin_socket::{AdminRequest, AdminSocketError};
use crate::auth::{self, account_jid};
use crate::config::Config;
use crate::storage::accounts;

/// Starling XMPP server.
#[derive(Debug, Parser)]
#[command(name = "starling", version, about)]
pub struct Cli {
    /// Configuration file [default: $STARLING_CONFIG, else conf/starling.toml, else /etc/starling/starling.toml]
    #[arg(short, long, global = true)]
    pub config: Option<PathBuf>,
    /// What to do [default: serve]
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Check the configuration file and report the first problem, naming the key.
    CheckConfig,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// List compiled-in modules, what they implement and what they register.
    Modules,
    /// Print the DOAP description of the server (doap.xml).
    Doap,
    /// Manage message archives (XEP-0313).
    #[command(subcommand)]
    Archive(ArchiveCommand),
    /// In-band registration (XEP-0077).
    #[command(subcommand)]
    Register(RegisterCommand),
    /// Invitations (XEP-0401, XEP-0379).
    #[command(subcommand)]
    Invite(InviteCommand),
    /// The running server: version, uptime, sessions per host.
    Status,
    /// The running server's sessions, one full JID per line with its presence.
    Sessions,
    /// Send a message to every online user of the running server.
    Announce {
        /// The text.
        text: String,
    },
    /// Make the running server read its configuration file again (as SIGHUP does)
    /// and say what was applied and what needs a restart.
    Reload,
    /// Stop the running server, after telling online users.
    Shutdown {
        /// Seconds to wait before stopping.
        #[arg(long, default_value_t = 0)]
        delay: u64,
        /// Told to every online user first.
        #[arg(long)]
        message: Option<String>,
    },
}

/// `starling invite …`
#[derive(Debug, Subcommand)]
pub enum InviteCommand {
    /// Create an invite and print its `xmpp:` URI and landing page URL: an account
    /// invite, or with --user a roster invite from that account.
    Create {
        /// The host the account is created on [default: the first host, or --user's].
        #[arg(long)]
        host: Option<String>,
        /// The inviting account: whoever uses the invite becomes its contact.
        #[arg(long)]
        user: Option<String>,
        /// How many times it can be used.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// How long it is valid, in hours.
        #[arg(long, default_value_t = 168)]
        valid_hours: u32,
    },
}

/// `starling register …`
#[derive(Debug, Subcommand)]
pub enum RegisterCommand {
    /// Issue an account invite token and print it (the token of `starling invite create`).
    Token {
        /// The host it is good for [default: the first host].
        #[arg(long)]
        host: Option<String>,
        /// How many registrations it allows.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// How long it is valid, in hours.
        #[arg(long, default_value_t = 168)]
        valid_hours: u32,
    },
}

/// `starling archive …`
#[derive(Debug, Subcommand)]
pub enum ArchiveCommand {
    /// Delete archived messages: one account's (--user) or every archive's (--all),
    /// all of them or only those older than --older-than-days.
    Purge {
        /// The account (or room) whose archive to purge, e.g. alice@example.org
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        user: Option<String>,
        /// Purge every archive.
        #[arg(long)]
        all: bool,
        /// Only messages archived more than this many days ago.
        #[arg(long)]
        older_than_days: Option<u32>,
    },
}

/// `starling user …`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account. The password comes from --password-file, else a prompt,
    /// else the first line of standard input.
    Add {
        /// The account, e.g. alice@example.org
        jid: String,
        /// Read the password from this file ("-" for standard input).
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Delete an account and everything stored for it.
    Del {
        /// The account.
        jid: String,
    },
    /// Change an account's password.
    Passwd {
        /// The account.
        jid: String,
        /// Read the password from this file ("-" for standard input).
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Create PREFIX<FIRST> … PREFIX<LAST>@HOST with one password, for load tests
    /// (the keys are derived once, so these accounts share a salt).
    AddRange {
        /// Localpart prefix, e.g. `u`.
        prefix: String,
        /// First number.
        first: u32,
        /// Last number.
        last: u32,
        /// The host.
        host: String,
        /// Read the password from this file ("-" for standard input).
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Disable an account: it cannot log in any more. (Sessions already open on a
    /// running server stay; the XEP-0133 disable-user command also ends them.)
    Disable {
        /// The account.
        jid: String,
    },
    /// Re-enable a disabled account.
    Enable {
        /// The account.
        jid: String,
    },
    /// List the accounts of a host (all hosts when omitted).
    List {
        /// The host.
        host: Option<String>,
    },
}

/// The request for a command only the running server can carry out.
fn server_request(command: &Command) -> anyhow::Result<Option<AdminRequest>> {
    Ok(Some(match command {
        Command::Status => AdminRequest::Status,
        Command::Sessions => AdminRequest::Sessions,
        Command::Announce { text } => AdminRequest::Announce { text: text.clone() },
        Command::Reload => AdminRequest::Reload,
        Command::Shutdown { delay, message } => {
            AdminRequest::Shutdown { delay_seconds: *delay, message: message.clone() }
        }
        _ => return Ok(None),
    }))
}

/// The request for an account command, which the running server carries out when
/// there is one (it also ends the sessions of deleted and disabled accounts).
fn account_request(config: &Config, command: &Command) -> anyhow::Result<Option<AdminRequest>> {
    let Command::User(user) = command else { return Ok(None) };
    if config.server.admin_socket.as_os_str().is_empty() || !config.server.admin_socket.exists() {
        return Ok(None);
    }
    // (A socket this user may not open is an error below, not a reason to bypass the
    // server by writing to the database.)
    let hosts = &config.server.hosts;
    Ok(Some(match user {
        UserCommand::Add { jid, password_file } => AdminRequest::UserAdd {
            jid: account_jid(jid, hosts)?.to_string(),
            password: read_password(password_file.as_deref())?,
        },
        UserCommand::Del { jid } => AdminRequest::UserDel { jid: account_jid(jid, hosts)?.to_string() },
        UserCommand::Passwd { jid, password_file } => AdminRequest::UserPasswd {
            jid: account_jid(jid, hosts)?.to_string(),
            password: read_password(password_file.as_deref())?,
        },
        UserCommand::Disable { jid } => {
            AdminRequest::UserDisable { jid: account_jid(jid, hosts)?.to_string(), disabled: true }
        }
        UserCommand::Enable { jid } => {
            AdminRequest::UserDisable { jid: account_jid(jid, hosts)?.to_string(), disabled: false }
        }
        UserCommand::AddRange { .. } | UserCommand::List { .. } => return Ok(None),
    }))
}

/// Sends `request` over the admin socket and prints the answer; a refusal is an error.
async fn send_to_server(config: &Config, request: &AdminRequest) -> anyhow::Result<()> {
    let path = &config.server.admin_socket;
    if path.as_os_str().is_empty() {
        bail!("[server] admin_socket is empty: the running server cannot be reached");
    }
    let response = crate::admin_socket::request(path, request).await?;
    if !response.ok {
        bail!("{}", response.text);
    }
    if !response.text.is_empty() {
        println!("{}", response.text);
    }
    Ok(())
}

/// The configuration file to use when `--config` is not given.
pub fn default_config_path() -> PathBuf {
    if let Some(path) = std::env::var_os("STARLING_CONFIG") {
        return PathBuf::from(path);
    }
    let local = PathBuf::from("conf/starling.toml");
    if local.exists() { local } else { PathBuf::from("/etc/starling/starling.toml") }
}

/// Now, in milliseconds since the Unix epoch (how the tables store times).
fn unix_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn read_password(file: Option<&Path>) -> anyhow::Result<String> {
    let password = match file {
        Some(path) if path == Path::new("-") => first_line(std::io::stdin().lock())?,
        Some(path) => {
            let file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
            first_line(std::io::BufReader::new(file))?
        }
        None if std::io::stdin().is_terminal() => {
            let first = rpassword::prompt_password("Password: ")?;
            let second = rpassword::prompt_password("Password again: ")?;
            if first != second {
                bail!("the passwords do not match");
            }
            first
        }
        None => first_line(std::io::stdin().lock())?,
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    Ok(password)
}

fn first_line(mut reader: impl BufRead) -> anyhow::Result<String> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Runs an account or maintenance command against the configured database.
pub async fn run_admin(config: &Config, command: &Command) -> anyhow::Result<()> {
    if let Some(request) = server_request(command)? {
        return send_to_server(config, &request).await;
    }
    if let Some(request) = account_request(config, command)? {
        match send_to_server(config, &request).await {
            Err(err) if matches!(err.downcast_ref::<AdminSocketError>(), Some(AdminSocketError::NotRunning(_))) => {}
            other => return other,
        }
    }
    let db = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || crate::server::open_database(&config)).await??
    };
    let hosts = &config.server.hosts;
    match command {
        Command::Migrate => println!("database is up to date"),
        Command::User(UserCommand::Add { jid, password_file }) => {
            let jid = account_jid(jid, hosts)?;
            let password = read_password(password_file.as_deref())?;
            auth::create_account(&db, &jid, &password).await?;
            println!("created {jid}");
        }
        Command::User(UserCommand::Del { jid }) => {
            let jid = account_jid(jid, hosts)?;
            let enabled: Vec<_> = config.modules.enabled.iter().filter_map(|name| crate::modules::find(name)).collect();
            auth::delete_account(&db, &jid, &enabled).await?;
            println!("deleted {jid}");
        }
        Command::User(UserCommand::Passwd { jid, password_file }) => {
            let jid = account_jid(jid, hosts)?;
            let password = read_password(password_file.as_deref())?;
            auth::set_password(&db, &jid, &password).await?;
            println!("password changed for {jid}");
        }
        Command::User(UserCommand::Disable { jid }) => {
            let jid = account_jid(jid, hosts)?;
            auth::set_disabled(&db, &jid, true).await?;
            println!("disabled {jid}");
        }
        Command::User(UserCommand::Enable { jid }) => {
            let jid = account_jid(jid, hosts)?;
            auth::set_disabled(&db, &jid, false).await?;
            println!("enabled {jid}");
        }
        Command::User(UserCommand::AddRange { prefix, first, last, host, password_file }) => {
            let password = read_password(password_file.as_deref())?;
            let probe = account_jid(&format!("{prefix}{first}@{host}"), hosts)?;
            let created =
                auth::create_account_range(&db, probe.domain().as_str(), prefix, *first..=*last, &password).await?;
            println!("created {created} accounts");
        }
        Command::User(UserCommand::List { host }) => {
            let selected: Vec<String> = match host {
                Some(host) if hosts.contains(host) => vec![host.clone()],
                Some(host) => bail!("{host} is not a host of this server"),
                None => hosts.clone(),
            };
            for host in selected {
                let listed = host.clone();
                let users = db.run(move |c| accounts::list(c, &listed)).await?;
                for user in users {
                    let flag = if user.disabled { " (disabled)" } else { "" };
                    println!("{}@{host}{flag}", user.username);
                }
            }
        }
        Command::Archive(ArchiveCommand::Purge { user, all: _, older_than_days }) => {
            if !config.modules.enabled.iter().any(|m| m == "mam") {
                bail!("the mam module is not enabled: there is no archive to purge");
            }
            let owner = match user {
                Some(user) => {
                    Some(starling_api::parse_bare_jid(user).map_err(|e| anyhow::anyhow!("{user}: {e}"))?.to_string())
                }
                None => None,
            };
            let before_us = older_than_days.map(|days| {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_micros() as i64)
                    .unwrap_or(0);
                now - i64::from(days) * 86_400_000_000
            });
            let target = owner.clone();
            let deleted = db.run(move |c| starling_mod_mam::purge(c, target.as_deref(), before_us)).await?;
            match owner {
                Some(owner) => println!("deleted {deleted} archived messages of {owner}"),
                None => println!("deleted {deleted} archived messages"),
            }
        }
        Command::Register(RegisterCommand::Token { host, uses, valid_hours }) => {
            if !config.modules.enabled.iter().any(|m| m == "register") {
                bail!("the register module is not enabled: invite tokens would not be accepted");
            }
            let host = match host {
                Some(host) if hosts.contains(host) => host.clone(),
                Some(host) => bail!("{host} is not a host of this server"),
                None => hosts.first().cloned().context("the config lists no hosts")?,
            };
            if *uses == 0 {
                bail!("--uses must be at least 1");
            }
            let now = unix_millis();
            let (uses, expires) = (*uses, now + i64::from(*valid_hours) * 3_600_000);
            let token = db.run(move |c| starling_mod_register::store::issue(c, &host, uses, now, expires)).await?;
            println!("{token}");
        }
        Command::Invite(InviteCommand::Create { host, user, uses, valid_hours }) => {
            use starling_mod_register::{invite, store};
            if !config.modules.enabled.iter().any(|m| m == "register") {
                bail!("the register module is not enabled: invites would not be accepted");
            }
            let creator = match user {
                Some(user) => {
                    let jid = account_jid(user, hosts)?;
                    let (h, u) = (jid.domain().to_string(), jid.node().map(|n| n.to_string()).unwrap_or_default());
                    if db.run(move |c| accounts::get(c, &h, &u)).await?.is_none() {
                        bail!("{jid}: no such account");
                    }
                    Some(jid)
                }
                None => None,
            };
            let host = match (host, &creator) {
                (Some(host), _) if hosts.contains(host) => host.clone(),
                (Some(host), _) => bail!("{host} is not a host of this server"),
                (None, Some(jid)) => jid.domain().to_string(),
                (None, None) => hosts.first().cloned().context("the config lists no hosts")?,
            };
            if *uses == 0 {
                bail!("--uses must be at least 1");
            }
            let now = unix_millis();
            let kind = if creator.is_some() { store::Kind::Roster } else { store::Kind::Register };
            let stored = store::Invite {
                host: host.clone(),
                creator: creator.map(|c| c.to_string()),
                kind,
                uses_left: i32::try_from(*uses).unwrap_or(i32::MAX),
                expires_at: now + i64::from(*valid_hours) * 3_600_000,
            };
            let (new, uses) = (stored.clone(), *uses);
            let token = db
                .run(move |c| {
                    store::create(
                        c,
                        &store::NewInvite {
                            host: &new.host,
                            creator: new.creator.as_deref(),
                            kind,
                            uses,
                            now_ms: now,
                            expires_at_ms: new.expires_at,
                        },
                    )
                })
                .await?;
            println!("{}", invite::uri(&stored, &token));
            if config.http.public_url.is_empty() {
                eprintln!("no landing page URL: set [http] public_url");
            } else {
                println!("{}", invite::landing_url_at(&config.http.public_url, &token));
            }
        }
        Command::Serve
        | Command::CheckConfig
        | Command::Modules
        | Command::Doap
        | Command::Status
        | Command::Sessions
        | Command::Announce { .. }
        | Command::Reload
        | Command::Shutdown { .. } => {}
    }
    Ok(())
}

/// Prints what `starling modules` shows.
pub fn print_modules(config: &Config) -> anyhow::Result<()> {
    for module in crate::modules::ALL {
        let enabled = if config.modules.enabled.iter().any(|m| m == module.name) { "enabled" } else { "available" };
        println!("{} ({enabled}): {}", module.name, module.summary);
        for spec in module.specs {
            println!("  implements {:?} {} ({})", spec.spec, spec.version, spec.status.as_doap());
        }
    }
    let registry = crate::server::start_modules(config)?;
    for (kind, scope, ns, name, module) in registry.all_iq_handlers() {
        println!("iq {kind:?} {scope:?} {{{ns}}}{name} -> {module}");
    }
    for (kind, ns, name, module) in registry.all_pre_auth_iq_handlers() {
        println!("iq {kind:?} before authentication {{{ns}}}{name} -> {module}");
    }
    for (scope, feature, module) in registry.all_features() {
        println!("feature {scope:?} {feature} -> {module}");
    }
    let mut components: Vec<_> = registry.components().collect();
    components.sort_by_key(|(domain, _)| *domain);
    for (domain, route) in components {
        println!("component {domain} -> {}", registry.modules()[route.module].name);
    }
    for (name, _, module) in registry.tasks() {
        println!("task {name} -> {}", module.name);
    }
    Ok(())
}
