//! The agent's event log (`docker events`): what happened to containers and images, in Docker's
//! event JSON. Owns the recent past (a bounded ring, lost with the agent as dockerd's is lost
//! with dockerd) and the live broadcast that `Containers.Events` streams follow.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::sync::broadcast;

/// How many past events are kept for `--since`.
const HISTORY: usize = 2048;

/// An event and its time in nanoseconds since the Unix epoch.
pub type Timed = (i64, Value);

struct Bus {
    history: Mutex<VecDeque<Timed>>,
    live: broadcast::Sender<Timed>,
    /// The last exit of each container that a `die` event was sent for.
    died: Mutex<HashMap<String, u64>>,
}

fn bus() -> &'static Bus {
    static BUS: OnceLock<Bus> = OnceLock::new();
    BUS.get_or_init(|| Bus {
        history: Mutex::new(VecDeque::with_capacity(HISTORY)),
        live: broadcast::channel(1024).0,
        died: Mutex::new(HashMap::new()),
    })
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Records and broadcasts one event. `kind` is Docker's Type (`container`, `image`).
pub fn emit(kind: &str, action: &str, id: &str, attributes: BTreeMap<String, String>) {
    let ns = now_ns();
    let mut ev = json!({
        "Type": kind,
        "Action": action,
        "Actor": { "ID": id, "Attributes": attributes },
        "scope": "local",
        "time": ns / 1_000_000_000,
        "timeNano": ns,
    });
    // The fields older clients read.
    if kind == "container" || kind == "image" {
        ev["status"] = json!(action);
        ev["id"] = json!(id);
        if let Some(image) = attributes.get("image") {
            ev["from"] = json!(image);
        }
    }
    let b = bus();
    let mut history = b.history.lock().unwrap();
    if history.len() == HISTORY {
        history.pop_front();
    }
    history.push_back((ns, ev.clone()));
    // Sent under the history lock, so a subscriber sees every event exactly once.
    let _ = b.live.send((ns, ev));
}

/// The past events from `since_ns` on, and a receiver for every later one.
pub fn subscribe(since_ns: i64) -> (Vec<Timed>, broadcast::Receiver<Timed>) {
    let b = bus();
    let history = b.history.lock().unwrap();
    let past = if since_ns > 0 {
        history
            .iter()
            .filter(|(t, _)| *t >= since_ns)
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    (past, b.live.subscribe())
}

/// Whether exit number `exits` of container `id` is reported for the first time (the monitor
/// and `stop` both observe exits; `die` goes out once).
pub fn first_report(id: &str, exits: u64) -> bool {
    let mut died = bus().died.lock().unwrap();
    let last = died.entry(id.to_owned()).or_insert(0);
    if *last >= exits {
        return false;
    }
    *last = exits;
    true
}

/// Drops what [`first_report`] keeps for a container that is gone.
pub fn forget(id: &str) {
    bus().died.lock().unwrap().remove(id);
}

/// Attributes as an event wants them: `("name", value)` pairs.
pub fn attrs<const N: usize>(pairs: [(&str, &str); N]) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_and_live_events_in_dockers_shape() {
        let t0 = now_ns();
        emit(
            "image",
            "tag",
            "busybox:test",
            attrs([("name", "busybox:test")]),
        );
        let (past, mut rx) = subscribe(t0);
        let ev = &past.iter().find(|(_, e)| e["Action"] == "tag").unwrap().1;
        assert_eq!(ev["Type"], "image");
        assert_eq!(ev["Actor"]["Attributes"]["name"], "busybox:test");
        assert!(ev["timeNano"].as_i64().unwrap() >= t0);
        emit("container", "die", "c1", attrs([("exitCode", "3")]));
        // Tests running beside this one emit too: find ours among what came live.
        let live = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|(_, e)| e)
            .find(|e| e["Actor"]["ID"] == "c1")
            .expect("the live event");
        assert_eq!(live["Action"], "die");
        assert_eq!(live["Actor"]["Attributes"]["exitCode"], "3");
        assert!(first_report("c1", 1));
        assert!(!first_report("c1", 1));
        assert!(first_report("c1", 2));
        forget("c1");
        assert!(first_report("c1", 1), "a forgotten container starts over");
    }
}
