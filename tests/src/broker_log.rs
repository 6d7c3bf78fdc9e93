//! What a private Mosquitto's log says about each client ID: when it
//! connected and from which port, when and how it went away, and when the
//! broker closed a connection because another one took its client ID (a
//! takeover). The judge of the replica tests: two processes holding one
//! client ID show up here, whatever the processes believe.
//!
//! [`Broker`](crate::Broker) writes the log with `log_type all` and
//! `connection_messages true`. Mosquitto 2.0 writes one line per event,
//! `<unix seconds>: <message>`, from its single network thread, so the
//! order of the lines is the order in which the broker saw things. The lines
//! read here:
//!
//! ```text
//! New client connected from 127.0.0.1:42632 as site_1_test (p2, c1, k60).
//! Client site_1_test already connected, closing old connection.
//! Received DISCONNECT from site_1_test
//! Client site_1_test disconnected.
//! Client site_1_test closed its connection.
//! Client site_1_test has exceeded timeout, disconnecting.
//! ```
//!
//! A takeover is logged right before the new connection's `New client
//! connected`; it closes the old connection here, so a client ID never
//! counts two live connections: two holders show up as a takeover, and
//! [`BrokerLog::max_simultaneous`] above 1 would mean the log says
//! something this parser does not understand.
//!
//! A takeover is a double hold unless a [`Frozen`] window excuses it: the
//! connection the broker closed belonged to a process that was stopped
//! (SIGSTOP) and so could not let go. Its lease had expired and another
//! replica rightly took the connection; only the broker's keep-alive could
//! have closed the frozen process's socket first.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// What the broker logged about one client ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Happening {
    /// `New client connected from <ip>:<port> as <id> (…)`.
    Connected { port: Option<u16> },
    /// The connection ended. `clean`: a DISCONNECT was received first, so
    /// the broker did not publish the Will.
    Disconnected { clean: bool, reason: String },
    /// The broker closed the connection from `closed_port` because a new
    /// connection took the client ID.
    TakenOver { closed_port: Option<u16> },
}

/// One line of the log that concerns a client ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    /// Index of the line in the log, from 0.
    pub line: usize,
    /// The broker's timestamp (Unix seconds).
    pub time: u64,
    pub client_id: String,
    pub what: Happening,
}

/// Two connections wanted one client ID: the broker closed the one from
/// `closed_port` for the one from `new_port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Takeover {
    pub line: usize,
    pub time: u64,
    pub client_id: String,
    pub closed_port: Option<u16>,
    pub new_port: Option<u16>,
}

/// A process that could not let go of its connections for a while (it was
/// SIGSTOPped): its local ports towards the broker, and the log lines from
/// `from_line` (the log's length when it was stopped) to `until_line` (the
/// log's length a moment after it was continued; `None` while stopped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frozen {
    /// Who it was, for messages (`replica 2 (pid 1234)`).
    pub label: String,
    pub ports: HashSet<u16>,
    pub from_line: usize,
    pub until_line: Option<usize>,
    /// The broker's second from which a takeover may be a handover: its
    /// leases were valid for a while after it was stopped, and a takeover
    /// before then means another process took a lease still held.
    pub not_before: u64,
}

impl Frozen {
    /// Whether `t` closed a connection of this process while it was
    /// frozen, once its leases could have expired.
    pub fn excuses(&self, t: &Takeover) -> bool {
        t.line >= self.from_line
            && self.until_line.is_none_or(|until| t.line < until)
            && t.time >= self.not_before
            && t.closed_port.is_some_and(|p| self.ports.contains(&p))
    }
}

/// The parsed log: every event per client ID, takeovers, and the live
/// connection count of each client ID at the end and at its highest.
#[derive(Debug, Clone, Default)]
pub struct BrokerLog {
    lines: Vec<String>,
    events: Vec<LogEvent>,
    takeovers: Vec<Takeover>,
    live: BTreeMap<String, usize>,
    max_live: BTreeMap<String, usize>,
    /// Lines saying a client ID went away that had no live connection (a
    /// refused CONNECT, or a line this parser misread).
    unmatched: Vec<usize>,
}

