//! The rng's event-loop side: a queue notification fills the queue.

use std::os::fd::AsRawFd;

use vmm_sys_util::epoll::EventSet;

use super::device::Rng;
use crate::event_loop::{EventCtl, EventHandler, Token};

impl EventHandler for Rng {
    fn init(&mut self, ctl: &mut EventCtl<'_>) {
        for (i, evt) in self.core.queue_events.iter().enumerate() {
            if let Err(e) = ctl.add(evt.as_raw_fd(), i as Token, EventSet::IN) {
                tracing::error!("rng: watching queue {i}: {e}");
            }
        }
    }

    fn handle(&mut self, token: Token, _events: EventSet, _ctl: &mut EventCtl<'_>) {
        if let Some(evt) = self.core.queue_events.get(token as usize) {
            let _ = evt.read();
        }
        self.process_queue();
    }
}
