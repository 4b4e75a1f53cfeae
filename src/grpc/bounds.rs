//! Bounds on every field a caller controls, checked at the top of each handler before anything
//! is stored, audited in full or handed to the core. A request past a bound is INVALID_ARGUMENT
//! naming the field and the limit; nothing is truncated. Without them a Spawn with 20,000
//! labels was stored with its run, and every List carried them from then on.
//!
//! Labels follow Kubernetes: a key is a name of up to 63 characters (alphanumerics, `-`, `_`,
//! `.`; alphanumeric at both ends) with an optional DNS-subdomain prefix and `/`
//! (`team.example.com/tier`); values are up to 256 bytes; at most 64 labels. Texts the kernel
//! passes to the agent as one argument (the prompt, the system prompt) stop at its limit for a
//! single argument (`MAX_ARG_STRLEN`, 128 KiB), so an over-long prompt is refused here rather
//! than failing the exec. The whole request is limited by the server's message size.
//!
//! Pure functions of the request, unit-tested here; the limits are documented in the proto
//! comments and the README.
use std::collections::BTreeMap;

use tonic::Status;

use crate::proto;
use crate::supervisor::ApiError;

/// The server's largest request (tonic's `max_decoding_message_size`); past it the transport
/// refuses the call before any handler sees it.
/// Every bounded field at its limit fits with room to spare (about 1.9 MiB).
pub const MAX_MESSAGE_BYTES: usize = 2 << 20;

pub const MAX_LABELS: usize = 64;
pub const MAX_LABEL_NAME: usize = 63;
pub const MAX_LABEL_PREFIX: usize = 253;
pub const MAX_LABEL_VALUE: usize = 256;

pub const MAX_ARGV: usize = 4096;
/// One argument, as the kernel allows it (`MAX_ARG_STRLEN` less the NUL).
pub const MAX_ARG_BYTES: usize = 128 * 1024 - 1;
pub const MAX_ARGV_BYTES: usize = 1 << 20;

pub const MAX_ENV: usize = 1024;
pub const MAX_ENV_NAME: usize = 256;
pub const MAX_ENV_BYTES: usize = 256 * 1024;

pub const MAX_PROMPT_BYTES: usize = MAX_ARG_BYTES;
pub const MAX_PATH_BYTES: usize = 4095;
/// Workflow, queue and model names, permission modes, signal names.
pub const MAX_NAME_BYTES: usize = 128;
pub const MAX_RUN_ID_BYTES: usize = 64;
pub const MAX_REASON_BYTES: usize = 1024;
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 200;
pub const MAX_STOP_SIGNALS: usize = 8;
pub const MAX_AFTER: usize = 64;
pub const MAX_ALLOWED_TOOLS: usize = 256;
pub const MAX_TOOL_BYTES: usize = 1024;
pub const MAX_STATUSES: usize = 16;

/// A field past its bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub message: String,
}

impl From<Violation> for Status {
    fn from(v: Violation) -> Status {
        ApiError::invalid(&v.field, v.message).into()
    }
}

type Checked = Result<(), Violation>;

fn violation(field: impl Into<String>, message: impl Into<String>) -> Violation {
    Violation {
        field: field.into(),
        message: message.into(),
    }
}

/// At most `max` bytes.
fn text(field: &str, s: &str, max: usize) -> Checked {
    if s.len() > max {
        return Err(violation(
            field,
            format!("at most {max} bytes (got {})", s.len()),
        ));
    }
    Ok(())
}

fn reason(field: &str, s: &str) -> Checked {
    text(field, s, MAX_REASON_BYTES)
}

fn run_id(field: &str, s: &str) -> Checked {
    text(field, s, MAX_RUN_ID_BYTES)
}

/// At most `max_count` items of at most `max_each` bytes, `max_total` bytes in all.
fn strings(
    field: &str,
    items: &[String],
    max_count: usize,
    max_each: usize,
    max_total: usize,
) -> Checked {
    if items.len() > max_count {
        return Err(violation(
            field,
            format!("at most {max_count} entries (got {})", items.len()),
        ));
    }
    let mut total = 0;
    for (i, s) in items.iter().enumerate() {
        text(&format!("{field}[{i}]"), s, max_each)?;
        total += s.len();
    }
    if total > max_total {
        return Err(violation(
            field,
            format!("at most {max_total} bytes in all (got {total})"),
        ));
    }
    Ok(())
}