/// Per client ID, while parsing.
#[derive(Default)]
struct Track {
    live: usize,
    port: Option<u16>,
    disconnect_received: bool,
    takeover: Option<usize>,
}

impl BrokerLog {
    /// Reads the log of `broker` as it is now.
    pub fn of(broker: &crate::Broker) -> BrokerLog {
        BrokerLog::parse(&broker.log())
    }

    /// Parses a Mosquitto log. A last line without its newline (being
    /// written) is left out.
    pub fn parse(text: &str) -> BrokerLog {
        let complete = match text.rfind('\n') {
            Some(i) => &text[..=i],
            None => "",
        };
        let lines: Vec<String> = complete.lines().map(str::to_owned).collect();
        let mut log = BrokerLog::default();
        let mut tracks: HashMap<String, Track> = HashMap::new();
        for (i, line) in lines.iter().enumerate() {
            let Some((time, message)) = split_line(line) else {
                continue;
            };
            match classify(message) {
                Some(Line::Connected { id, port }) => {
                    let t = tracks.entry(id.to_owned()).or_default();
                    t.live += 1;
                    t.port = port;
                    t.disconnect_received = false;
                    if let Some(k) = t.takeover.take() {
                        log.takeovers[k].new_port = port;
                    }
                    let max = log.max_live.entry(id.to_owned()).or_default();
                    *max = (*max).max(t.live);
                    log.push(i, time, id, Happening::Connected { port });
                }
                Some(Line::TakenOver { id }) => {
                    let t = tracks.entry(id.to_owned()).or_default();
                    let closed_port = t.port.filter(|_| t.live > 0);
                    if t.live == 0 {
                        log.unmatched.push(i);
                    }
                    t.live = t.live.saturating_sub(1);
                    t.takeover = Some(log.takeovers.len());
                    log.takeovers.push(Takeover {
                        line: i,
                        time,
                        client_id: id.to_owned(),
                        closed_port,
                        new_port: None,
                    });
                    log.push(i, time, id, Happening::TakenOver { closed_port });
                }
                Some(Line::DisconnectReceived { id }) => {
                    tracks.entry(id.to_owned()).or_default().disconnect_received = true;
                }
                Some(Line::Gone { id, reason }) => {
                    let t = tracks.entry(id.to_owned()).or_default();
                    if t.live == 0 {
                        log.unmatched.push(i);
                    }
                    t.live = t.live.saturating_sub(1);
                    let clean = std::mem::take(&mut t.disconnect_received);
                    let reason = reason.to_owned();
                    log.push(i, time, id, Happening::Disconnected { clean, reason });
                }
                None => {}
            }
        }
        log.lines = lines;
        log.live = tracks
            .into_iter()
            .map(|(id, t)| (id, t.live))
            .filter(|(_, live)| *live > 0)
            .collect();
        log
    }

    fn push(&mut self, line: usize, time: u64, id: &str, what: Happening) {
        self.events.push(LogEvent {
            line,
            time,
            client_id: id.to_owned(),
            what,
        });
    }

    /// Complete lines in the log (a position for `*_since` and [`Frozen`]).
    pub fn line_count(&self) -> usize {
        self.lines.len()
    }

    /// Every event, in log order.
    pub fn events(&self) -> &[LogEvent] {
        &self.events
    }

    /// The events of `client_id`, in log order.
    pub fn timeline(&self, client_id: &str) -> Vec<&LogEvent> {
        self.events
            .iter()
            .filter(|e| e.client_id == client_id)
            .collect()
    }

    /// The events of `client_id` from line `since` on.
    pub fn timeline_since(&self, client_id: &str, since: usize) -> Vec<&LogEvent> {
        self.events
            .iter()
            .filter(|e| e.client_id == client_id && e.line >= since)
            .collect()
    }

    /// Client IDs that connected at least once.
    pub fn client_ids(&self) -> BTreeSet<String> {
        self.events
            .iter()
            .filter(|e| matches!(e.what, Happening::Connected { .. }))
            .map(|e| e.client_id.clone())
            .collect()
    }

