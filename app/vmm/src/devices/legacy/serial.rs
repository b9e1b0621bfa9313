//! The COM1 console (vm-superio's 16550 model). Output goes to any number of writers: the
//! serial log file and, when the engine runs `berth vmm` in the foreground, stdout.

use std::io::Write;
use std::sync::Arc;

use vm_superio::Serial;

use crate::bus::BusDevice;
use crate::interrupt::IrqLine;

/// Fans serial output out to several sinks; a sink that fails is dropped, not retried.
#[derive(Default)]
pub struct SerialOutput {
    sinks: Vec<Box<dyn Write + Send>>,
}

impl SerialOutput {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, sink: Box<dyn Write + Send>) -> Self {
        self.sinks.push(sink);
        self
    }
}

impl Write for SerialOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.sinks.retain_mut(|s| s.write_all(buf).is_ok());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.sinks.retain_mut(|s| s.flush().is_ok());
        Ok(())
    }
}

/// A 16550 UART at COM1.
pub struct SerialConsole {
    uart: Serial<SerialIrq, vm_superio::serial::NoEvents, SerialOutput>,
}

impl SerialConsole {
    pub fn new(irq: Arc<IrqLine>, out: SerialOutput) -> Self {
        SerialConsole {
            uart: Serial::new(SerialIrq(irq), out),
        }
    }

    /// Queues bytes for the guest to read (console input).
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> usize {
        self.uart.enqueue_raw_bytes(bytes).unwrap_or(0)
    }
}

/// The UART's interrupt: COM1's line.
pub struct SerialIrq(pub Arc<IrqLine>);

impl vm_superio::Trigger for SerialIrq {
    type E = std::io::Error;

    fn trigger(&self) -> std::io::Result<()> {
        self.0.trigger()
    }
}

impl BusDevice for SerialConsole {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if data.len() == 1 && offset < 8 {
            data[0] = self.uart.read(offset as u8);
        } else {
            data.fill(0xff);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if data.len() == 1 && offset < 8 {
            if let Err(e) = self.uart.write(offset as u8, data[0]) {
                tracing::debug!("serial write: {e:?}");
            }
            if offset == 0 {
                let _ = self.uart.writer_mut().flush();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn bytes_written_to_thr_reach_every_sink() {
        let (a, b) = (Shared::default(), Shared::default());
        let out = SerialOutput::new()
            .with(Box::new(a.clone()))
            .with(Box::new(b.clone()));
        let mut console = SerialConsole::new(Arc::new(IrqLine::new().unwrap()), out);
        for byte in b"hi\n" {
            console.write(0, &[*byte]);
        }
        assert_eq!(&*a.0.lock().unwrap(), b"hi\n");
        assert_eq!(&*b.0.lock().unwrap(), b"hi\n");
        let mut lsr = [0u8];
        console.read(5, &mut lsr);
        assert_ne!(lsr[0] & 0x20, 0, "THR empty");
    }
}