fn alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

/// A key's shape, Kubernetes style: `[prefix/]name`.
fn label_key(field: &str, key: &str) -> Checked {
    let shown: String = key.chars().take(40).collect();
    let bad = |what: String| violation(format!("{field}[{shown:?}]"), what);
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if name.is_empty() || name.len() > MAX_LABEL_NAME {
        return Err(bad(format!(
            "a label key's name is 1 to {MAX_LABEL_NAME} characters (got {})",
            name.len()
        )));
    }
    let ends_ok = |s: &str, ok: fn(char) -> bool| {
        s.chars().next().is_some_and(ok) && s.chars().last().is_some_and(ok)
    };
    if !ends_ok(name, alnum)
        || !name
            .chars()
            .all(|c| alnum(c) || matches!(c, '-' | '_' | '.'))
    {
        return Err(bad(
            "a label key's name has letters, digits, '-', '_' and '.', and starts and ends \
             with a letter or digit"
                .into(),
        ));
    }
    if let Some(p) = prefix {
        let lower = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
        if p.is_empty()
            || p.len() > MAX_LABEL_PREFIX
            || !ends_ok(p, lower)
            || !p.chars().all(|c| lower(c) || matches!(c, '-' | '.'))
        {
            return Err(bad(format!(
                "a label key's prefix is a DNS subdomain of at most {MAX_LABEL_PREFIX} \
                 characters (lowercase letters, digits, '-' and '.')"
            )));
        }
    }
    Ok(())
}

/// Labels (and label selectors): at most 64, keys and values as above.
fn labels(field: &str, map: &BTreeMap<String, String>) -> Checked {
    if map.len() > MAX_LABELS {
        return Err(violation(
            field,
            format!("at most {MAX_LABELS} labels (got {})", map.len()),
        ));
    }
    // In key order (the map's), so that the same request always names the same field.
    for (k, v) in map {
        label_key(field, k)?;
        if v.len() > MAX_LABEL_VALUE {
            let shown: String = k.chars().take(40).collect();
            return Err(violation(
                format!("{field}[{shown:?}]"),
                format!(
                    "a label value is at most {MAX_LABEL_VALUE} bytes (got {})",
                    v.len()
                ),
            ));
        }
    }
    Ok(())
}

/// The environment: at most 1024 variables, names up to 256 bytes, 256 KiB in all.
fn env(field: &str, map: &BTreeMap<String, String>) -> Checked {
    if map.len() > MAX_ENV {
        return Err(violation(
            field,
            format!("at most {MAX_ENV} variables (got {})", map.len()),
        ));
    }
    let mut total = 0;
    for (k, v) in map {
        if k.len() > MAX_ENV_NAME {
            let shown: String = k.chars().take(40).collect();
            return Err(violation(
                format!("{field}[{shown:?}]"),
                format!(
                    "a variable's name is at most {MAX_ENV_NAME} bytes (got {})",
                    k.len()
                ),
            ));
        }
        // NAME=VALUE and its NUL, as the kernel counts it.
        total += k.len() + v.len() + 2;
    }
    if total > MAX_ENV_BYTES {
        return Err(violation(
            field,
            format!("at most {MAX_ENV_BYTES} bytes in all (got {total})"),
        ));
    }
    Ok(())
}

fn selector(field: &str, s: Option<&proto::Selector>) -> Checked {
    let Some(s) = s else { return Ok(()) };
    labels(&format!("{field}.labels"), &s.labels)?;
    text(&format!("{field}.workflow"), &s.workflow, MAX_NAME_BYTES)?;
    text(&format!("{field}.queue"), &s.queue, MAX_NAME_BYTES)?;
    if s.statuses.len() > MAX_STATUSES {
        return Err(violation(
            format!("{field}.statuses"),
            format!("at most {MAX_STATUSES} entries (got {})", s.statuses.len()),
        ));
    }
    Ok(())
}