    /// CONNECTs the broker accepted from `client_id`.
    pub fn connects(&self, client_id: &str) -> usize {
        self.connects_since(client_id, 0)
    }

    /// CONNECTs accepted from `client_id` from line `since` on.
    pub fn connects_since(&self, client_id: &str, since: usize) -> usize {
        self.timeline_since(client_id, since)
            .iter()
            .filter(|e| matches!(e.what, Happening::Connected { .. }))
            .count()
    }

    /// Accepted CONNECTs per client ID.
    pub fn connect_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for e in &self.events {
            if matches!(e.what, Happening::Connected { .. }) {
                *counts.entry(e.client_id.clone()).or_default() += 1;
            }
        }
        counts
    }

    /// Connections of `client_id` that ended with a DISCONNECT (no Will).
    pub fn clean_disconnects(&self, client_id: &str) -> usize {
        self.timeline(client_id)
            .iter()
            .filter(|e| matches!(e.what, Happening::Disconnected { clean: true, .. }))
            .count()
    }

    /// Every takeover, in log order.
    pub fn takeovers(&self) -> &[Takeover] {
        &self.takeovers
    }

    /// Takeovers from line `since` on.
    pub fn takeovers_since(&self, since: usize) -> Vec<&Takeover> {
        self.takeovers.iter().filter(|t| t.line >= since).collect()
    }

    /// Takeovers no [`Frozen`] window excuses: a client ID held twice.
    pub fn double_holds(&self, frozen: &[Frozen]) -> Vec<&Takeover> {
        self.takeovers
            .iter()
            .filter(|t| !frozen.iter().any(|f| f.excuses(t)))
            .collect()
    }

    /// Live connections of `client_id` at the end of the log (0 or 1).
    pub fn live(&self, client_id: &str) -> usize {
        self.live.get(client_id).copied().unwrap_or(0)
    }

    /// Client IDs with a live connection at the end of the log.
    pub fn live_ids(&self) -> BTreeSet<String> {
        self.live.keys().cloned().collect()
    }

    /// The most connections `client_id` had at once (a takeover closes the
    /// old one first, so this is 1 for any client ID that connected).
    pub fn max_simultaneous(&self, client_id: &str) -> usize {
        self.max_live.get(client_id).copied().unwrap_or(0)
    }

    /// The client ID with the most connections at once, and that number.
    pub fn max_simultaneous_overall(&self) -> Option<(String, usize)> {
        self.max_live
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(id, n)| (id.clone(), *n))
    }

    /// Lines saying a client ID went away while it had no live connection.
    pub fn unmatched(&self) -> Vec<&str> {
        self.unmatched
            .iter()
            .map(|&i| self.lines[i].as_str())
            .collect()
    }

    /// The lines on the comings and goings of any of `client_ids`
    /// (connected, taken over, DISCONNECT received, gone), at most `max`
    /// of them (the last ones), for assertion messages.
    pub fn excerpt<S: AsRef<str>>(&self, client_ids: &[S], max: usize) -> String {
        let hits: Vec<&str> = self
            .lines
            .iter()
            .filter(|l| split_line(l).and_then(|(_, m)| classify(m)).is_some())
            .filter(|l| client_ids.iter().any(|id| names(l, id.as_ref())))
            .map(String::as_str)
            .collect();
        let skip = hits.len().saturating_sub(max);
        let mut out = String::new();
        if skip > 0 {
            out.push_str(&format!("[… {skip} earlier lines]\n"));
        }
        for l in &hits[skip..] {
            out.push_str(l);
            out.push('\n');
        }
        out
    }

    /// Up to `before` and `after` lines around line `at`, for messages.
    pub fn around(&self, at: usize, before: usize, after: usize) -> String {
        let from = at.saturating_sub(before);
        let to = (at + after + 1).min(self.lines.len());
        let mut out = String::new();
        for (i, l) in self.lines[from..to].iter().enumerate() {
            let mark = if from + i == at { ">>" } else { "  " };
            out.push_str(&format!("{mark} {l}\n"));
        }
        out
    }

    /// A few lines of figures, for messages and test output.
    pub fn summary(&self) -> String {
        let count = |f: fn(&Happening) -> bool| self.events.iter().filter(|e| f(&e.what)).count();
        let max = self
            .max_simultaneous_overall()
            .map(|(id, n)| format!("{n} ({id})"))
            .unwrap_or_else(|| "0".to_owned());
        format!(
            "broker log: {} lines, {} client IDs, {} connects, {} clean disconnects, \
             {} other disconnects, {} takeovers, {} live now, max simultaneous {}, \
             {} unmatched lines",
            self.lines.len(),
            self.client_ids().len(),
            count(|h| matches!(h, Happening::Connected { .. })),
            count(|h| matches!(h, Happening::Disconnected { clean: true, .. })),
            count(|h| matches!(h, Happening::Disconnected { clean: false, .. })),
            self.takeovers.len(),
            self.live.len(),
            max,
            self.unmatched.len()
        )
    }
}

