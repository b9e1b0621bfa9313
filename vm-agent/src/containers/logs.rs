//! The json-file log: its rotation (`max-size`, `max-file`, bounded by default), reading
//! entries from a byte offset (for following, across a rotation), the last entries read from
//! the end of the files (`--tail`), and Docker's filters (streams, since, until, tail).

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// json-file's rotation: the current file is rotated once it would pass `max_size` bytes,
/// keeping `max_file` files in all (`log.json`, `log.json.1`, ...).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rotation {
    /// 0: never rotated.
    pub max_size: u64,
    pub max_file: u32,
}

/// Checks a create request's log driver as dockerd's `ValidateLogOpts` does: json-file (the
/// default, also when the type is empty), `local` (kept as json-file here) and `none` are
/// served; a driver dockerd knows but Berth cannot ship to is refused plainly; any other name
/// gets dockerd's words.
pub fn check_driver(driver: &str) -> Result<(), String> {
    const SERVED: &[&str] = &["", "json-file", "local", "none"];
    const DOCKERDS_OTHERS: &[&str] = &[
        "syslog",
        "journald",
        "gelf",
        "fluentd",
        "awslogs",
        "splunk",
        "etwlogs",
        "gcplogs",
        "logentries",
    ];
    if SERVED.contains(&driver) {
        Ok(())
    } else if DOCKERDS_OTHERS.contains(&driver) {
        Err(format!(
            "logger: the {driver} log driver is not available in Berth; use json-file, local or none"
        ))
    } else {
        Err(format!(
            "logger: no log driver named '{driver}' is registered"
        ))
    }
}

impl Rotation {
    /// Without options: 10 MB in 3 files, so that no container's log fills the disk.
    pub const DEFAULT: Rotation = Rotation {
        max_size: 10_000_000,
        max_file: 3,
    };

    /// The rotation a container's `LogConfig.Config` asks for, with dockerd's words for a bad
    /// value.
    pub fn from_options(options: Option<&HashMap<String, String>>) -> Result<Rotation, String> {
        let mut r = Rotation::DEFAULT;
        let Some(options) = options else {
            return Ok(r);
        };
        if let Some(size) = options.get("max-size") {
            r.max_size = parse_size(size)?;
        }
        if let Some(n) = options.get("max-file") {
            r.max_file = n
                .parse::<u32>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| format!("max-file must be a number above 0, not {n:?}"))?;
        }
        Ok(r)
    }
}

/// A size as docker's log options give it: `1024`, `10k`, `10m`, `1g` (also `kb`, `mb`,
/// `gb`; decimal units, as go-units' FromHumanSize). `-1` means unbounded.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    if t == "-1" {
        return Ok(0);
    }
    let digits = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: f64 = num.parse().map_err(|_| format!("invalid size: '{s}'"))?;
    let mult: f64 = match unit.trim() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        _ => return Err(format!("invalid size: '{s}'")),
    };
    Ok((n * mult) as u64)
}

