//! The image-config instructions: ENV, LABEL, WORKDIR, USER, CMD, ENTRYPOINT, SHELL, EXPOSE,
//! VOLUME, STOPSIGNAL, HEALTHCHECK (and the ones that only leave history), applied to a stage's
//! config; `docker commit --change` applies the same.

use serde_json::{Value, json};

use super::dockerfile::{Instruction, expand, pairs, words};
use super::{R, State};
use crate::containers::spec;

/// A step that only changes the image config (ENV, LABEL, CMD, ...); also what
/// `docker commit --change` applies.
pub(super) fn metadata(ins: &Instruction, st: &mut State) -> R<()> {
    let vars = st.vars();
    let arg = |s: &str| expand(s, &vars);
    let created_by = format!("/bin/sh -c #(nop) {}", ins.text());
    match ins.cmd.as_str() {
        "ENV" => {
            for (k, v) in pairs(ins.line, "ENV", &ins.rest).map_err(|e| e.to_string())? {
                let v = expand(&v, &st.vars());
                st.set_env(&k, &v);
            }
            st.history(&created_by, true);
        }
        "LABEL" => {
            let mut labels = st.doc["config"]["Labels"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            for (k, v) in pairs(ins.line, "LABEL", &ins.rest).map_err(|e| e.to_string())? {
                labels.insert(arg(&k), json!(arg(&v)));
            }
            st.config().insert("Labels".into(), Value::Object(labels));
            st.history(&created_by, true);
        }
        "WORKDIR" => {
            let w = arg(&ins.rest);
            let dir = if w.starts_with('/') {
                spec::clean_path(&w)
            } else {
                spec::clean_path(&format!("{}/{w}", st.workdir()))
            };
            st.config().insert("WorkingDir".into(), json!(dir));
            st.history(&created_by, true);
        }
        "USER" => {
            st.config().insert("User".into(), json!(arg(&ins.rest)));
            st.history(&created_by, true);
        }
        "CMD" | "ENTRYPOINT" | "SHELL" => {
            let list = match &ins.json {
                Some(list) => list.clone(),
                None if ins.cmd == "SHELL" => {
                    return Err("SHELL requires the arguments to be in JSON form".into());
                }
                None => {
                    let mut l = st.shell();
                    l.push(ins.rest.clone());
                    l
                }
            };
            let field = match ins.cmd.as_str() {
                "CMD" => "Cmd",
                "ENTRYPOINT" => "Entrypoint",
                _ => "Shell",
            };
            st.config().insert(field.into(), json!(list));
            if ins.cmd == "CMD" {
                st.cmd_set = true;
            } else if ins.cmd == "ENTRYPOINT" && !st.cmd_set {
                st.config().insert("Cmd".into(), Value::Null);
            }
            st.history(&created_by, true);
        }
        "EXPOSE" | "VOLUME" => {
            let field = if ins.cmd == "EXPOSE" {
                "ExposedPorts"
            } else {
                "Volumes"
            };
            let mut map = st.doc["config"][field]
                .as_object()
                .cloned()
                .unwrap_or_default();
            let items = ins.json.clone().unwrap_or_else(|| words(&arg(&ins.rest)));
            for item in items {
                let key = if ins.cmd == "EXPOSE" && !item.contains('/') {
                    format!("{item}/tcp")
                } else {
                    item
                };
                map.insert(key, json!({}));
            }
            st.config().insert(field.into(), Value::Object(map));
            st.history(&created_by, true);
        }
        "STOPSIGNAL" => {
            st.config()
                .insert("StopSignal".into(), json!(arg(&ins.rest)));
            st.history(&created_by, true);
        }
        "HEALTHCHECK" => {
            let hc = healthcheck(ins)?;
            st.config().insert("Healthcheck".into(), hc);
            st.history(&created_by, true);
        }
        "ARG" | "MAINTAINER" | "ONBUILD" => st.history(&created_by, true),
        other => return Err(format!("{other} is not supported")),
    }
    Ok(())
}

fn healthcheck(ins: &Instruction) -> R<Value> {
    let rest = ins.rest.trim();
    if rest.eq_ignore_ascii_case("none") {
        return Ok(json!({"Test": ["NONE"]}));
    }
    let cmd = rest
        .strip_prefix("CMD")
        .or_else(|| rest.strip_prefix("cmd"))
        .ok_or("HEALTHCHECK needs CMD or NONE")?
        .trim();
    let test = match serde_json::from_str::<Vec<String>>(cmd) {
        Ok(list) => [vec!["CMD".to_owned()], list].concat(),
        Err(_) => vec!["CMD-SHELL".to_owned(), cmd.to_owned()],
    };
    let mut hc = json!({ "Test": test });
    for (k, v) in &ins.flags {
        let field = match k.as_str() {
            "interval" => "Interval",
            "timeout" => "Timeout",
            "start-period" => "StartPeriod",
            "start-interval" => "StartInterval",
            "retries" => {
                hc["Retries"] = json!(
                    v.parse::<i64>()
                        .map_err(|_| format!("invalid retries {v}"))?
                );
                continue;
            }
            other => return Err(format!("unknown HEALTHCHECK flag --{other}")),
        };
        hc[field] = json!(parse_duration(v).ok_or(format!("invalid duration {v}"))?);
    }
    Ok(hc)
}

/// `30s`, `1m30s`, `500ms` as nanoseconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphabetic() {
                unit.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        total += n * match unit.as_str() {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
    }
    num.is_empty().then_some(total as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_go_writes_them() {
        assert_eq!(parse_duration("30s"), Some(30_000_000_000));
        assert_eq!(parse_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_duration("500ms"), Some(500_000_000));
        assert_eq!(parse_duration("x"), None);
    }
}