/// A line this module reads.
#[derive(Debug, PartialEq, Eq)]
enum Line<'a> {
    Connected { id: &'a str, port: Option<u16> },
    TakenOver { id: &'a str },
    DisconnectReceived { id: &'a str },
    Gone { id: &'a str, reason: &'a str },
}

/// `<unix seconds>: <message>`.
fn split_line(line: &str) -> Option<(u64, &str)> {
    let (time, message) = line.split_once(": ")?;
    Some((time.parse().ok()?, message))
}

fn classify(message: &str) -> Option<Line<'_>> {
    if let Some(rest) = message.strip_prefix("New client connected from ") {
        // `127.0.0.1:42632 as site_1_test (p2, c1, k60).`
        let (address, rest) = rest.split_once(" as ")?;
        let id = rest.split_once(" (").map_or(rest, |(id, _)| id);
        let port = address.rsplit_once(':').and_then(|(_, p)| p.parse().ok());
        return Some(Line::Connected { id, port });
    }
    if let Some(id) = message.strip_prefix("Received DISCONNECT from ") {
        return Some(Line::DisconnectReceived { id: id.trim_end() });
    }
    if let Some(rest) = message.strip_prefix("Bad socket read/write on client ") {
        let (id, reason) = rest.split_once(": ").unwrap_or((rest, ""));
        return Some(Line::Gone { id, reason });
    }
    if let Some(rest) = message.strip_prefix("Socket error on client ") {
        let (id, reason) = rest.split_once(", ").unwrap_or((rest, ""));
        return Some(Line::Gone { id, reason });
    }
    let rest = message.strip_prefix("Client ")?;
    let (id, tail) = rest.split_once(' ')?;
    if id == "<unknown>" {
        return None;
    }
    if tail.starts_with("already connected, closing old connection") {
        return Some(Line::TakenOver { id });
    }
    const GONE: [&str; 4] = [
        "disconnected",
        "closed its connection",
        "has exceeded timeout",
        "been disconnected",
    ];
    GONE.iter()
        .any(|p| tail.starts_with(p))
        .then_some(Line::Gone { id, reason: tail })
}

/// Whether `line` names `id` as a whole word (`site_1_test` is not in
/// `site_11_test`).
fn names(line: &str, id: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    line.match_indices(id).any(|(i, _)| {
        let before = line[..i].chars().next_back();
        let after = line[i + id.len()..].chars().next();
        !before.is_some_and(word) && !after.is_some_and(word)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from Mosquitto 2.0.11 (a takeover, a clean DISCONNECT, a
    /// killed client, a refused one), then a line being written.
    const LOG: &str = "\
1796593634: New connection from 127.0.0.1:42632 on port 28999.
1796593634: New client connected from 127.0.0.1:42632 as site_1_test (p2, c1, k60).
1796593634: Will message specified (7 bytes) (r1, q0).
1796593634: \tsite_1/backend/status
1796593634: Sending CONNACK to site_1_test (0, 0)
1796593634: New connection from 127.0.0.1:42634 on port 28999.
1796593634: Client site_1_test already connected, closing old connection.
1796593634: New client connected from 127.0.0.1:42634 as site_1_test (p2, c1, k60, u'user').
1796593635: Received DISCONNECT from site_1_test
1796593635: Client site_1_test disconnected.
1796593635: New client connected from 127.0.0.1:42636 as site_11_test (p2, c1, k60).
1796593636: Client site_11_test closed its connection.
1796593636: Client site_2_test disconnected, not authorised.
1796593636: New client connected from 127.0.0.1:42640 as site_1_test (p2, c1, k60).
1796593637: Client site_1_test has exceeded timeout, disconnecting.
1796593637: New client connected from 127.0.0.1:42650 as site_3_test (p4, c1, k60).
1796593637: New client conn";

    #[test]
    fn reads_connects_takeovers_and_disconnects() {
        let log = BrokerLog::parse(LOG);
        assert_eq!(log.line_count(), 16, "the partial last line is left out");
        assert_eq!(log.connects("site_1_test"), 3);
        assert_eq!(log.connects("site_11_test"), 1);
        assert_eq!(log.clean_disconnects("site_1_test"), 1);
        assert_eq!(log.clean_disconnects("site_11_test"), 0);
        assert_eq!(
            log.takeovers(),
            [Takeover {
                line: 6,
                time: 1_796_593_634,
                client_id: "site_1_test".to_owned(),
                closed_port: Some(42632),
                new_port: Some(42634),
            }]
        );
        assert_eq!(log.max_simultaneous("site_1_test"), 1);
        assert_eq!(log.live("site_1_test"), 0);
        assert_eq!(log.live("site_3_test"), 1);
        assert_eq!(
            log.live_ids().into_iter().collect::<Vec<_>>(),
            ["site_3_test"]
        );
        assert_eq!(
            log.unmatched(),
            ["1796593636: Client site_2_test disconnected, not authorised."]
        );
        let kinds: Vec<_> = log
            .timeline("site_1_test")
            .iter()
            .map(|e| match &e.what {
                Happening::Connected { .. } => "connected",
                Happening::TakenOver { .. } => "taken over",
                Happening::Disconnected { clean: true, .. } => "clean",
                Happening::Disconnected { clean: false, .. } => "unclean",
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "connected",
                "taken over",
                "connected",
                "clean",
                "connected",
                "unclean"
            ]
        );
    }

    #[test]
    fn a_frozen_window_excuses_only_its_own_ports_and_lines() {
        let log = BrokerLog::parse(LOG);
        let frozen = |ports: &[u16], from, until| Frozen {
            label: "test".to_owned(),
            ports: ports.iter().copied().collect(),
            from_line: from,
            until_line: until,
            not_before: 0,
        };
        assert_eq!(log.double_holds(&[]).len(), 1);
        assert!(log.double_holds(&[frozen(&[42632], 0, None)]).is_empty());
        assert!(log.double_holds(&[frozen(&[42632], 0, Some(7))]).is_empty());
        assert_eq!(log.double_holds(&[frozen(&[42632], 0, Some(6))]).len(), 1);
        assert_eq!(log.double_holds(&[frozen(&[42632], 7, None)]).len(), 1);
        assert_eq!(log.double_holds(&[frozen(&[42634], 0, None)]).len(), 1);
        let early = Frozen {
            not_before: 1_796_593_635,
            ..frozen(&[42632], 0, None)
        };
        assert_eq!(
            log.double_holds(&[early]).len(),
            1,
            "too soon after the stop"
        );
    }

    #[test]
    fn excerpts_name_whole_client_ids() {
        let log = BrokerLog::parse(LOG);
        let excerpt = log.excerpt(&["site_11_test"], 10);
        assert_eq!(excerpt.lines().count(), 2, "{excerpt}");
        let excerpt = log.excerpt(&["site_1_test"], 3);
        assert!(excerpt.starts_with("[… 4 earlier lines]"), "{excerpt}");
        assert!(!excerpt.contains("CONNACK"), "{excerpt}");
    }
}
