//! What a failure is called: the status, the state's reason and detail, and
//! the log line, from the policy's [`Judgement`]. Pure, so that every
//! wording is tested and the operator is pointed at the right thing: the
//! broker's ACL, the credentials or protocol, or another client with our
//! client ID.

#[cfg(test)]
mod tests;

use super::policy::{Cause, Decision, Judgement, Unanswered};
use crate::link::LinkError;
use crate::spec::{ConnectionSpec, Protocol};
use crate::state::Status;
use crate::untrusted::clean;
use std::time::Duration;

/// Filters named in a message; the rest are counted.
const FILTERS_SHOWN: usize = 3;

/// What the actor knew when the failure came.
pub struct Context<'a> {
    /// The connection.
    pub spec: &'a ConnectionSpec,
    /// Requests the broker had not answered (all false before CONNACK).
    pub unanswered: Unanswered,
    /// How long the connection had been up; `None` before CONNACK.
    pub up_for: Option<Duration>,
    /// Failures in a row, this one included.
    pub failures_in_a_row: u32,
    /// The status before this failure was already `error`.
    pub was_error: bool,
}

/// How loud the log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Needs the operator.
    Error,
    /// Worth a look.
    Warn,
    /// Progress.
    Info,
}

/// The words for one failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// `disconnected`, `error` or `cooldown`.
    pub status: Status,
    /// Stored as `last_error`.
    pub reason: String,
    /// Stored as `detail`: the reason and when the next attempt comes.
    pub detail: String,
    /// The log line's level.
    pub level: Level,
    /// The log line.
    pub message: String,
    /// The log line carries the reason as its `error` field (it does not
    /// quote it itself).
    pub error_field: bool,
}

/// The report for `error`, judged `judgement`.
pub fn report(error: &LinkError, judgement: &Judgement, cx: &Context<'_>) -> Report {
    let delay = judgement.decision.delay();
    let lasting = matches!(judgement.decision, Decision::Lasting(_));
    let about = format!("retrying in about {} s", delay.as_secs());
    let soon = format!("retrying in {:.1} s", delay.as_secs_f64());
    let status = match judgement.decision {
        Decision::Retry(_) => Status::Disconnected,
        Decision::Lasting(_) => Status::Error,
        Decision::Cooldown(_) => Status::Cooldown,
    };
    // Entering `error` is loud; a repeat while in it is progress.
    let lasting_level = if cx.was_error {
        Level::Info
    } else {
        Level::Error
    };
    // A close that becomes lasting after a few in a row: a warning until
    // then, with the count and the next attempt.
    let next = if lasting {
        about.as_str()
    } else {
        soon.as_str()
    };
    let repeated = |reason: &str, in_a_row: u32| {
        let times = if in_a_row > 1 {
            format!(" ({in_a_row} times in a row)")
        } else {
            String::new()
        };
        let level = if lasting { lasting_level } else { Level::Warn };
        (level, format!("{}{times}; {next}.", capitalise(reason)))
    };
    let (reason, level, message, error_field) = match judgement.cause {
        Cause::Takeover { in_a_row, over } => {
            let id = &cx.spec.client_id;
            if lasting {
                let reason = format!(
                    "client ID {id} appears to be in use by another client: {in_a_row} takeovers in {:.1} minutes",
                    over.as_secs_f64() / 60.0
                );
                let level = if cx.was_error {
                    Level::Warn
                } else {
                    Level::Error
                };
                let message = format!(
                    "{}; {about} (find the other client with this client ID).",
                    capitalise(&reason)
                );
                (reason, level, message, false)
            } else {
                let reason = if *error == LinkError::TakenOver {
                    format!(
                        "broker reports the session was taken over (0x8E): another client uses client ID {id}"
                    )
                } else {
                    format!(
                        "broker closed the connection {:.1} s after connect — likely a duplicate client ID",
                        cx.up_for.unwrap_or_default().as_secs_f64()
                    )
                };
                let series = if in_a_row > 1 {
                    format!(
                        "; takeover {in_a_row} in a row in {:.1} minutes",
                        over.as_secs_f64() / 60.0
                    )
                } else {
                    String::new()
                };
                let message = format!(
                    "{}{series}; cooling down {} s.",
                    capitalise(&reason),
                    delay.as_secs()
                );
                (reason, Level::Warn, message, false)
            }
        }
        Cause::Denied { in_a_row } => {
            let reason = format!(
                "the broker closed the connection right after we {}: it may refuse that topic (check the broker's ACL for this user)",
                what_we_sent(cx)
            );
            let (level, message) = repeated(&reason, in_a_row);
            (reason, level, message, false)
        }
        Cause::ClosedBeforeConnAck { in_a_row } => {
            let protocol = match cx.spec.protocol {
                Protocol::V311 => "MQTT 3.1.1",
                Protocol::V5 => "MQTT 5",
            };
            let tls = if cx.spec.tls.is_none() {
                ", or the port expects TLS"
            } else {
                ""
            };
            let reason = format!(
                "the broker closed the connection before answering our CONNECT (no CONNACK): it may refuse the credentials without a refusal code, may not support {protocol}{tls}"
            );
            let (level, message) = repeated(&reason, in_a_row);
            (reason, level, message, false)
        }
        Cause::Plain => {
            let first = cx.failures_in_a_row == 1 || (lasting && !cx.was_error);
            let (level, message) = match (lasting, first) {
                (true, true) if matches!(error, LinkError::Tls(_)) => (
                    Level::Error,
                    format!("TLS handshake with the broker failed; {about}."),
                ),
                (true, true) if matches!(error, LinkError::TooLarge { .. }) => (
                    Level::Error,
                    format!(
                        "The broker keeps sending a packet larger than MQTT_MAX_PACKET_SIZE; raise the limit or remove the message (a retained one comes again on every connect). {}.",
                        capitalise(&about)
                    ),
                ),
                (true, true) => (
                    Level::Error,
                    format!("Broker refused the connection; {about}."),
                ),
                (false, true) => (Level::Warn, format!("Connection failed; {soon}.")),
                (_, false) => (Level::Info, format!("Still failing; {soon}.")),
            };
            (error.to_string(), level, message, true)
        }
    };
    let detail = match judgement.decision {
        Decision::Cooldown(d) => format!("{reason}; cooling down {} s", d.as_secs()),
        Decision::Lasting(_) => format!("{reason}; {about}"),
        Decision::Retry(_) => format!("{reason}; {soon}"),
    };
    Report {
        status,
        reason,
        detail,
        level,
        message,
        error_field,
    }
}

/// "published the status to `a/b` and subscribed to `c/#`".
fn what_we_sent(cx: &Context<'_>) -> String {
    let status = cx
        .spec
        .status_topic
        .as_deref()
        .filter(|_| cx.unanswered.status)
        .map(|t| format!("published the status to `{}`", clean(t)));
    let subscribe = cx.unanswered.subscribe.then(|| {
        let mut shown: Vec<String> = cx
            .spec
            .subscriptions
            .iter()
            .take(FILTERS_SHOWN)
            .map(|f| format!("`{}`", clean(f)))
            .collect();
        let more = cx.spec.subscriptions.len().saturating_sub(FILTERS_SHOWN);
        if more > 0 {
            shown.push(format!("{more} more"));
        }
        format!("subscribed to {}", shown.join(", "))
    });
    match (status, subscribe) {
        (Some(p), Some(s)) => format!("{p} and {s}"),
        (Some(p), None) => p,
        (None, Some(s)) => s,
        (None, None) => "sent a request".to_owned(),
    }
}

/// The first letter in upper case.
pub fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
