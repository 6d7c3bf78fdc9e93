//! A private amqtt broker (Python, MQTT 3.1.1 only) on a free loopback
//! port, with its own YAML config and log in a temporary directory.
//!
//! amqtt comes from PyPI (`amqtt==0.12.1`) in a virtual environment that
//! `scripts/deps.sh` creates at `target/brokers-venv`; `MQTT_TEST_AMQTT`
//! names another `amqtt` executable (the `python` next to it must be the
//! interpreter it runs under: it hashes passwords). The broker is started
//! per test and killed, with its process group, when the [`Amqtt`] drops.
//!
//! amqtt behaves unlike Mosquitto in ways a test may rely on; `facts.rs`
//! checks them (takeover, Will, retained messages, refusals, ACL).

#[cfg(test)]
mod facts;

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The pinned amqtt release `scripts/deps.sh` installs.
pub const AMQTT_VERSION: &str = "0.12.1";

/// A running private amqtt broker; dropping it kills it.
pub struct Amqtt {
    port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

/// A user of [`Amqtt::start_with_users`]: login and topic allow-lists.
pub struct AmqttUser<'a> {
    /// User name.
    pub user: &'a str,
    /// Password.
    pub password: &'a str,
    /// Filters it may subscribe to.
    pub subscribe: &'a [&'a str],
    /// Topics it may publish to.
    pub publish: &'a [&'a str],
}

impl Amqtt {
    /// Anonymous access allowed.
    pub async fn start() -> Amqtt {
        let plugins =
            "  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymous: true\n";
        Amqtt::start_in(tempfile::tempdir().unwrap(), plugins).await
    }

    /// One user with a password; anonymous access refused (CONNACK
    /// 0x05, not authorized).
    pub async fn start_with_user(user: &str, password: &str) -> Amqtt {
        let dir = tempfile::tempdir().unwrap();
        let plugins = password_plugin(dir.path(), user, password);
        Amqtt::start_in(dir, &plugins).await
    }

    /// Like [`Amqtt::start_with_user`], with amqtt's topic ACL: the user
    /// may subscribe only to filters that match one of `subscribe` and
    /// publish only to topics that match one of `publish` (allow-lists;
    /// every other topic is denied).
    ///
    /// A denied SUBSCRIBE gets SUBACK 0x80. A denied PUBLISH is acknowledged
    /// (PUBACK at QoS 1) and silently dropped; the connection stays open.
    pub async fn start_with_acl(
        user: &str,
        password: &str,
        subscribe: &[&str],
        publish: &[&str],
    ) -> Amqtt {
        Amqtt::start_with_users(&[AmqttUser {
            user,
            password,
            subscribe,
            publish,
        }])
        .await
    }

