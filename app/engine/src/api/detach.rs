//! Detach keys: the sequence (`ctrl-p,ctrl-q` unless the client names another) that ends an
//! attach and leaves the container running, found in what the client types as dockerd's escape
//! proxy finds it.

/// dockerd's default detach sequence.
pub const DEFAULT: &str = "ctrl-p,ctrl-q";

/// `ctrl-a`..`ctrl-z`, `ctrl-@`, `ctrl-[`, `ctrl-\`, `ctrl-]`, `ctrl-^`, `ctrl-_` or single
/// characters, comma-separated (moby's `term.ToBytes`); the bytes they stand for.
pub fn parse(keys: &str) -> Result<Vec<u8>, String> {
    let invalid = || format!("Invalid detach keys ({keys}) provided");
    keys.split(',')
        .map(|key| {
            if key.len() == 1 {
                return Ok(key.as_bytes()[0]);
            }
            let lower = key.to_ascii_lowercase();
            let rest = lower.strip_prefix("ctrl-").ok_or_else(invalid)?;
            match rest.as_bytes() {
                [c @ b'a'..=b'z'] => Ok(c - b'a' + 1),
                [b'@'] => Ok(0),
                [c @ (b'[' | b'\\' | b']' | b'^' | b'_')] => Ok(c - b'[' + 27),
                _ => Err(invalid()),
            }
        })
        .collect()
}

/// Watches a client's input for the detach sequence. Bytes that may begin it are held back
/// until they complete it (detach) or stop matching (then they pass on, in order).
pub struct Scanner {
    keys: Vec<u8>,
    held: usize,
}

impl Scanner {
    pub fn new(keys: Vec<u8>) -> Scanner {
        Scanner { keys, held: 0 }
    }

    /// What of `input` goes on to the container, and whether the sequence is now complete
    /// (nothing after it goes on).
    pub fn scan(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if self.keys.get(self.held) == Some(&b) {
                self.held += 1;
                if self.held == self.keys.len() {
                    return (out, true);
                }
                continue;
            }
            out.extend_from_slice(&self.keys[..self.held]);
            self.held = 0;
            if self.keys.first() == Some(&b) {
                self.held = 1;
            } else {
                out.push(b);
            }
        }
        (out, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_as_moby_reads_them() {
        assert_eq!(parse(DEFAULT).unwrap(), vec![16, 17]);
        assert_eq!(parse("ctrl-A,x").unwrap(), vec![1, b'x']);
        assert_eq!(parse("ctrl-@,ctrl-[,ctrl-_").unwrap(), vec![0, 27, 31]);
        assert_eq!(
            parse("ctrl-1").unwrap_err(),
            "Invalid detach keys (ctrl-1) provided"
        );
        assert!(parse("alt-x").is_err());
    }

    #[test]
    fn the_sequence_detaches_and_near_misses_pass_on_whole() {
        let mut s = Scanner::new(vec![16, 17]);
        assert_eq!(s.scan(b"ab"), (b"ab".to_vec(), false));
        // Split across reads, and held meanwhile.
        assert_eq!(s.scan(&[b'c', 16]), (b"c".to_vec(), false));
        assert_eq!(s.scan(&[17, b'z']), (vec![], true));
        let mut s = Scanner::new(vec![16, 17]);
        assert_eq!(s.scan(&[16, b'x', 16, 16, 17]), (vec![16, b'x', 16], true));
        let mut s = Scanner::new(vec![b'q']);
        assert_eq!(s.scan(b"abq"), (b"ab".to_vec(), true));
    }
}
