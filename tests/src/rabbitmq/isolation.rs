//! What keeps a private node apart from the system one: every path the
//! server and the CLI read points into the node's temporary directory
//! (environment, config, enabled plugins, data, logs, Erlang cookie), and
//! every listener binds 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The real script: Debian's /usr/sbin wrappers `su` to `rabbitmq` when run
/// as root, which would lose our HOME (and cookie) and our environment.
pub(super) fn script(name: &str) -> PathBuf {
    let debian = Path::new("/usr/lib/rabbitmq/bin").join(name);
    if debian.exists() {
        debian
    } else {
        PathBuf::from(name)
    }
}

/// The environment both the server and the CLI read: everything points
/// into `dir`, so nothing of the system node (its env file, config, cookie,
/// data) is used.
pub(super) fn configure(command: &mut Command, dir: &Path, node: &str) {
    command
        .env("HOME", dir.join("home"))
        .env("RABBITMQ_NODENAME", node)
        .env("RABBITMQ_CONF_ENV_FILE", dir.join("rabbitmq-env.conf"))
        .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
        .env("RABBITMQ_CONFIG_FILES", dir.join("conf.d"))
        .env("RABBITMQ_ADVANCED_CONFIG_FILE", dir.join("advanced.config"))
        .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
        .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
        .env("RABBITMQ_LOG_BASE", dir.join("log"))
        .env("RABBITMQ_PID_FILE", dir.join("rabbitmq.pid"))
        // If no epmd runs yet, the one this node starts listens on loopback.
        .env("ERL_EPMD_ADDRESS", "127.0.0.1")
        // The CLI's own distribution listener, on loopback too.
        .env(
            "RABBITMQ_CTL_ERL_ARGS",
            "-kernel inet_dist_use_interface {127,0,0,1}",
        )
        .env_remove("ERL_FLAGS")
        .env_remove("ERL_LIBS");
}

/// Config, plugins, cookie and the (empty) env and conf.d files.
pub(super) fn write_files(dir: &Path, amqp_port: u16, mqtt_port: u16) {
    use std::os::unix::fs::PermissionsExt;
    let conf = format!(
        "listeners.tcp.1 = 127.0.0.1:{amqp_port}\n\
         mqtt.listeners.tcp.1 = 127.0.0.1:{mqtt_port}\n\
         distribution.listener.interface = 127.0.0.1\n\
         mqtt.allow_anonymous = true\n\
         mqtt.default_user = guest\n\
         mqtt.default_pass = guest\n\
         log.file.level = debug\n\
         log.console = false\n"
    );
    std::fs::write(dir.join("rabbitmq.conf"), conf).unwrap();
    std::fs::write(dir.join("enabled_plugins"), "[rabbitmq_mqtt].\n").unwrap();
    std::fs::write(dir.join("rabbitmq-env.conf"), "").unwrap();
    std::fs::create_dir(dir.join("conf.d")).unwrap();
    let home = dir.join("home");
    std::fs::create_dir(&home).unwrap();
    let cookie = home.join(".erlang.cookie");
    std::fs::write(&cookie, random_cookie()).unwrap();
    // Erlang refuses a cookie file others can read.
    std::fs::set_permissions(&cookie, std::fs::Permissions::from_mode(0o400)).unwrap();
}

/// 20 random capital letters, like the cookies Erlang generates.
fn random_cookie() -> String {
    use std::io::Read;
    let mut raw = [0u8; 20];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut raw))
        .expect("/dev/urandom");
    raw.iter().map(|b| char::from(b'A' + b % 26)).collect()
}
