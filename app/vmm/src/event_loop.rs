//! The device event loop: one epoll thread that runs every device's queue and backend work.
//!
//! Handlers register file descriptors under their own tokens through an [`EventCtl`]; the loop
//! never blocks on anything but `epoll_wait`, and handlers must not block either.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

/// A handler's own name for one of its file descriptors.
pub type Token = u32;

/// Something the loop drives: devices and their backends.
pub trait EventHandler: Send {
    /// Called once when the handler joins the loop: register the first descriptors.
    fn init(&mut self, ctl: &mut EventCtl<'_>);
    /// `token`'s descriptor is ready with `events`.
    fn handle(&mut self, token: Token, events: EventSet, ctl: &mut EventCtl<'_>);
}

/// Registration of one handler's descriptors.
pub struct EventCtl<'a> {
    epoll: &'a Epoll,
    id: u32,
}

impl EventCtl<'_> {
    fn data(&self, token: Token) -> u64 {
        (u64::from(self.id) << 32) | u64::from(token)
    }

    /// Watches `fd` for `events`, reported as `token`.
    pub fn add(&mut self, fd: RawFd, token: Token, events: EventSet) -> std::io::Result<()> {
        self.epoll.ctl(
            ControlOperation::Add,
            fd,
            EpollEvent::new(events, self.data(token)),
        )
    }

    /// Changes what `fd` is watched for.
    pub fn modify(&mut self, fd: RawFd, token: Token, events: EventSet) -> std::io::Result<()> {
        self.epoll.ctl(
            ControlOperation::Modify,
            fd,
            EpollEvent::new(events, self.data(token)),
        )
    }

    /// Stops watching `fd`.
    pub fn remove(&mut self, fd: RawFd) -> std::io::Result<()> {
        self.epoll
            .ctl(ControlOperation::Delete, fd, EpollEvent::default())
    }
}

const STOP_ID: u32 = u32::MAX;

/// The loop: an epoll set and the handlers behind it.
pub struct EventLoop {
    epoll: Epoll,
    handlers: Vec<Arc<Mutex<dyn EventHandler>>>,
    stop: EventFd,
}

impl EventLoop {
    pub fn new() -> std::io::Result<Self> {
        let epoll = Epoll::new()?;
        let stop = EventFd::new(EFD_NONBLOCK)?;
        epoll.ctl(
            ControlOperation::Add,
            stop.as_raw_fd(),
            EpollEvent::new(EventSet::IN, u64::from(STOP_ID) << 32),
        )?;
        Ok(EventLoop {
            epoll,
            handlers: Vec::new(),
            stop,
        })
    }

    /// Adds a handler and lets it register its descriptors.
    pub fn add_handler(&mut self, handler: Arc<Mutex<dyn EventHandler>>) {
        let id = self.handlers.len() as u32;
        let mut ctl = EventCtl {
            epoll: &self.epoll,
            id,
        };
        handler
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .init(&mut ctl);
        self.handlers.push(handler);
    }

    /// A handle that ends [`EventLoop::run`] when written.
    pub fn stopper(&self) -> std::io::Result<EventFd> {
        self.stop.try_clone()
    }

    /// Waits up to `timeout_ms` (-1: forever) and dispatches what is ready. Returns `false`
    /// once the stop event fired.
    pub fn run_once(&mut self, timeout_ms: i32) -> std::io::Result<bool> {
        let mut events = [EpollEvent::default(); 64];
        let n = match self.epoll.wait(timeout_ms, &mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Ok(true),
            Err(e) => return Err(e),
        };
        for event in &events[..n] {
            let id = (event.data() >> 32) as u32;
            let token = event.data() as u32;
            if id == STOP_ID {
                return Ok(false);
            }
            let Some(handler) = self.handlers.get(id as usize) else {
                continue;
            };
            let mut ctl = EventCtl {
                epoll: &self.epoll,
                id,
            };
            handler.lock().unwrap_or_else(|p| p.into_inner()).handle(
                token,
                event.event_set(),
                &mut ctl,
            );
        }
        Ok(true)
    }

    /// Runs until the stop event fires.
    pub fn run(mut self) -> std::io::Result<()> {
        while self.run_once(-1)? {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counter {
        evt: EventFd,
        seen: Arc<Mutex<Vec<Token>>>,
    }

    impl EventHandler for Counter {
        fn init(&mut self, ctl: &mut EventCtl<'_>) {
            ctl.add(self.evt.as_raw_fd(), 7, EventSet::IN).unwrap();
        }
        fn handle(&mut self, token: Token, _: EventSet, _: &mut EventCtl<'_>) {
            let _ = self.evt.read();
            self.seen.lock().unwrap().push(token);
        }
    }

    #[test]
    fn dispatches_to_the_handler_and_stops() {
        let mut lp = EventLoop::new().unwrap();
        let evt = EventFd::new(EFD_NONBLOCK).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        lp.add_handler(Arc::new(Mutex::new(Counter {
            evt: evt.try_clone().unwrap(),
            seen: seen.clone(),
        })));
        evt.write(1).unwrap();
        assert!(lp.run_once(1000).unwrap());
        assert_eq!(*seen.lock().unwrap(), vec![7]);
        lp.stopper().unwrap().write(1).unwrap();
        assert!(!lp.run_once(1000).unwrap());
    }
}