    /// Several users with passwords and topic allow-lists (see
    /// [`Amqtt::start_with_acl`]); anonymous access refused.
    pub async fn start_with_users(users: &[AmqttUser<'_>]) -> Amqtt {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("passwd");
        let lines: String = users
            .iter()
            .map(|u| format!("{}:{}\n", u.user, hash(u.password)))
            .collect();
        std::fs::write(&file, lines).unwrap();
        let mut plugins = format!(
            "  amqtt.plugins.authentication.FileAuthPlugin:\n    password_file: '{}'\n",
            file.display()
        );
        let list = |topics: &[&str]| {
            let quoted: Vec<String> = topics.iter().map(|t| format!("'{t}'")).collect();
            quoted.join(", ")
        };
        // `acl` is the SUBSCRIBE allow-list, `publish_acl` the PUBLISH one.
        // Both are always set: with `acl` unset amqtt 0.12 denies every
        // SUBSCRIBE (its default is an empty map, not "no ACL").
        let (mut acl, mut publish_acl) = (String::new(), String::new());
        for u in users {
            acl.push_str(&format!("      '{}': [{}]\n", u.user, list(u.subscribe)));
            publish_acl.push_str(&format!("      '{}': [{}]\n", u.user, list(u.publish)));
        }
        plugins.push_str(&format!(
            "  amqtt.plugins.topic_checking.TopicAccessControlListPlugin:\n    acl:\n{acl}    publish_acl:\n{publish_acl}"
        ));
        Amqtt::start_in(dir, &plugins).await
    }

    async fn start_in(dir: tempfile::TempDir, plugins: &str) -> Amqtt {
        let amqtt = executable();
        let port = crate::free_port();
        let conf = dir.path().join("amqtt.yaml");
        std::fs::write(
            &conf,
            format!(
                "listeners:\n  default:\n    type: tcp\n    bind: 127.0.0.1:{port}\nplugins:\n{plugins}"
            ),
        )
        .unwrap();
        let log = File::create(dir.path().join("amqtt.log")).unwrap();
        let child = Command::new(&amqtt)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            // Its own process group, so Drop can kill whatever it started.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", amqtt.display()));
        let mut broker = Amqtt { port, dir, child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Some(status) = broker.child.try_wait().unwrap() {
                panic!(
                    "amqtt exited ({status}); its log ends with:\n{}",
                    broker.log_tail(40)
                );
            }
            assert!(
                Instant::now() < deadline,
                "amqtt did not listen on 127.0.0.1:{port} within 30 s; its log ends with:\n{}",
                broker.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        broker
    }

    /// The broker's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Everything the broker logged so far (stdout and stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("amqtt.log")).unwrap_or_default()
    }

    fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Amqtt {
    fn drop(&mut self) {
        crate::broker::signal_group(self.child.id(), "KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `amqtt` executable: `MQTT_TEST_AMQTT`, else the virtual environment
/// `scripts/deps.sh` creates. Panics with what to do when it is missing.
pub fn executable() -> PathBuf {
    let path = match std::env::var_os("MQTT_TEST_AMQTT") {
        Some(p) => PathBuf::from(p),
        None => crate::repo_root().join("target/brokers-venv/bin/amqtt"),
    };
    assert!(
        path.is_file(),
        "amqtt not found at {}: run scripts/deps.sh (it installs amqtt=={AMQTT_VERSION} in \
         target/brokers-venv), or set MQTT_TEST_AMQTT to an amqtt executable",
        path.display()
    );
    path
}

/// The auth plugin with a password file of `user:argon2-hash`. amqtt 0.12
/// verifies Argon2 hashes (pwdlib); the sha512-crypt hashes of older
/// releases only still work, deprecated, on Python < 3.13.
fn password_plugin(dir: &Path, user: &str, password: &str) -> String {
    let file = dir.join("passwd");
    std::fs::write(&file, format!("{user}:{}\n", hash(password))).unwrap();
    format!(
        "  amqtt.plugins.authentication.FileAuthPlugin:\n    password_file: '{}'\n",
        file.display()
    )
}

/// An Argon2 hash of `password`, from the Python next to `amqtt`.
fn hash(password: &str) -> String {
    let python = executable().with_file_name("python");
    let out = Command::new(&python)
        .args([
            "-c",
            "import sys; from pwdlib.hashers.argon2 import Argon2Hasher; print(Argon2Hasher().hash(sys.argv[1]))",
            password,
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "hashing a password with {} failed: {}",
        python.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{Options, Probe};

    /// The virtual environment holds the release the kit was written for.
    #[test]
    fn amqtt_is_the_pinned_release() {
        let out = Command::new(executable())
            .arg("--version")
            .output()
            .unwrap();
        let version = String::from_utf8_lossy(&out.stdout);
        assert_eq!(version.trim(), AMQTT_VERSION, "re-run scripts/deps.sh");
    }

    /// One broker: a client connects, publishes a retained message, and a
    /// later subscriber gets it with the retain flag.
    #[tokio::test]
    async fn amqtt_smoke_connect_and_retained() {
        let broker = Amqtt::start().await;
        let publisher = Probe::v4(broker.port(), "smoke-pub", Options::default()).await;
        assert!(
            publisher.accepted(),
            "{:?}\n{}",
            publisher.seen(),
            broker.log()
        );
        publisher.publish("smoke/status", "online", true).await;
        assert!(
            crate::eventually(Duration::from_secs(5), || async {
                publisher.pubacks() == 1
            })
            .await
        );

        let subscriber = Probe::v4(broker.port(), "smoke-sub", Options::default()).await;
        assert_eq!(
            subscriber.subscribe("smoke/status").await,
            ["Success(AtLeastOnce)"]
        );
        let got = subscriber
            .wait_received("smoke/status", Duration::from_secs(5))
            .await;
        assert_eq!(got, [("online".to_owned(), true)], "{}", broker.log());
    }

    /// The password file works: the user gets in, an anonymous client does
    /// not (a wrong password: `facts.rs`).
    #[tokio::test]
    async fn amqtt_smoke_user() {
        let broker = Amqtt::start_with_user("alice", "s3cret").await;
        let login = |password| Options {
            login: Some(("alice", password)),
            ..Options::default()
        };
        let ok = Probe::v4(broker.port(), "alice-1", login("s3cret")).await;
        assert!(ok.accepted(), "{:?}\n{}", ok.seen(), broker.log());
        let anonymous = Probe::v4(broker.port(), "anon-1", Options::default()).await;
        assert!(!anonymous.accepted(), "{:?}", anonymous.seen());
    }
}
