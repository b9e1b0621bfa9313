//! A one-byte port that ends the VMM with the value written: how test guests report a
//! result. Only the test-guest configuration puts it on the bus.

use std::sync::Arc;

use crate::bus::BusDevice;
use crate::vmm::{ExitReason, ExitSignal};

pub struct DebugExit {
    exit: Arc<ExitSignal>,
}

impl DebugExit {
    pub fn new(exit: Arc<ExitSignal>) -> Self {
        DebugExit { exit }
    }
}

impl BusDevice for DebugExit {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        if let Some(code) = data.first() {
            self.exit.request(ExitReason::DebugExit(*code));
        }
    }
}