/// `path.N`: the `n`th older file of the log at `path` (0 is `path` itself).
pub fn rotated(path: &Path, n: u32) -> PathBuf {
    if n == 0 {
        return path.to_path_buf();
    }
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// The log's files, newest first.
pub fn files_newest_first(path: &Path) -> Vec<PathBuf> {
    (0..)
        .map(|n| rotated(path, n))
        .take_while(|p| p.exists())
        .collect()
}

fn parse_line(line: &[u8]) -> Option<Entry> {
    let v = serde_json::from_slice::<serde_json::Value>(line).ok()?;
    Some(Entry {
        stream: if v["stream"] == "stderr" { 2 } else { 1 },
        data: v["log"].as_str().unwrap_or_default().as_bytes().to_vec(),
        time: v["time"].as_str().unwrap_or_default().to_owned(),
    })
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// 1 stdout, 2 stderr.
    pub stream: u32,
    pub data: Vec<u8>,
    pub time: String,
}

/// Complete entries after `offset`, and the offset just past the last complete line.
pub fn read_from(path: &Path, offset: u64) -> (Vec<Entry>, u64) {
    read_range(path, offset, u64::MAX)
}

/// Complete entries between byte `offset` and `end`, and the offset past the last one.
pub fn read_range(path: &Path, offset: u64, end: u64) -> (Vec<Entry>, u64) {
    let Ok(mut f) = std::fs::File::open(path) else {
        return (Vec::new(), offset);
    };
    if f.seek(SeekFrom::Start(offset)).is_err() {
        return (Vec::new(), offset);
    }
    let mut buf = Vec::new();
    let _ = (&mut f)
        .take(end.saturating_sub(offset))
        .read_to_end(&mut buf);
    let Some(last_nl) = buf.iter().rposition(|b| *b == b'\n') else {
        return (Vec::new(), offset);
    };
    let entries = buf[..last_nl]
        .split(|b| *b == b'\n')
        .filter_map(parse_line)
        .collect();
    (entries, offset + last_nl as u64 + 1)
}

pub fn log_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Every entry of the log's files, oldest first (bounded by the rotation), the current file up
/// to `current_end`.
pub fn read_all(path: &Path, current_end: u64) -> Vec<Entry> {
    let mut files = files_newest_first(path);
    files.reverse();
    files
        .iter()
        .flat_map(|f| {
            let end = if f.as_path() == path {
                current_end
            } else {
                u64::MAX
            };
            read_range(f, 0, end).0
        })
        .collect()
}

/// Docker's filters and `tail` (>= 0), read from the end of the log's files backwards, so that
/// `--tail 1` of a large log reads a block, not the log. The current file is read up to
/// `current_end` (where a follower then picks up), the rotated ones whole.
pub fn tail(
    path: &Path,
    filters: (bool, bool, i64, i64),
    tail: usize,
    current_end: u64,
) -> Vec<Entry> {
    let (stdout, stderr, since, until) = filters;
    const BLOCK: u64 = 64 * 1024;
    let wanted = |e: &Entry| {
        let t = crate::clock::parse(&e.time).unwrap_or(0.0);
        ((e.stream == 1 && stdout) || (e.stream == 2 && stderr))
            && (since <= 0 || t >= since as f64)
            && (until <= 0 || t < until as f64)
    };
    let mut out: Vec<Entry> = Vec::new();
    'files: for file in files_newest_first(path) {
        let Ok(mut f) = std::fs::File::open(&file) else {
            continue;
        };
        let mut end = f.metadata().map_or(0, |m| m.len());
        if file.as_path() == path {
            end = end.min(current_end);
        }
        // Bytes after `end` that do not yet make a whole line (the line began earlier).
        let mut carry: Vec<u8> = Vec::new();
        while out.len() < tail {
            let start = end.saturating_sub(BLOCK);
            let mut block = vec![0u8; (end - start) as usize];
            if f.seek(SeekFrom::Start(start)).is_err() || f.read_exact(&mut block).is_err() {
                break;
            }
            block.extend_from_slice(&carry);
            let mut lines: Vec<&[u8]> = block.split(|b| *b == b'\n').collect();
            // The first piece may be cut by the block's start: kept for the next block.
            let first = if start > 0 {
                lines.remove(0).to_vec()
            } else {
                Vec::new()
            };
            for line in lines.into_iter().rev() {
                if let Some(e) = parse_line(line).filter(wanted) {
                    out.push(e);
                    if out.len() == tail {
                        break 'files;
                    }
                }
            }
            carry = first;
            if start == 0 {
                break;
            }
            end = start;
        }
        if out.len() >= tail {
            break;
        }
    }
    out.reverse();
    out
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
    fn log_drivers_are_checked_with_dockerds_words() {
        for ok in ["", "json-file", "local", "none"] {
            assert!(check_driver(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            check_driver("foo").unwrap_err(),
            "logger: no log driver named 'foo' is registered"
        );
        assert!(
            check_driver("syslog")
                .unwrap_err()
                .contains("not available")
        );
    }

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

    #[test]
    fn sizes_and_options_as_dockerd_takes_them() {
        assert_eq!(parse_size("10m").unwrap(), 10_000_000);
        assert_eq!(parse_size("1g").unwrap(), 1_000_000_000);
        assert_eq!(parse_size("512k").unwrap(), 512_000);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert_eq!(parse_size("-1").unwrap(), 0);
        assert!(parse_size("ten").is_err());
        assert_eq!(Rotation::from_options(None).unwrap(), Rotation::DEFAULT);
        let opts: HashMap<String, String> = [
            ("max-size".into(), "1k".into()),
            ("max-file".into(), "2".into()),
        ]
        .into();
        assert_eq!(
            Rotation::from_options(Some(&opts)).unwrap(),
            Rotation {
                max_size: 1000,
                max_file: 2
            }
        );
        let bad: HashMap<String, String> = [("max-file".into(), "0".into())].into();
        assert!(Rotation::from_options(Some(&bad)).is_err());
    }

    #[test]
    fn tails_come_from_the_end_across_rotated_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.json");
        let line = |i: usize, stream: &str| {
            format!(
                "{{\"log\":\"line {i}\\n\",\"stream\":\"{stream}\",\"time\":\"2024-01-01T00:00:00Z\"}}\n"
            )
        };
        // Older lines in log.json.1, newer in log.json; enough to span several blocks.
        let old: String = (0..3000).map(|i| line(i, "stdout")).collect();
        let new: String = (3000..6000)
            .map(|i| line(i, if i % 2 == 0 { "stdout" } else { "stderr" }))
            .collect();
        std::fs::write(rotated(&path, 1), old).unwrap();
        std::fs::write(&path, new).unwrap();
        let got = tail(&path, (true, true, 0, 0), 2, u64::MAX);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].data, b"line 5999\n");
        assert_eq!(got[0].data, b"line 5998\n");
        let out_only = tail(&path, (true, false, 0, 0), 3, u64::MAX);
        assert_eq!(out_only.last().unwrap().data, b"line 5998\n");
        let across = tail(&path, (true, true, 0, 0), 3002, u64::MAX);
        assert_eq!(across.len(), 3002);
        assert_eq!(across[0].data, b"line 2998\n");
        assert_eq!(read_all(&path, u64::MAX).len(), 6000);
        assert!(tail(&path, (true, true, 0, 0), 0, u64::MAX).is_empty());
    }
}
