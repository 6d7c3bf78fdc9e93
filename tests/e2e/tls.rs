//! TLS to the broker: a row with `use_tls` and its own CA connects to a
//! Mosquitto TLS listener whose certificate names 127.0.0.1; a row trusting
//! the wrong CA (or the system roots) gets a lasting `error` naming the
//! certificate problem and is not retried in a loop.
//!
//! Certificates are made per test with the `openssl` command-line tool.

use mqtt_supervisor_tests::{
    App, Broker, Observer, Row, database_url, eventually, free_port, insert, state, wait_status,
};
use sqlx::PgPool;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A CA, a server certificate for IP 127.0.0.1 signed by it, and an
/// unrelated second CA.
struct Pki {
    _dir: tempfile::TempDir,
    ca_pem: String,
    other_ca_pem: String,
    ca_file: PathBuf,
    cert_file: PathBuf,
    key_file: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the openssl command-line tool must be installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-subj",
            &format!("/CN=mqtt-supervisor test {name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

impl Pki {
    fn generate() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        make_ca(d, "ca");
        make_ca(d, "other_ca");
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        );
        std::fs::write(
            d.join("server.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.crt",
                "-days",
                "2",
                "-extfile",
                "server.ext",
            ],
        );
        let read = |f: &str| std::fs::read_to_string(d.join(f)).unwrap();
        Pki {
            ca_pem: read("ca.crt"),
            other_ca_pem: read("other_ca.crt"),
            ca_file: d.join("ca.crt"),
            cert_file: d.join("server.crt"),
            key_file: d.join("server.key"),
            _dir: dir,
        }
    }
}

/// A broker with its plain listener (for the observer) and a TLS listener
/// on the returned port.
async fn tls_broker(pki: &Pki) -> (Broker, u16) {
    let tls_port = free_port();
    let broker = Broker::start_with(&format!(
        "allow_anonymous true\nlistener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n",
        pki.ca_file.display(),
        pki.cert_file.display(),
        pki.key_file.display()
    ))
    .await;
    let up = eventually(Duration::from_secs(10), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", tls_port))
            .await
            .is_ok()
    })
    .await;
    assert!(up, "TLS listener not up:\n{}", broker.log());
    (broker, tls_port)
}

/// TLS handshakes the broker saw fail because the client did not trust its
/// certificate. Mosquitto logs each such attempt on exactly one line, either
/// as `Client connection from … failed: … unknown ca` or, when the handshake
/// got further, as `OpenSSL Error[0]: … unknown ca` (then no other line
/// carries the reason); `New connection from` is logged for only some of them.
fn untrusted_handshakes(broker: &Broker) -> usize {
    broker
        .log()
        .lines()
        .filter(|l| l.contains("alert unknown ca"))
        .count()
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn connects_over_tls_with_the_rows_ca(pool: PgPool) {
    let pki = Pki::generate();
    let (broker, tls_port) = tls_broker(&pki).await;
    let observer = Observer::start(broker.port(), "+/backend/status").await;
    let tls_row = |name: &str| Row {
        use_tls: true,
        ca_cert_pem: Some(pki.ca_pem.clone()),
        ..Row::new(name, tls_port)
    };
    let v4 = insert(&pool, &tls_row("site_tls")).await;
    let v5 = insert(
        &pool,
        &Row {
            protocol: Some("5".into()),
            ..tls_row("site_tls5")
        },
    )
    .await;
    let app = App::spawn(&database_url(&pool), &[]);
    app.ready().await;
    for (id, name) in [(v4, "site_tls"), (v5, "site_tls5")] {
        assert!(
            wait_status(&pool, id, "connected", Duration::from_secs(10)).await,
            "{name}: {:?}\n{}\n{}",
            state(&pool, id).await,
            app.output(),
            broker.log()
        );
        assert!(
            observer
                .wait_for(
                    &format!("{name}/backend/status"),
                    "online",
                    Duration::from_secs(5)
                )
                .await,
            "{name}: {:?}",
            observer.all()
        );
        assert_eq!(broker.connects_of(&format!("{name}_test")), 1);
    }
    assert_eq!(untrusted_handshakes(&broker), 0, "{}", broker.log());
    let (code, body) = app.health(true).await.unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "healthy", "{body}");
    assert!(!body.to_string().contains("BEGIN CERTIFICATE"), "{body}");
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn untrusted_certificate_is_a_lasting_error(pool: PgPool) {
    let pki = Pki::generate();
    let (broker, tls_port) = tls_broker(&pki).await;
    let wrong_ca = insert(
        &pool,
        &Row {
            use_tls: true,
            ca_cert_pem: Some(pki.other_ca_pem.clone()),
            ..Row::new("site_wrong_ca", tls_port)
        },
    )
    .await;
    // No CA of its own: the system roots do not know our test CA either.
    let system_roots = insert(
        &pool,
        &Row {
            use_tls: true,
            ..Row::new("site_system_roots", tls_port)
        },
    )
    .await;
    let app = App::spawn(&database_url(&pool), &[]);
    app.ready().await;
    for id in [wrong_ca, system_roots] {
        assert!(
            wait_status(&pool, id, "error", Duration::from_secs(10)).await,
            "{:?}\n{}",
            state(&pool, id).await,
            app.output()
        );
        let (_, detail, last_error) = state(&pool, id).await.unwrap();
        let last_error = last_error.unwrap_or_default();
        assert!(
            last_error.contains("TLS") && last_error.contains("certificate"),
            "row {id}: the reason must name the certificate problem: {last_error:?}"
        );
        assert!(
            detail.contains("UnknownIssuer") || detail.contains("unknown issuer"),
            "{detail}"
        );
    }
    assert_eq!(broker.connects_of("site_wrong_ca_test"), 0);

    // A TLS failure lasts: one attempt per row, then a long pause.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let attempts = untrusted_handshakes(&broker);
    assert!(
        (2..=4).contains(&attempts),
        "expected about one TLS attempt per row in 5 s, saw {attempts}:\n{}",
        broker.log()
    );
    let (code, body) = app.health(true).await.unwrap();
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["details"][0]["status"], "error", "{body}");
    assert_eq!(body["details"][1]["status"], "error", "{body}");
}
