//! Legacy PC devices on port I/O: the COM1 serial console, the i8042 reset line, the ACPI
//! sleep-control register (poweroff) and a debug-exit port for test guests.

pub mod acpi_pm;
pub mod debug_exit;
pub mod i8042;
pub mod serial;

pub use acpi_pm::AcpiPm;
pub use debug_exit::DebugExit;
pub use i8042::I8042;
pub use serial::{SerialConsole, SerialOutput};
