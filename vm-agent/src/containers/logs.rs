//! Reading the json-file log the shim writes: entries from a byte offset (for following),
//! and Docker's filters (streams, since, until, tail).

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// 1 stdout, 2 stderr.
    pub stream: u32,
    pub data: Vec<u8>,
    pub time: String,
}

/// Complete entries after `offset`, and the offset just past the last complete line.
pub fn read_from(path: &Path, offset: u64) -> (Vec<Entry>, u64) {
    let Ok(mut f) = std::fs::File::open(path) else {
        return (Vec::new(), offset);
    };
    if f.seek(SeekFrom::Start(offset)).is_err() {
        return (Vec::new(), offset);
    }
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let Some(last_nl) = buf.iter().rposition(|b| *b == b'\n') else {
        return (Vec::new(), offset);
    };
    let entries = buf[..last_nl]
        .split(|b| *b == b'\n')
        .filter_map(|line| serde_json::from_slice::<serde_json::Value>(line).ok())
        .map(|v| Entry {
            stream: if v["stream"] == "stderr" { 2 } else { 1 },
            data: v["log"].as_str().unwrap_or_default().as_bytes().to_vec(),
            time: v["time"].as_str().unwrap_or_default().to_owned(),
        })
        .collect();
    (entries, offset + last_nl as u64 + 1)
}

pub fn log_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Docker's `logs` filters; `since`/`until` are Unix seconds (0 = unbounded), `tail` < 0 = all.
pub fn select(
    entries: Vec<Entry>,
    stdout: bool,
    stderr: bool,
    since: i64,
    until: i64,
    tail: i64,
) -> Vec<Entry> {
    let mut out: Vec<Entry> = entries
        .into_iter()
        .filter(|e| (e.stream == 1 && stdout) || (e.stream == 2 && stderr))
        .filter(|e| {
            let t = crate::clock::parse(&e.time).unwrap_or(0.0);
            (since <= 0 || t >= since as f64) && (until <= 0 || t < until as f64)
        })
        .collect();
    if tail >= 0 && (tail as usize) < out.len() {
        out.drain(..out.len() - tail as usize);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_whole_lines_and_filters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.json");
        std::fs::write(
            &path,
            concat!(
                r#"{"log":"one\n","stream":"stdout","time":"2024-01-01T00:00:01Z"}"#,
                "\n",
                r#"{"log":"two\n","stream":"stderr","time":"2024-01-01T00:00:02Z"}"#,
                "\n",
                r#"{"log":"three\n","stream":"stdout","time":"2024-01-01T00:00:03Z"}"#,
                "\n",
                r#"{"log":"partial"#
            ),
        )
        .unwrap();
        let (entries, off) = read_from(&path, 0);
        assert_eq!(entries.len(), 3);
        assert!(off < log_len(&path));
        let (more, _) = read_from(&path, off);
        assert!(more.is_empty());
        let t0 = 1_704_067_200;
        let only_out = select(entries.clone(), true, false, 0, 0, -1);
        assert_eq!(only_out.len(), 2);
        let tail = select(entries.clone(), true, true, 0, 0, 1);
        assert_eq!(tail[0].data, b"three\n");
        let window = select(entries, true, true, t0 + 2, t0 + 3, -1);
        assert_eq!(window.len(), 1);
        assert_eq!(window[0].stream, 2);
    }
}
