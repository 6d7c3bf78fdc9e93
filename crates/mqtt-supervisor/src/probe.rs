//! `mqtt-supervisor health`: asks the running service, prints one line, and
//! exits 0 for healthy or degraded, 1 for critical or unreachable (for
//! Docker's HEALTHCHECK and for people).

use settings::Settings;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// The health URL of the service these settings describe: MQTT_HTTP_ADDR,
/// with an unspecified address (0.0.0.0) asked on loopback.
pub fn default_url(settings: &Settings) -> String {
    let mut addr: SocketAddr = settings.http_addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    format!("http://{addr}/api/v1/mqtt/health/")
}

/// Asks `url`; returns the line to print and whether the service is usable.
pub fn check(url: &str) -> (String, bool) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = match agent.get(url).call() {
        Ok(r) => r,
        Err(e) => return (format!("critical: cannot reach {url}: {e}"), false),
    };
    let code = response.status().as_u16();
    let body = match response.body_mut().read_to_string() {
        Ok(b) => b,
        Err(e) => {
            return (
                format!("critical: unreadable answer from {url}: {e}"),
                false,
            );
        }
    };
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(&body) else {
        return (
            format!("critical: HTTP {code} from {url} is not a health document"),
            false,
        );
    };
    let status = doc["status"].as_str().unwrap_or("unknown");
    let c = &doc["connections"];
    let s = &doc["service"];
    let line = format!(
        "{status}: {}/{} connections up, database {}, instance {}, version {}, up {} s",
        c["healthy"],
        c["enabled"],
        s["database"].as_str().unwrap_or("?"),
        s["instance_id"].as_str().unwrap_or("?"),
        s["version"].as_str().unwrap_or("?"),
        s["uptime_secs"],
    );
    (line, matches!(status, "healthy" | "degraded"))
}
