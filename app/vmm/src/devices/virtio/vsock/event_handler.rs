//! The vsock device's event-loop side: queue notifications and the muxer's epoll set.

use std::os::fd::AsRawFd;

use vmm_sys_util::epoll::EventSet;

use super::device::{EVENT_QUEUE, RX_QUEUE, TX_QUEUE, Vsock};
use crate::event_loop::{EventCtl, EventHandler, Token};

const MUXER_TOKEN: Token = 16;

impl EventHandler for Vsock {
    fn init(&mut self, ctl: &mut EventCtl<'_>) {
        for (i, evt) in self.core.queue_events.iter().enumerate() {
            if let Err(e) = ctl.add(evt.as_raw_fd(), i as Token, EventSet::IN) {
                tracing::error!("vsock: watching queue {i}: {e}");
            }
        }
        if let Err(e) = ctl.add(self.muxer.epoll_fd(), MUXER_TOKEN, EventSet::IN) {
            tracing::error!("vsock: watching the host sockets: {e}");
        }
    }

    fn handle(&mut self, token: Token, _events: EventSet, _ctl: &mut EventCtl<'_>) {
        if let Some(evt) = self.core.queue_events.get(token as usize) {
            let _ = evt.read();
        }
        match token as usize {
            RX_QUEUE => {
                self.process_rx();
            }
            TX_QUEUE => {
                self.process_tx();
                self.process_rx();
            }
            EVENT_QUEUE => {}
            _ => self.process_backend(),
        }
    }
}
