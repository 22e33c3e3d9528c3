//! Real XMPP servers from Debian as federation peers (installed by
//! `tests/interop/install-peers.sh`, which `.ci/run` calls): Prosody and ejabberd,
//! each started with its own configuration and data directory on free loopback
//! ports, never as the system service, and killed when the handle drops.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::dns::TestDns;

/// Whether the peer's program is installed; under CI its absence is a failure.
pub fn installed(program: &str) -> bool {
    let found = Path::new(program).exists();
    if !found {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{program} is missing (tests/interop/install-peers.sh)");
        eprintln!("skipping: {program} is not installed (run tests/interop/install-peers.sh)");
    }
    found
}

/// Whether slixmpp (tests/interop/requirements.txt) can be imported; under CI its
/// absence is a failure, not a skip.
pub fn slixmpp_available() -> bool {
    let found = std::process::Command::new("python3")
        .args(["-c", "import slixmpp"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "slixmpp is not installed (pip install -r tests/interop/requirements.txt)"
        );
        eprintln!("skipping: slixmpp is not installed (pip install -r tests/interop/requirements.txt)");
    }
    found
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// A self-signed certificate for `domain` and `*.domain`: (cert path, key path). It
/// expires in a year or two: ejabberd's certificate store crashes on rcgen's default
/// far-future expiry (its expiry timer overflows).
fn self_signed(dir: &Path, domain: &str) -> (PathBuf, PathBuf) {
    let mut params = rcgen::CertificateParams::new(vec![domain.to_owned(), format!("*.{domain}")]).expect("params");
    let years =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() / 31_556_952;
    let year = 1970 + i32::try_from(years).expect("year");
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + 2, 1, 1);
    let signing_key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&signing_key).expect("certificate");
    let (cert_path, key_path) = (dir.join(format!("{domain}.crt")), dir.join(format!("{domain}.key")));
    std::fs::write(&cert_path, cert.pem()).expect("write cert");
    std::fs::write(&key_path, signing_key.serialize_pem()).expect("write key");
    (cert_path, key_path)
}

async fn wait_for_port(child: &mut Child, port: u16, log: &Path, name: &str) {
    for _ in 0..600 {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{name} exited with {status}:\n{}", std::fs::read_to_string(log).unwrap_or_default());
        }
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name} did not listen on {port}:\n{}", std::fs::read_to_string(log).unwrap_or_default());
}

/// A temporary directory for a peer, kept after the test (and its path printed) when
/// `STARLING_KEEP_PEERS` is set, for reading the peer's logs.
fn state_dir(name: &str) -> tempfile::TempDir {
    let mut builder = tempfile::Builder::new();
    builder.prefix(name);
    if std::env::var_os("STARLING_KEEP_PEERS").is_some() {
        builder.disable_cleanup(true);
    }
    let dir = builder.tempdir().expect("dir");
    eprintln!("{name} state in {}", dir.path().display());
    dir
}

/// A running peer server.
pub struct Peer {
    /// Its XMPP domain.
    pub domain: String,
    /// Client connections (STARTTLS).
    pub c2s: SocketAddr,
    /// Server connections (STARTTLS).
    pub s2s: SocketAddr,
    /// Its state directory (configuration, data, logs).
    pub dir: tempfile::TempDir,
    log: PathBuf,
    _child: Child,
}