pub fn spawn(r: &proto::SpawnRequest) -> Checked {
    strings("argv", &r.argv, MAX_ARGV, MAX_ARG_BYTES, MAX_ARGV_BYTES)?;
    text("cwd", &r.cwd, MAX_PATH_BYTES)?;
    env("env", &r.env)?;
    labels("labels", &r.labels)?;
    strings(
        "stop_signals",
        &r.stop_signals,
        MAX_STOP_SIGNALS,
        MAX_NAME_BYTES,
        usize::MAX,
    )?;
    text("workflow", &r.workflow, MAX_NAME_BYTES)?;
    text("prompt", &r.prompt, MAX_PROMPT_BYTES)?;
    if let Some(o) = &r.overrides {
        text(
            "overrides.model",
            o.model.as_deref().unwrap_or(""),
            MAX_NAME_BYTES,
        )?;
        text(
            "overrides.permission_mode",
            o.permission_mode.as_deref().unwrap_or(""),
            MAX_NAME_BYTES,
        )?;
        strings(
            "overrides.allowed_tools",
            &o.allowed_tools,
            MAX_ALLOWED_TOOLS,
            MAX_TOOL_BYTES,
            usize::MAX,
        )?;
        text(
            "overrides.append_system_prompt",
            o.append_system_prompt.as_deref().unwrap_or(""),
            MAX_PROMPT_BYTES,
        )?;
    }
    text("queue", &r.queue, MAX_NAME_BYTES)?;
    strings("after", &r.after, MAX_AFTER, MAX_RUN_ID_BYTES, usize::MAX)?;
    if let Some(p) = &r.restart {
        strings(
            "restart.on",
            &p.on,
            MAX_STATUSES,
            MAX_NAME_BYTES,
            usize::MAX,
        )?;
    }
    text(
        "idempotency_key",
        &r.idempotency_key,
        MAX_IDEMPOTENCY_KEY_BYTES,
    )
}

pub fn get(r: &proto::GetRequest) -> Checked {
    run_id("run_id", &r.run_id)
}

pub fn list(r: &proto::ListRequest) -> Checked {
    if r.statuses.len() > MAX_STATUSES {
        return Err(violation(
            "statuses",
            format!("at most {MAX_STATUSES} entries (got {})", r.statuses.len()),
        ));
    }
    text("queue", &r.queue, MAX_NAME_BYTES)?;
    text("workflow", &r.workflow, MAX_NAME_BYTES)?;
    if r.page_size > MAX_PAGE_SIZE {
        return Err(violation(
            "page_size",
            format!(
                "at most {MAX_PAGE_SIZE} runs per page (got {})",
                r.page_size
            ),
        ));
    }
    if r.page_size > 0 && r.limit > 0 {
        return Err(violation(
            "page_size",
            "give page_size (and page through) or limit, not both",
        ));
    }
    if !r.page_token.is_empty() && r.page_size == 0 {
        return Err(violation(
            "page_size",
            "is required with page_token (1 to 1000)",
        ));
    }
    text("page_token", &r.page_token, MAX_NAME_BYTES)?;
    labels("labels", &r.labels)
}

/// The most runs one List answer holds when paged.
pub const MAX_PAGE_SIZE: u32 = 1000;

pub fn kill(r: &proto::KillRequest) -> Checked {
    run_id("run_id", &r.run_id)?;
    reason("reason", &r.reason)?;
    selector("selector", r.selector.as_ref())
}

pub fn cancel(r: &proto::CancelRequest) -> Checked {
    run_id("run_id", &r.run_id)?;
    reason("reason", &r.reason)?;
    selector("selector", r.selector.as_ref())
}

pub fn update_queue(r: &proto::UpdateQueueRequest) -> Checked {
    text("queue", &r.queue, MAX_NAME_BYTES)
}

pub fn get_queue_health(_r: &proto::GetQueueHealthRequest) -> Checked {
    Ok(())
}

pub fn restart(r: &proto::RestartRequest) -> Checked {
    run_id("run_id", &r.run_id)?;
    reason("reason", &r.reason)
}

pub fn force_complete(r: &proto::ForceCompleteRequest) -> Checked {
    run_id("run_id", &r.run_id)?;
    reason("reason", &r.reason)
}

pub fn purge(r: &proto::PurgeRequest) -> Checked {
    run_id("run_id", &r.run_id)?;
    reason("reason", &r.reason)
}

pub fn list_audit(r: &proto::ListAuditRequest) -> Checked {
    run_id("run_id", &r.run_id)
}

pub fn ack_alert(r: &proto::AckAlertRequest) -> Checked {
    reason("note", &r.note)
}

pub fn watch(r: &proto::WatchRequest) -> Checked {
    run_id("run_id", &r.run_id)
}

