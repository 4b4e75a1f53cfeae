//! Which notifications one webhook owes, from the alerts and what it was already sent: a pure
//! reconciliation, so that the delivery task can crash, restart or fall behind and still send
//! each alert's firing once, its resolution once (with `send_resolved`), a repeat per
//! `repeat_interval` while it keeps firing unacknowledged, and retries when they are due.
use std::collections::HashMap;
use std::time::Duration;

use super::format::Status;
use crate::store::{Alert, DeliveryRow, DeliveryState};

/// One webhook's routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Alert kinds it takes; empty: all.
    pub kinds: Vec<String>,
    pub send_resolved: bool,
    pub repeat_interval: Duration,
}

impl Route {
    pub fn takes(&self, kind: &str) -> bool {
        self.kinds.is_empty() || self.kinds.iter().any(|k| k == kind)
    }
}

/// One notification to attempt now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Send {
    pub alert_id: i64,
    pub status: Status,
    /// 1 for a first attempt.
    pub attempt: u32,
}

/// What is due now, and when to look again (Unix ms) for what is not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub sends: Vec<Send>,
    pub wake_at: Option<i64>,
}

/// Plan the webhook's notifications at `now` (Unix ms). `rows` are its deliveries by alert id.
pub fn plan(route: &Route, alerts: &[Alert], rows: &HashMap<i64, DeliveryRow>, now: i64) -> Plan {
    let mut p = Plan::default();
    let wake = |at: i64, p: &mut Plan| {
        p.wake_at = Some(p.wake_at.map_or(at, |w| w.min(at)));
    };
    let repeat_ms = route.repeat_interval.as_millis().min(i64::MAX as u128) as i64;
    for a in alerts {
        if !route.takes(&a.kind) {
            continue;
        }
        let want = if a.resolved_at > 0 {
            Status::Resolved
        } else {
            Status::Firing
        };
        let send = |attempt| Send {
            alert_id: a.id,
            status: want,
            attempt,
        };
        match rows.get(&a.id) {
            // Never announced: announce it firing; one that resolved before it was ever
            // announced is not announced at all.
            None => {
                if want == Status::Firing {
                    p.sends.push(send(1));
                }
            }
            Some(r) if r.status != want => {
                if want == Status::Resolved && route.send_resolved {
                    p.sends.push(send(1));
                }
            }
            Some(r) => match r.state {
                DeliveryState::Pending => {
                    if r.next_at <= now {
                        p.sends.push(send(r.attempts + 1));
                    } else {
                        wake(r.next_at, &mut p);
                    }
                }
                DeliveryState::Delivered => {
                    if want == Status::Firing && a.acknowledged_at == 0 && repeat_ms > 0 {
                        let due = r.sent_at.saturating_add(repeat_ms);
                        if due <= now {
                            p.sends.push(send(1));
                        } else {
                            wake(due, &mut p);
                        }
                    }
                }
                DeliveryState::Failed => {}
            },
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn route() -> Route {
        Route {
            kinds: vec![],
            send_resolved: true,
            repeat_interval: Duration::from_millis(4 * H as u64),
        }
    }

    fn alert(id: i64, kind: &str, resolved_at: i64) -> Alert {
        Alert {
            id,
            at: 1,
            kind: kind.into(),
            message: "m".into(),
            acknowledged_at: 0,
            acknowledged_by: String::new(),
            resolved_at,
            dedup_key: format!("k{id}"),
            labels: Default::default(),
            last_seen: 1,
        }
    }

    fn row(
        id: i64,
        status: Status,
        state: DeliveryState,
        attempts: u32,
        next_at: i64,
        sent_at: i64,
    ) -> DeliveryRow {
        DeliveryRow {
            webhook: "w".into(),
            alert_id: id,
            status,
            state,
            attempts,
            next_at,
            sent_at,
            last_error: String::new(),
        }
    }

    fn rows(list: Vec<DeliveryRow>) -> HashMap<i64, DeliveryRow> {
        list.into_iter().map(|r| (r.alert_id, r)).collect()
    }

    #[test]
    fn a_new_alert_is_sent_once_then_repeated_after_the_interval() {
        let a = [alert(1, "stuck_run", 0)];
        let p = plan(&route(), &a, &HashMap::new(), 10);
        assert_eq!(
            p.sends,
            vec![Send {
                alert_id: 1,
                status: Status::Firing,
                attempt: 1
            }]
        );
        let sent = rows(vec![row(
            1,
            Status::Firing,
            DeliveryState::Delivered,
            1,
            0,
            10,
        )]);
        let p = plan(&route(), &a, &sent, 20);
        assert!(p.sends.is_empty());
        assert_eq!(p.wake_at, Some(10 + 4 * H));
        let p = plan(&route(), &a, &sent, 10 + 4 * H);
        assert_eq!(p.sends.len(), 1);
        // Acknowledged: no more repeats.
        let mut acked = a.clone();
        acked[0].acknowledged_at = 15;
        assert!(plan(&route(), &acked, &sent, 10 + 5 * H).sends.is_empty());
    }

    #[test]
    fn resolution_is_sent_once_when_asked_for() {
        let a = [alert(1, "stuck_run", 30)];
        let sent = rows(vec![row(
            1,
            Status::Firing,
            DeliveryState::Delivered,
            1,
            0,
            10,
        )]);
        let p = plan(&route(), &a, &sent, 40);
        assert_eq!(
            p.sends,
            vec![Send {
                alert_id: 1,
                status: Status::Resolved,
                attempt: 1
            }]
        );
        let done = rows(vec![row(
            1,
            Status::Resolved,
            DeliveryState::Delivered,
            1,
            0,
            40,
        )]);
        assert_eq!(plan(&route(), &a, &done, 10 * H), Plan::default());
        let quiet = Route {
            send_resolved: false,
            ..route()
        };
        assert!(plan(&quiet, &a, &sent, 40).sends.is_empty());
        // Resolved before it was ever announced: nothing.
        assert!(plan(&route(), &a, &HashMap::new(), 40).sends.is_empty());
    }

    #[test]
    fn retries_wait_for_their_time_and_failures_stay_failed() {
        let a = [alert(1, "queue_depth", 0), alert(2, "queue_wait", 0)];
        let r = rows(vec![
            row(1, Status::Firing, DeliveryState::Pending, 2, 500, 0),
            row(2, Status::Firing, DeliveryState::Failed, 1, 0, 0),
        ]);
        let p = plan(&route(), &a, &r, 400);
        assert!(p.sends.is_empty());
        assert_eq!(p.wake_at, Some(500));
        let p = plan(&route(), &a, &r, 500);
        assert_eq!(
            p.sends,
            vec![Send {
                alert_id: 1,
                status: Status::Firing,
                attempt: 3
            }]
        );
    }

    #[test]
    fn kinds_filter_routes() {
        let only = Route {
            kinds: vec!["stuck_run".into()],
            ..route()
        };
        let a = [
            alert(1, "stuck_run", 0),
            alert(2, "webhook_delivery_failed", 0),
        ];
        let p = plan(&only, &a, &HashMap::new(), 1);
        assert_eq!(p.sends.len(), 1);
        assert_eq!(p.sends[0].alert_id, 1);
    }
}