impl Peer {
    /// The peer's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Prosody 0.12 serving `domain`, resolving through `dns` (libunbound `forward`), with
/// accounts in plain internal storage and dialback allowed for self-signed peers.
pub async fn prosody(domain: &str, dns: &TestDns, users: &[&str]) -> Peer {
    let dir = state_dir("prosody");
    let (c2s, s2s) = (free_port(), free_port());
    let (cert, key) = self_signed(dir.path(), domain);
    let data = dir.path().join("data");
    let accounts = data.join(domain.replace('.', "%2e")).join("accounts");
    std::fs::create_dir_all(&accounts).expect("accounts dir");
    for user in users {
        std::fs::write(accounts.join(format!("{user}.dat")), "return {\n\t[\"password\"] = \"pw\";\n};\n")
            .expect("account");
    }
    let log = dir.path().join("prosody.log");
    let config = dir.path().join("prosody.cfg.lua");
    std::fs::write(
        &config,
        format!(
            r#"run_as_root = true
pidfile = "{dir}/prosody.pid"
data_path = "{data}"
log = {{ {level} = "{log}" }}
interfaces = {{ "127.0.0.1" }}
local_interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s} }}
s2s_ports = {{ {s2s} }}
c2s_direct_tls_ports = {{ }}
s2s_direct_tls_ports = {{ }}
legacy_ssl_ports = {{ }}
component_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
modules_enabled = {{ "roster"; "saslauth"; "tls"; "dialback"; "disco"; "ping"; "presence"; "message" }}
authentication = "internal_plain"
storage = "internal"
c2s_require_encryption = true
s2s_require_encryption = true
s2s_secure_auth = false
-- libunbound refuses loopback forwarders and answers `test.` itself unless told.
unbound = {{ forward = {{ "127.0.0.1@{dns_port}" }}; resolvconf = false; hoststxt = false;
  options = {{ ["do-not-query-localhost:"] = "no"; ["local-zone:"] = "test. transparent" }} }}
ssl = {{ certificate = "{cert}"; key = "{key}" }}
VirtualHost "{domain}"
"#,
            dir = dir.path().display(),
            data = data.display(),
            log = log.display(),
            level = if std::env::var_os("STARLING_KEEP_PEERS").is_some() { "debug" } else { "info" },
            dns_port = dns.addr.port(),
            cert = cert.display(),
            key = key.display(),
        ),
    )
    .expect("config");
    let console = std::fs::File::create(dir.path().join("console.log")).expect("console log");
    let mut child = Command::new("prosody")
        .args(["-F", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(console.try_clone().expect("console"))
        .stderr(console)
        .kill_on_drop(true)
        .spawn()
        .expect("prosody starts");
    wait_for_port(&mut child, c2s, &log, "prosody").await;
    dns.server(domain, s2s, None);
    Peer {
        domain: domain.to_owned(),
        c2s: SocketAddr::from(([127, 0, 0, 1], c2s)),
        s2s: SocketAddr::from(([127, 0, 0, 1], s2s)),
        dir,
        log,
        _child: child,
    }
}

/// ejabberd 23.01 serving `domain` as a plain `erl` node (Erlang distribution on a
/// fixed port, no epmd), resolving through `dns` (an `inetrc` nameserver), with
/// in-band registration open for the test's accounts.
pub async fn ejabberd(domain: &str, dns: &TestDns) -> Peer {
    let dir = state_dir("ejabberd");
    let (c2s, s2s, dist) = (free_port(), free_port(), free_port());
    let (cert, key) = self_signed(dir.path(), domain);
    let pem = dir.path().join(format!("{domain}.pem"));
    let combined =
        format!("{}{}", std::fs::read_to_string(&cert).expect("cert"), std::fs::read_to_string(&key).expect("key"));
    std::fs::write(&pem, combined).expect("pem");
    let spool = dir.path().join("spool");
    let logs = dir.path().join("log");
    std::fs::create_dir_all(&spool).expect("spool");
    std::fs::create_dir_all(&logs).expect("logs");
    let config = dir.path().join("ejabberd.yml");
    std::fs::write(
        &config,
        format!(
            r#"loglevel: info
log_rotate_count: 0
hosts:
  - "{domain}"
certfiles:
  - "{pem}"
acme:
  auto: false
default_db: mnesia
auth_method: internal
auth_password_format: plain
registration_timeout: infinity
s2s_use_starttls: required
s2s_dns_timeout: 2
s2s_dns_retries: 1
listen:
  -
    port: {c2s}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls_required: true
    shaper: none
  -
    port: {s2s}
    ip: "127.0.0.1"
    module: ejabberd_s2s_in
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
  register:
    allow: all
  s2s:
    allow: all
shaper_rules:
  c2s_shaper: none
modules:
  mod_disco: {{}}
  mod_ping: {{}}
  mod_roster: {{}}
  mod_s2s_dialback: {{}}
  mod_register:
    access: register
    ip_access: all
"#,
            pem = pem.display(),
        ),
    )
    .expect("config");
    let inetrc = dir.path().join("inetrc");
    std::fs::write(
        &inetrc,
        format!(
            // resolv_conf "" keeps Erlang from reloading /etc/resolv.conf over this
            // nameserver at the first lookup (and from querying the system's resolver).
            "{{lookup,[file,dns]}}.\n{{resolv_conf,\"\"}}.\n{{hosts_file,\"\"}}.\n{{host,{{127,0,0,1}},[\"localhost\"]}}.\n{{nameserver,{{127,0,0,1}},{}}}.\n",
            dns.addr.port()
        ),
    )
    .expect("inetrc");
    let log = logs.join("ejabberd.log");
    let console = std::fs::File::create(logs.join("console.log")).expect("console log");
    let node = format!("starling{dist}@localhost");
    let mut child = Command::new("erl")
        .args(["-sname", &node, "-noinput", "-setcookie", "starling-test"])
        .args(["-erl_epmd_port", &dist.to_string(), "-start_epmd", "false"])
        .args(["-kernel", "inet_dist_use_interface", "{127,0,0,1}"])
        .args(["-mnesia", "dir", &format!("\"{}\"", spool.display())])
        .args(["-ejabberd", "log_rotate_count", "0", "-s", "ejabberd"])
        .env("EJABBERD_CONFIG_PATH", &config)
        .env("EJABBERD_LOG_PATH", &log)
        .env("ERL_INETRC", &inetrc)
        .env("ERL_LIBS", "/usr/lib/x86_64-linux-gnu")
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(console.try_clone().expect("console"))
        .stderr(console)
        .kill_on_drop(true)
        .spawn()
        .expect("erl starts");
    wait_for_port(&mut child, c2s, &log, "ejabberd").await;
    dns.server(domain, s2s, None);
    Peer {
        domain: domain.to_owned(),
        c2s: SocketAddr::from(([127, 0, 0, 1], c2s)),
        s2s: SocketAddr::from(([127, 0, 0, 1], s2s)),
        dir,
        log,
        _child: child,
    }
}
