//! The event-loop side of virtio-fs: the backend processes the queues itself (it reads the
//! queue notifications), so the loop only turns its "used buffers" signals into the device's
//! interrupt.

use std::os::fd::AsRawFd;

use vmm_sys_util::epoll::EventSet;

use super::device::Fs;
use crate::event_loop::{EventCtl, EventHandler, Token};

impl EventHandler for Fs {
    fn init(&mut self, ctl: &mut EventCtl<'_>) {
        for (i, call) in self.calls.iter().enumerate() {
            if let Err(e) = ctl.add(call.as_raw_fd(), i as Token, EventSet::IN) {
                tracing::error!("virtio-fs: watching queue {i}'s signals: {e}");
            }
        }
    }

    fn handle(&mut self, token: Token, _events: EventSet, _ctl: &mut EventCtl<'_>) {
        if let Some(call) = self.calls.get(token as usize) {
            let _ = call.read();
        }
        self.core.interrupt.signal_used_queue();
    }
}