pub fn logs(r: &proto::LogsRequest) -> Checked {
    run_id("run_id", &r.run_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn labels_of(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn spawn_with(f: impl FnOnce(&mut proto::SpawnRequest)) -> Checked {
        let mut r = proto::SpawnRequest {
            argv: vec!["sleep".into(), "1".into()],
            ..Default::default()
        };
        f(&mut r);
        spawn(&r)
    }

    fn field_of(c: Checked) -> String {
        c.expect_err("a violation").field
    }

    #[test]
    fn an_ordinary_spawn_passes() {
        assert_eq!(
            spawn_with(|r| {
                r.labels = labels_of(&[("team", "infra"), ("app.example.com/tier", "a b")]);
                r.env = labels_of(&[("HOME", "/tmp")]);
                r.prompt = "fix it".into();
                r.idempotency_key = "k".repeat(200);
            }),
            Ok(())
        );
    }

    #[test]
    fn label_count_key_and_value_are_bounded() {
        let many: BTreeMap<String, String> =
            (0..65).map(|i| (format!("k{i}"), "v".into())).collect();
        let v = spawn_with(|r| r.labels = many).unwrap_err();
        assert_eq!(v.field, "labels");
        assert!(v.message.contains("at most 64 labels (got 65)"), "{v:?}");
        let exactly: BTreeMap<String, String> =
            (0..64).map(|i| (format!("k{i}"), "v".into())).collect();
        assert_eq!(spawn_with(|r| r.labels = exactly), Ok(()));

        let long_name = "a".repeat(64);
        let v = spawn_with(|r| r.labels = labels_of(&[(&long_name, "v")])).unwrap_err();
        assert!(v.message.contains("1 to 63 characters (got 64)"), "{v:?}");
        assert_eq!(
            spawn_with(|r| r.labels = labels_of(&[(&"a".repeat(63), "v")])),
            Ok(())
        );
        for bad in [
            "",
            "-a",
            "a-",
            "a b",
            "Foo/bar",
            "/a",
            "a..b/ok/",
            "ex_ample.com/a",
        ] {
            assert!(
                spawn_with(|r| r.labels = labels_of(&[(bad, "v")])).is_err(),
                "{bad:?} is refused"
            );
        }
        for good in ["a", "a.b_c-d", "A9", "example.com/a", "k8s.io/app-name"] {
            assert_eq!(
                spawn_with(|r| r.labels = labels_of(&[(good, "v")])),
                Ok(()),
                "{good:?}"
            );
        }
        let prefix = format!("{}/a", "p".repeat(254));
        assert!(spawn_with(|r| r.labels = labels_of(&[(&prefix, "v")])).is_err());

        let value = "v".repeat(257);
        let v = spawn_with(|r| r.labels = labels_of(&[("k", &value)])).unwrap_err();
        assert_eq!(v.field, "labels[\"k\"]");
        assert!(v.message.contains("at most 256 bytes (got 257)"), "{v:?}");
        assert_eq!(
            spawn_with(|r| r.labels = labels_of(&[("k", &"v".repeat(256))])),
            Ok(())
        );
    }

    #[test]
    fn env_count_name_and_size_are_bounded() {
        let many: BTreeMap<String, String> = (0..1025)
            .map(|i| (format!("V{i}"), String::new()))
            .collect();
        let v = spawn_with(|r| r.env = many).unwrap_err();
        assert_eq!(v.field, "env");
        assert!(v.message.contains("at most 1024 variables"), "{v:?}");
        let v = spawn_with(|r| r.env = labels_of(&[("BIG", &"x".repeat(300 * 1024))])).unwrap_err();
        assert!(v.message.contains("at most 262144 bytes in all"), "{v:?}");
        let name = "N".repeat(257);
        assert!(field_of(spawn_with(|r| r.env = labels_of(&[(&name, "")]))).starts_with("env["));
    }

    #[test]
    fn argv_prompt_and_texts_are_bounded() {
        let v = spawn_with(|r| r.argv = vec!["x".into(); 4097]).unwrap_err();
        assert_eq!(v.field, "argv");
        let v = spawn_with(|r| r.argv = vec!["echo".into(), "x".repeat(128 * 1024)]).unwrap_err();
        assert_eq!(v.field, "argv[1]");
        let v = spawn_with(|r| r.argv = vec!["x".repeat(100_000); 11]).unwrap_err();
        assert_eq!(v.field, "argv");
        assert!(v.message.contains("in all"), "{v:?}");
        assert_eq!(
            field_of(spawn_with(|r| r.prompt = "p".repeat(MAX_PROMPT_BYTES + 1))),
            "prompt"
        );
        assert_eq!(
            spawn_with(|r| r.prompt = "p".repeat(MAX_PROMPT_BYTES)),
            Ok(())
        );
        assert_eq!(
            field_of(spawn_with(|r| r.idempotency_key = "k".repeat(201))),
            "idempotency_key"
        );
        assert_eq!(field_of(spawn_with(|r| r.cwd = "/".repeat(4096))), "cwd");
        assert_eq!(
            field_of(spawn_with(|r| r.stop_signals = vec!["TERM".into(); 9])),
            "stop_signals"
        );
        assert_eq!(
            field_of(spawn_with(|r| r.after = vec!["run_0".into(); 65])),
            "after"
        );
        assert_eq!(
            field_of(spawn_with(|r| {
                r.overrides = Some(proto::SpawnOverrides {
                    append_system_prompt: Some("s".repeat(MAX_PROMPT_BYTES + 1)),
                    ..Default::default()
                })
            })),
            "overrides.append_system_prompt"
        );
        assert_eq!(
            field_of(spawn_with(|r| {
                r.overrides = Some(proto::SpawnOverrides {
                    allowed_tools: vec!["Read".into(); 257],
                    ..Default::default()
                })
            })),
            "overrides.allowed_tools"
        );
    }

    #[test]
    fn reasons_notes_ids_and_selectors_are_bounded() {
        let long = "r".repeat(MAX_REASON_BYTES + 1);
        let kill_req = proto::KillRequest {
            reason: long.clone(),
            ..Default::default()
        };
        assert_eq!(field_of(kill(&kill_req)), "reason");
        let kill_req = proto::KillRequest {
            selector: Some(proto::Selector {
                labels: labels_of(&[("k", &"v".repeat(300))]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(field_of(kill(&kill_req)), "selector.labels[\"k\"]");
        let cancel_req = proto::CancelRequest {
            selector: Some(proto::Selector {
                queue: "q".repeat(129),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(field_of(cancel(&cancel_req)), "selector.queue");
        assert_eq!(
            field_of(restart(&proto::RestartRequest {
                reason: long.clone(),
                ..Default::default()
            })),
            "reason"
        );
        assert_eq!(
            field_of(force_complete(&proto::ForceCompleteRequest {
                reason: long.clone(),
                ..Default::default()
            })),
            "reason"
        );
        assert_eq!(
            field_of(purge(&proto::PurgeRequest {
                reason: long.clone(),
                ..Default::default()
            })),
            "reason"
        );
        assert_eq!(
            field_of(ack_alert(&proto::AckAlertRequest { id: 1, note: long })),
            "note"
        );
        let id = "run_".repeat(20);
        assert_eq!(
            field_of(get(&proto::GetRequest { run_id: id.clone() })),
            "run_id"
        );
        assert_eq!(
            field_of(logs(&proto::LogsRequest {
                run_id: id.clone(),
                ..Default::default()
            })),
            "run_id"
        );
        assert_eq!(
            field_of(watch(&proto::WatchRequest { run_id: id.clone() })),
            "run_id"
        );
        assert_eq!(
            field_of(list_audit(&proto::ListAuditRequest {
                run_id: id,
                ..Default::default()
            })),
            "run_id"
        );
        let list_req = proto::ListRequest {
            labels: (0..65).map(|i| (format!("k{i}"), String::new())).collect(),
            ..Default::default()
        };
        assert_eq!(field_of(list(&list_req)), "labels");
        assert_eq!(
            field_of(update_queue(&proto::UpdateQueueRequest {
                queue: "q".repeat(129),
                ..Default::default()
            })),
            "queue"
        );
        assert_eq!(get_queue_health(&proto::GetQueueHealthRequest {}), Ok(()));
    }

    #[test]
    fn a_violation_is_invalid_argument_naming_field_and_limit() {
        let st: Status = spawn_with(|r| r.labels = labels_of(&[("k", &"v".repeat(257))]))
            .unwrap_err()
            .into();
        assert_eq!(st.code(), Code::InvalidArgument);
        assert!(
            st.message().contains("labels[\"k\"]") && st.message().contains("256 bytes"),
            "{}",
            st.message()
        );
    }
}
