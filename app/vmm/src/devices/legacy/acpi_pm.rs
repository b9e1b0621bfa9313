//! The hardware-reduced ACPI sleep-control register: the guest's `poweroff` writes
//! SLP_TYP=S5 with SLP_EN here, which ends the VMM with [`ExitReason::Poweroff`].

use std::sync::Arc;

use crate::arch::x86_64::acpi::{S5_SLEEP_TYPE, SLEEP_ENABLE};
use crate::bus::BusDevice;
use crate::vmm::{ExitReason, ExitSignal};

/// Sleep control at offset 0, sleep status at offset 1.
pub struct AcpiPm {
    exit: Arc<ExitSignal>,
}

impl AcpiPm {
    pub fn new(exit: Arc<ExitSignal>) -> Self {
        AcpiPm { exit }
    }
}

impl BusDevice for AcpiPm {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset != 0 || data.is_empty() {
            return;
        }
        let value = data[0];
        let sleep_type = (value >> 2) & 0x7;
        if value & SLEEP_ENABLE != 0 && sleep_type == S5_SLEEP_TYPE {
            self.exit.request(ExitReason::Poweroff);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s5_with_slp_en_powers_off() {
        let exit = Arc::new(ExitSignal::new().unwrap());
        let mut pm = AcpiPm::new(exit.clone());
        pm.write(0, &[S5_SLEEP_TYPE << 2]);
        assert_eq!(exit.reason(), None);
        pm.write(0, &[(S5_SLEEP_TYPE << 2) | SLEEP_ENABLE]);
        assert_eq!(exit.reason(), Some(ExitReason::Poweroff));
    }
}
