//! Accept loops that neither die nor spin on an error (EMFILE most of all): the pause each
//! listener of the engine and the agent takes after a failed accept.

use std::time::Duration;

/// The pause after a failed accept: 5 ms, doubling to 1 s, back to 5 ms after a success.
pub struct AcceptBackoff {
    delay: Duration,
    what: &'static str,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(5);
    const MOST: Duration = Duration::from_secs(1);

    /// For the accept loop of `what` (named in the log).
    pub fn new(what: &'static str) -> Self {
        AcceptBackoff {
            delay: Self::FIRST,
            what,
        }
    }

    /// Logs `e` and waits before the next accept (out of descriptors, connections end and
    /// free some; spinning would only burn the CPU).
    pub async fn failed(&mut self, e: &std::io::Error) {
        tracing::warn!(
            "accepting on {}: {e}; retrying in {:?}",
            self.what,
            self.delay
        );
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(Self::MOST);
    }

    pub fn succeeded(&mut self) {
        self.delay = Self::FIRST;
    }

    /// Calls `accept` until it succeeds, pausing after each failure: an accept loop's step.
    pub async fn retry<T, F, Fut>(&mut self, mut accept: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::io::Result<T>>,
    {
        loop {
            match accept().await {
                Ok(v) => {
                    self.succeeded();
                    return v;
                }
                Err(e) => self.failed(&e).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_to_a_second_and_resets() {
        let mut b = AcceptBackoff::new("test");
        let e = std::io::Error::from_raw_os_error(24);
        let start = tokio::time::Instant::now();
        for _ in 0..12 {
            b.failed(&e).await;
        }
        assert_eq!(b.delay, AcceptBackoff::MOST);
        assert!(start.elapsed() < Duration::from_secs(8));
        b.succeeded();
        assert_eq!(b.delay, AcceptBackoff::FIRST);
    }
}
