//! Notification bodies, one per webhook format: Slack (an incoming-webhook `text` that reads
//! well on a phone), Alertmanager (the webhook payload it documents, version 4) and plain JSON.
//! Pure functions of the alert, the notification's status and the daemon's host name.
use serde_json::{json, Value};

use crate::store::Alert;

/// firing or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Firing,
    Resolved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "firing" => Some(Status::Firing),
            "resolved" => Some(Status::Resolved),
            _ => None,
        }
    }
}

/// `[[alerts.webhooks]] format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Slack,
    Alertmanager,
    Json,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "slack" => Some(Format::Slack),
            "alertmanager" => Some(Format::Alertmanager),
            "json" => Some(Format::Json),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Slack => "slack",
            Format::Alertmanager => "alertmanager",
            Format::Json => "json",
        }
    }
}

/// RFC 3339 in UTC with milliseconds, from Unix ms.
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-from-civil inverse: (year, month, day) of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Alertmanager's labels of an alert: `alertname` (the kind), `instance` (this host), and the
/// alert's own labels.
fn labels(a: &Alert, host: &str) -> serde_json::Map<String, Value> {
    let mut l = serde_json::Map::new();
    l.insert("alertname".into(), json!(a.kind));
    l.insert("instance".into(), json!(host));
    for (k, v) in &a.labels {
        l.insert(k.clone(), json!(v));
    }
    l
}

/// A stable id of the alert: its dedup key (or id) and host, hashed (16 hex digits).
pub fn fingerprint(a: &Alert, host: &str) -> String {
    let key = if a.dedup_key.is_empty() {
        format!("{host}/{}/{}", a.kind, a.id)
    } else {
        format!("{host}/{}", a.dedup_key)
    };
    let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The body to POST for `a` in `format`.
pub fn body(format: Format, a: &Alert, status: Status, host: &str, receiver: &str) -> Value {
    match format {
        Format::Slack => slack(a, status, host),
        Format::Alertmanager => alertmanager(a, status, host, receiver),
        Format::Json => plain(a, status, host),
    }
}

/// `{"text": ...}`: one line a phone shows whole in its notification, then the details.
pub fn slack(a: &Alert, status: Status, host: &str) -> Value {
    let head = match status {
        Status::Firing => format!(":rotating_light: FIRING {} on {host}", a.kind),
        Status::Resolved => format!(":white_check_mark: RESOLVED {} on {host}", a.kind),
    };
    let mut text = format!("{head}\n{}", a.message);
    let labels: Vec<String> = a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if !labels.is_empty() {
        text.push_str(&format!("\n{}", labels.join(" ")));
    }
    text.push_str(&format!("\nsince {}", rfc3339(a.at)));
    if status == Status::Resolved && a.resolved_at > 0 {
        text.push_str(&format!(", resolved {}", rfc3339(a.resolved_at)));
    }
    json!({ "text": text })
}

/// The Alertmanager webhook payload (version 4), one alert per notification, grouped by
/// alertname.
pub fn alertmanager(a: &Alert, status: Status, host: &str, receiver: &str) -> Value {
    let labels = labels(a, host);
    let ends_at = match status {
        Status::Resolved if a.resolved_at > 0 => rfc3339(a.resolved_at),
        _ => "0001-01-01T00:00:00Z".to_string(),
    };
    let alert = json!({
        "status": status.as_str(),
        "labels": labels,
        "annotations": { "summary": a.message },
        "startsAt": rfc3339(a.at),
        "endsAt": ends_at,
        "generatorURL": "",
        "fingerprint": fingerprint(a, host),
    });
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{}\"}}", a.kind),
        "truncatedAlerts": 0,
        "status": status.as_str(),
        "receiver": receiver,
        "groupLabels": { "alertname": a.kind },
        "commonLabels": labels,
        "commonAnnotations": { "summary": a.message },
        "externalURL": "",
        "alerts": [alert],
    })
}

