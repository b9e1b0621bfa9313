//! `docker top`: the processes in a container's cgroup, in `ps -ef`'s columns, read from
//! /proc. Owns nothing but that reading.

use serde_json::{Value, json};

/// `ps -ef`'s titles, as dockerd answers by default.
const TITLES: [&str; 8] = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"];

/// Clock ticks per second for /proc/PID/stat times.
fn ticks() -> u64 {
    // SAFETY: sysconf reads a constant; no memory is passed.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// One `ps -ef` row from the text of /proc/PID/{stat,status,cmdline}.
fn row(pid: u32, stat: &str, status: &str, cmdline: &[u8], boot_unix: u64) -> Option<Vec<String>> {
    // The command name is in parentheses and may itself hold spaces or parentheses.
    let close = stat.rfind(')')?;
    let comm = &stat[stat.find('(')? + 1..close];
    let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // Fields after the name: state(0) ppid(1) ... tty_nr(4) ... utime(11) stime(12) ...
    // starttime(19).
    let ppid = rest.get(1)?.to_string();
    let tty_nr: u32 = rest.get(4)?.parse().ok()?;
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    let start: u64 = rest.get(19)?.parse().ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .unwrap_or("0");
    let user = if uid == "0" {
        "root".to_owned()
    } else {
        uid.to_owned()
    };
    let tty = match tty_nr {
        0 => "?".to_owned(),
        n if n >> 8 == 136 => format!("pts/{}", (n & 0xff) | ((n >> 12) & 0xfff00)),
        n => format!("{}:{}", n >> 8, n & 0xff),
    };
    let t = ticks();
    let cpu = (utime + stime) / t;
    let started = boot_unix + start / t;
    let day = started % 86_400;
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let cmd = if args.is_empty() {
        format!("[{comm}]")
    } else {
        args.join(" ")
    };
    Some(vec![
        user,
        pid.to_string(),
        ppid,
        "0".into(),
        format!("{:02}:{:02}", day / 3600, day % 3600 / 60),
        tty,
        format!("{:02}:{:02}:{:02}", cpu / 3600, cpu % 3600 / 60, cpu % 60),
        cmd,
    ])
}

/// The boot time in Unix seconds (/proc/stat's btime).
fn boot_time() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Docker's top JSON for the processes of cgroup `/sys/fs/cgroup/berth/ID` (and below it).
pub fn top(id: &str) -> Value {
    let mut pids = Vec::new();
    let root = std::path::PathBuf::from(format!("/sys/fs/cgroup/berth/{id}"));
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
        if let Ok(rd) = std::fs::read_dir(&dir) {
            dirs.extend(
                rd.filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    pids.sort_unstable();
    pids.dedup();
    let boot = boot_time();
    let processes: Vec<Vec<String>> = pids
        .into_iter()
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            row(pid, &stat, &status, &cmdline, boot)
        })
        .collect();
    json!({ "Titles": TITLES, "Processes": processes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_proc_stat_line_into_ps_columns() {
        let stat = "42 (sleep (x)) S 1 42 42 34816 42 4194560 100 0 0 0 250 150 0 0 20 0 1 0 360000 1000 100";
        let status = "Name:\tsleep\nUid:\t1000\t1000\t1000\t1000\n";
        let r = row(42, stat, status, b"sleep\x0030\x00", 0).unwrap();
        let t = ticks();
        assert_eq!(r[0], "1000");
        assert_eq!(r[1], "42");
        assert_eq!(r[2], "1");
        assert_eq!(r[5], "pts/0");
        assert_eq!(r[6], format!("00:00:{:02}", 400 / t));
        assert_eq!(r[7], "sleep 30");
        // A kernel thread has no command line: its name in brackets.
        let r = row(2, stat, "Uid:\t0\t0\t0\t0\n", b"", 0).unwrap();
        assert_eq!((r[0].as_str(), r[7].as_str()), ("root", "[sleep (x)]"));
    }

    #[test]
    fn own_cgroup_less_container_lists_nothing() {
        let v = top("no-such-container");
        assert_eq!(v["Titles"][0], "UID");
        assert_eq!(v["Processes"].as_array().unwrap().len(), 0);
    }
}
