//! Readers for the deployment files: the compose YAML, durations in
//! compose/Docker form, INI-style files (supervisord, systemd) and the
//! Dockerfile's instructions. Deliberately small: enough for these files.

use mqtt_supervisor_tests::repo_root;
use std::time::Duration;
use yaml_rust2::{Yaml, YamlLoader};

pub(super) fn read(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub(super) fn compose() -> Yaml {
    let docs = YamlLoader::load_from_str(&read("docker-compose.yml")).expect("valid YAML");
    assert_eq!(docs.len(), 1, "one YAML document");
    docs.into_iter().next().unwrap()
}

/// A compose or Docker duration: `20s`, `1m30s`, `500ms`, or plain seconds.
pub(super) fn duration(text: &str) -> Duration {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Duration::from_secs(secs);
    }
    let (mut total, mut number) = (Duration::ZERO, String::new());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number
            .parse()
            .unwrap_or_else(|_| panic!("bad duration {text}"));
        number.clear();
        total += match c {
            'h' => Duration::from_secs(n * 3600),
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                Duration::from_millis(n)
            }
            'm' => Duration::from_secs(n * 60),
            's' => Duration::from_secs(n),
            _ => panic!("bad duration {text}"),
        };
    }
    assert!(number.is_empty(), "bad duration {text}");
    total
}

/// `[section] key=value` lines of an INI-style file (supervisord, systemd),
/// comments and inline ` ;` comments dropped.
pub(super) fn ini(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split(" ;").next().unwrap().trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') {
            section = line.trim_matches(['[', ']']).to_owned();
        } else if let Some((k, v)) = line.split_once('=') {
            out.push((section.clone(), k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    out
}

pub(super) fn get<'a>(
    entries: &'a [(String, String, String)],
    section: &str,
    key: &str,
) -> &'a str {
    entries
        .iter()
        .rev()
        .find(|(s, k, _)| s == section && k == key)
        .map(|(_, _, v)| v.as_str())
        .unwrap_or_else(|| panic!("[{section}] has no {key}"))
}

/// Dockerfile instructions of the final stage, continuation lines joined:
/// (INSTRUCTION, arguments).
pub(super) fn dockerfile() -> Vec<(String, String)> {
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in read("docker/Dockerfile").lines() {
        if current.is_empty() && (line.trim().starts_with('#') || line.trim().is_empty()) {
            continue;
        }
        match line.trim_end().strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line);
                logical.push(std::mem::take(&mut current));
            }
        }
    }
    let mut stage = Vec::new();
    for instruction in logical {
        let (word, args) = instruction.trim().split_once(char::is_whitespace).unwrap();
        if word.eq_ignore_ascii_case("FROM") {
            stage.clear();
        }
        stage.push((word.to_uppercase(), args.trim().to_owned()));
    }
    stage
}

/// The Dockerfile's ENV of the final stage.
pub(super) fn docker_env(instructions: &[(String, String)]) -> Vec<(String, String)> {
    instructions
        .iter()
        .filter(|(w, _)| w == "ENV")
        .flat_map(|(_, args)| args.split_whitespace())
        .map(|pair| {
            let (k, v) = pair.split_once('=').expect("ENV KEY=value");
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

pub(super) fn env_of(env: &[(String, String)], key: &str) -> String {
    env.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("Dockerfile sets no {key}"))
}

pub(super) fn strings(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .unwrap_or_else(|| panic!("not a list: {y:?}"))
        .iter()
        .map(|s| s.as_str().expect("a string").to_owned())
        .collect()
}