/// Everything the daemon knows of the alert, for receivers of their own.
pub fn plain(a: &Alert, status: Status, host: &str) -> Value {
    json!({
        "status": status.as_str(),
        "host": host,
        "id": a.id,
        "kind": a.kind,
        "dedup_key": a.dedup_key,
        "summary": a.message,
        "labels": a.labels,
        "first_seen": a.at,
        "first_seen_rfc3339": rfc3339(a.at),
        "resolved_at": a.resolved_at,
        "acknowledged_at": a.acknowledged_at,
        "acknowledged_by": a.acknowledged_by,
        "fingerprint": fingerprint(a, host),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert() -> Alert {
        let mut labels = std::collections::BTreeMap::new();
        labels.insert("run_id".to_string(), "run_0123456789ab".to_string());
        labels.insert("workflow".to_string(), "builder".to_string());
        Alert {
            id: 7,
            at: 1_700_000_000_000,
            kind: "stuck_run".into(),
            message: "run run_0123456789ab is stuck: no first turn within 30s".into(),
            acknowledged_at: 0,
            acknowledged_by: String::new(),
            resolved_at: 0,
            dedup_key: "stuck:run_0123456789ab:init_timeout".into(),
            labels,
            last_seen: 1_700_000_000_000,
        }
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(1_700_000_000_000), "2023-11-14T22:13:20.000Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
    }

    #[test]
    fn slack_text_leads_with_the_state_and_kind() {
        let v = slack(&alert(), Status::Firing, "host1");
        let text = v["text"].as_str().expect("text");
        let first = text.lines().next().expect("a line");
        assert_eq!(first, ":rotating_light: FIRING stuck_run on host1");
        assert!(text.contains("no first turn within 30s"), "{text}");
        assert!(text.contains("workflow=builder"), "{text}");
        let mut a = alert();
        a.resolved_at = 1_700_000_060_000;
        let text = slack(&a, Status::Resolved, "host1")["text"]
            .as_str()
            .expect("text")
            .to_string();
        assert!(
            text.starts_with(":white_check_mark: RESOLVED stuck_run"),
            "{text}"
        );
        assert!(text.contains("resolved 2023-11-14T22:14:20.000Z"), "{text}");
    }

    #[test]
    fn alertmanager_payload_is_version_4() {
        let v = alertmanager(&alert(), Status::Firing, "host1", "oncall");
        assert_eq!(v["version"], "4");
        assert_eq!(v["status"], "firing");
        assert_eq!(v["receiver"], "oncall");
        assert_eq!(v["groupKey"], "{}:{alertname=\"stuck_run\"}");
        let a = &v["alerts"][0];
        assert_eq!(a["labels"]["alertname"], "stuck_run");
        assert_eq!(a["labels"]["run_id"], "run_0123456789ab");
        assert_eq!(a["labels"]["instance"], "host1");
        assert_eq!(a["annotations"]["summary"], alert().message);
        assert_eq!(a["startsAt"], "2023-11-14T22:13:20.000Z");
        assert_eq!(a["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(a["fingerprint"].as_str().map(str::len), Some(16));
        let mut r = alert();
        r.resolved_at = 1_700_000_060_000;
        let v = alertmanager(&r, Status::Resolved, "host1", "oncall");
        assert_eq!(v["alerts"][0]["status"], "resolved");
        assert_eq!(v["alerts"][0]["endsAt"], "2023-11-14T22:14:20.000Z");
        // The same alert keeps its fingerprint from firing to resolved.
        assert_eq!(
            v["alerts"][0]["fingerprint"],
            fingerprint(&alert(), "host1")
        );
    }

    #[test]
    fn formats_parse() {
        for f in [Format::Slack, Format::Alertmanager, Format::Json] {
            assert_eq!(Format::parse(f.as_str()), Some(f));
        }
        assert_eq!(Format::parse("teams"), None);
        assert_eq!(plain(&alert(), Status::Firing, "h")["kind"], "stuck_run");
    }
}
