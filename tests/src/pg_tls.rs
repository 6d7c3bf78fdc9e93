//! A private PostgreSQL cluster per test that accepts only TLS on
//! 127.0.0.1, with its own CA and a server certificate for `127.0.0.1` and
//! `localhost` (made with the `openssl` command).
//!
//! It runs from the newest server under `/usr/lib/postgresql/*/bin`
//! (`scripts/deps.sh` installs one). PostgreSQL refuses to run as root, so
//! as root the cluster belongs to user `postgres` and its programs run
//! through `runuser -u postgres --`. Stopped (`pg_ctl stop -m immediate`)
//! when dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A role that logs in with a password (scram) on the private cluster, once
/// a test has created it; every other role is trusted.
pub const PASSWORD_USER: &str = "mqtt_pw";

/// A running private cluster: TLS only, trust authentication, user and
/// database `postgres`.
pub struct TlsPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_postgres: bool,
    port: u16,
    started_in: Duration,
}

impl TlsPostgres {
    /// Makes the certificates, runs initdb and starts the server; panics
    /// with the server's log when it does not come up.
    pub fn start() -> TlsPostgres {
        let began = Instant::now();
        let bin = server_bin();
        let as_postgres = running_as_root();
        let dir = tempfile::Builder::new().prefix("pgtls").tempdir().unwrap();
        let root = dir.path();
        make_ca(root, "ca");
        make_server_cert(root, "ca");
        if as_postgres {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(root));
        }
        let mut pg = TlsPostgres {
            dir,
            bin,
            as_postgres,
            port: 0,
            started_in: Duration::ZERO,
        };
        pg.initdb();
        pg.launch();
        pg.started_in = began.elapsed();
        if std::env::var_os("TEST_LOG").is_some() {
            eprintln!(
                "[pg_tls] TLS-only PostgreSQL on 127.0.0.1:{} ready in {:.2} s",
                pg.port,
                pg.started_in.as_secs_f64()
            );
        }
        pg
    }

    fn initdb(&self) {
        let data = self.data_dir();
        let out = self
            .pg_command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync")
            .output()
            .unwrap();
        assert_ok("initdb", &out);
        // The role PASSWORD_USER (created by a test) must give a password.
        let hba = format!(
            "# Written by the test kit: TLS or nothing on 127.0.0.1.\n\
             local     all all                trust\n\
             hostssl   all {PASSWORD_USER} 127.0.0.1/32 scram-sha-256\n\
             hostssl   all all 127.0.0.1/32   trust\n\
             hostnossl all all 127.0.0.1/32   reject\n"
        );
        std::fs::write(data.join("pg_hba.conf"), hba).unwrap();
    }

    fn launch(&mut self) {
        let root = self.dir.path();
        // A free port can be taken between the check and the bind: retry.
        for _ in 0..5 {
            self.port = crate::free_port();
            let options = format!(
                "-c port={port} -c listen_addresses=127.0.0.1 \
                 -c unix_socket_directories={root} -c ssl=on \
                 -c ssl_cert_file={root}/server.pem -c ssl_key_file={root}/server.key \
                 -c fsync=off -c full_page_writes=off -c synchronous_commit=off \
                 -c shared_buffers=16MB -c max_connections=40",
                port = self.port,
                root = root.display(),
            );
            let out = self
                .pg_command("pg_ctl")
                .arg("start")
                .arg("-D")
                .arg(self.data_dir())
                .arg("-l")
                .arg(self.log_path())
                .args(["-w", "-t", "30", "-o", &options])
                .output()
                .unwrap();
            if out.status.success() {
                return;
            }
            if !self.log().contains("could not bind") {
                panic!(
                    "PostgreSQL did not start:\n{}\n{}\nlog:\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr),
                    self.log()
                );
            }
        }
        panic!("PostgreSQL found no free port:\n{}", self.log());
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA that signed the server's certificate (`sslrootcert=`).
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A CA that signed nothing this server presents: verification against
    /// it must fail. Made on first use.
    pub fn other_ca_path(&self) -> PathBuf {
        let path = self.dir.path().join("other-ca.pem");
        if !path.exists() {
            make_ca(self.dir.path(), "other-ca");
        }
        path
    }

    /// `postgres://postgres@HOST:PORT/postgres?QUERY` (no `?` when empty).
    pub fn url(&self, host: &str, query: &str) -> String {
        let base = format!("postgres://postgres@{host}:{}/postgres", self.port);
        if query.is_empty() {
            base
        } else {
            format!("{base}?{query}")
        }
    }

    /// From the first openssl call to the server accepting connections.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// A PostgreSQL program, as `postgres` when we are root.
    fn pg_command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        // pg_ctl's server inherits these: keep its output in the log file.
        cmd.stdin(Stdio::null()).env("LC_ALL", "C");
        cmd
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let _ = self
            .pg_command("pg_ctl")
            .arg("stop")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "-w", "-t", "10"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The newest server's bin directory under /usr/lib/postgresql.
fn server_bin() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").exists() && bin.join("pg_ctl").exists()).then_some((version, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, bin)| bin)
        .expect("no PostgreSQL server under /usr/lib/postgresql/*/bin: run scripts/deps.sh")
}

fn running_as_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// `NAME.pem` and `NAME.key` in `dir`: a self-signed P-256 CA.
pub fn make_ca(dir: &Path, name: &str) {
    run(Command::new("openssl")
        .current_dir(dir)
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args([
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ])
        .args(["-subj", &format!("/CN=mqtt-supervisor test {name}")])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]));
}

/// `server.pem` and `server.key` in `dir`, signed by the CA `ca`, for
/// 127.0.0.1 and localhost.
fn make_server_cert(dir: &Path, ca: &str) {
    run(Command::new("openssl")
        .current_dir(dir)
        .args(["req", "-new", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes"])
        .args(["-keyout", "server.key", "-out", "server.csr"])
        .args(["-subj", "/CN=localhost"]));
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName = IP:127.0.0.1, DNS:localhost\n\
         basicConstraints = critical, CA:FALSE\n\
         keyUsage = critical, digitalSignature, keyEncipherment\n\
         extendedKeyUsage = serverAuth\n",
    )
    .unwrap();
    run(Command::new("openssl")
        .current_dir(dir)
        .args(["x509", "-req", "-in", "server.csr", "-days", "2"])
        .args(["-CA", &format!("{ca}.pem"), "-CAkey", &format!("{ca}.key")])
        .args([
            "-set_serial",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ]));
    // The server refuses a key that others can read.
    run(Command::new("chmod")
        .current_dir(dir)
        .args(["600", "server.key"]));
}

fn run(cmd: &mut Command) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/deps.sh installs openssl)"));
    assert_ok(&format!("{cmd:?}"), &out);
}

fn assert_ok(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
