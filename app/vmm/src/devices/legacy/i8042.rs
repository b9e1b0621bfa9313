//! The i8042 keyboard controller, only so that the guest's `reboot` (command 0xfe on port
//! 0x64) ends the VMM with [`ExitReason::Reset`](crate::vmm::ExitReason).

use std::sync::Arc;

use vm_superio::I8042Device;

use crate::bus::BusDevice;
use crate::vmm::{ExitReason, ExitSignal};

/// Raises [`ExitReason::Reset`] when the controller pulses the reset line.
pub struct ResetLine(Arc<ExitSignal>);

impl vm_superio::Trigger for ResetLine {
    type E = std::convert::Infallible;

    fn trigger(&self) -> Result<(), Self::E> {
        self.0.request(ExitReason::Reset);
        Ok(())
    }
}

/// Ports 0x60..=0x64.
pub struct I8042 {
    dev: I8042Device<ResetLine>,
}

impl I8042 {
    pub fn new(exit: Arc<ExitSignal>) -> Self {
        I8042 {
            dev: I8042Device::new(ResetLine(exit)),
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if data.len() == 1 && offset <= 4 {
            data[0] = self.dev.read(offset as u8);
        } else {
            data.fill(0xff);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if data.len() == 1 && offset <= 4 {
            let _ = self.dev.write(offset as u8, data[0]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_command_requests_a_reset_exit() {
        let exit = Arc::new(ExitSignal::new().unwrap());
        let mut kbd = I8042::new(exit.clone());
        kbd.write(4, &[0x01]);
        assert_eq!(exit.reason(), None);
        kbd.write(4, &[0xfe]);
        assert_eq!(exit.reason(), Some(ExitReason::Reset));
    }
}
