//! The NIC's event-loop side: queue notifications, and passt's socket watched for reading only
//! while the guest takes frames and for writing only while frames wait for it.

use std::os::fd::AsRawFd;

use vmm_sys_util::epoll::EventSet;

use super::device::{Net, RX_QUEUE, TX_QUEUE};
use crate::event_loop::{EventCtl, EventHandler, Token};

const STREAM_TOKEN: Token = 16;

impl Net {
    /// What the socket should be watched for now.
    fn stream_interest(&self) -> EventSet {
        let mut set = EventSet::empty();
        if self.stream.wants_read() {
            set |= EventSet::IN;
        }
        if self.stream.wants_write() {
            set |= EventSet::OUT;
        }
        set
    }

    fn update_interest(&mut self, ctl: &mut EventCtl<'_>) {
        let want = self.stream_interest();
        match self.stream.fd() {
            Some(fd) if want != self.watching => {
                if let Err(e) = ctl.modify(fd, STREAM_TOKEN, want) {
                    tracing::error!("net: watching passt's socket: {e}");
                }
                self.watching = want;
            }
            Some(_) => {}
            // Closed: the descriptor left the epoll set when it was closed.
            None => self.watching = EventSet::empty(),
        }
    }
}

impl EventHandler for Net {
    fn init(&mut self, ctl: &mut EventCtl<'_>) {
        for (i, evt) in self.core.queue_events.iter().enumerate() {
            if let Err(e) = ctl.add(evt.as_raw_fd(), i as Token, EventSet::IN) {
                tracing::error!("net: watching queue {i}: {e}");
            }
        }
        if let Some(fd) = self.stream.fd() {
            self.watching = self.stream_interest();
            if let Err(e) = ctl.add(fd, STREAM_TOKEN, self.watching) {
                tracing::error!("net: watching passt's socket: {e}");
            }
        }
    }

    fn handle(&mut self, token: Token, events: EventSet, ctl: &mut EventCtl<'_>) {
        if let Some(evt) = self.core.queue_events.get(token as usize) {
            let _ = evt.read();
        }
        match token as usize {
            RX_QUEUE => {
                self.process_rx();
            }
            TX_QUEUE => {
                self.process_tx();
            }
            _ => {
                if events.contains(EventSet::OUT) {
                    self.process_stream_out();
                }
                if events.contains(EventSet::IN) {
                    self.process_stream_in();
                }
                // Reported whatever the interest, so it must end the stream or the loop spins.
                if events.intersects(EventSet::ERROR | EventSet::HANG_UP)
                    && self.stream.is_connected()
                {
                    self.stream_failed(&"passt closed its socket");
                }
            }
        }
        self.update_interest(ctl);
    }
}
