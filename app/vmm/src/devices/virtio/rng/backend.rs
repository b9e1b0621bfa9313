//! Where entropy comes from: the host kernel's getrandom(2).

/// A source of random bytes.
pub trait EntropySource: Send {
    fn fill(&mut self, buf: &mut [u8]) -> std::io::Result<()>;
}

/// getrandom(2) without flags: blocks only before the host's pool is initialised at boot.
pub struct OsEntropy;

impl EntropySource for OsEntropy {
    fn fill(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let rest = &mut buf[done..];
            // SAFETY: `rest` is a valid writable buffer of `rest.len()` bytes.
            let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            done += n as usize;
        }
        Ok(())
    }
}
