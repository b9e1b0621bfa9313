//! Building and running one VM: guest memory, the vCPUs, buses, legacy and virtio devices,
//! the device event loop, the boot payload (Linux or a small test guest) and ACPI, then the
//! run until an [`ExitReason`].
//!
//! This is the only module that wires the others together; it owns no device logic.

use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use crate::arch::x86_64::{acpi, boot, layout, regs};
use crate::bus::{Bus, BusDevice, BusError};
use crate::devices::legacy::{AcpiPm, DebugExit, I8042, SerialConsole, SerialOutput};
use crate::devices::virtio::blk::{Block, DiskFile};
use crate::devices::virtio::fs::Fs;
use crate::devices::virtio::net::{FrameStream, Net};
use crate::devices::virtio::vsock::Vsock;
use crate::devices::virtio::{MmioTransport, VirtioDevice, mmio::QUEUE_NOTIFY_OFFSET, rng::Rng};
use crate::event_loop::{EventHandler, EventLoop};
use crate::hypervisor::{HypervisorError, Kvm, StartState, Vm};
use crate::interrupt::IrqLine;
use crate::vcpu::{VcpuRunner, install_kick_handler, kick_signal};

/// Why the VM ended. [`ExitReason::exit_code`] is what `berth vmm` exits with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitReason {
    /// The guest powered off (ACPI S5 or a platform shutdown event).
    Poweroff,
    /// The guest rebooted (i8042 reset, ACPI reset, or a triple fault).
    Reset,
    /// A test guest halted with nothing to wake it.
    Halted,
    /// A test guest wrote this value to the debug-exit port.
    DebugExit(u8),
    /// The host asked the VMM to stop.
    Stopped,
    /// The VMM could not keep the guest running.
    Error(String),
}

impl ExitReason {
    /// 0 poweroff or host stop, 1 error, 2 reboot, 3 halted, else the debug-exit value + 16.
    pub fn exit_code(&self) -> i32 {
        match self {
            ExitReason::Poweroff | ExitReason::Stopped => 0,
            ExitReason::Error(_) => 1,
            ExitReason::Reset => 2,
            ExitReason::Halted => 3,
            ExitReason::DebugExit(v) => 16 + i32::from(*v),
        }
    }
}

/// The first exit request wins; everyone else sees it.
pub struct ExitSignal {
    reason: Mutex<Option<ExitReason>>,
    evt: EventFd,
}

impl ExitSignal {
    pub fn new() -> std::io::Result<Self> {
        Ok(ExitSignal {
            reason: Mutex::new(None),
            evt: EventFd::new(0)?,
        })
    }

    /// Asks the VM to exit for `reason` (ignored if another reason came first).
    pub fn request(&self, reason: ExitReason) {
        let mut slot = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(reason);
            let _ = self.evt.write(1);
        }
    }

    pub fn reason(&self) -> Option<ExitReason> {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn is_requested(&self) -> bool {
        self.reason().is_some()
    }

    /// Blocks until an exit is requested.
    pub fn wait(&self) -> ExitReason {
        loop {
            if let Some(r) = self.reason() {
                return r;
            }
            let _ = self.evt.read();
        }
    }
}

/// Where the serial console writes.
#[derive(Debug, Clone, Default)]
pub struct SerialConfig {
    /// Appended to (created if missing).
    pub log: Option<PathBuf>,
    /// Also copy to the VMM's stdout.
    pub stdout: bool,
}

/// What to run.
#[derive(Debug, Clone)]
pub enum Boot {
    /// A Linux bzImage (or ELF vmlinux), its initrd and command line.
    Linux {
        kernel: PathBuf,
        initrd: Option<PathBuf>,
        cmdline: String,
    },
    /// A flat real-mode test guest loaded at `0:load_addr` in 512 KiB of RAM, with virtio
    /// windows from [`TEST_GUEST_MMIO_BASE`] and a debug-exit port. No irqchip, so HLT exits.
    TestGuest { image: Vec<u8>, load_addr: u16 },
}

/// Test guests: RAM size and where their virtio windows start (reachable from real mode).
pub const TEST_GUEST_RAM: u64 = 0x8_0000;
pub const TEST_GUEST_MMIO_BASE: u64 = 0x9_0000;

/// One VM's configuration.
#[derive(Debug, Clone)]
pub struct VmmConfig {
    pub vcpus: u8,
    pub memory_mib: u32,
    pub boot: Boot,
    pub serial: SerialConfig,
    /// Adds a virtio-rng device.
    pub rng: bool,
    /// The data disk (virtio-blk).
    pub disk: Option<DiskConfig>,
    /// The hybrid-vsock device.
    pub vsock: Option<VsockConfig>,
    /// The NIC (virtio-net on passt's socket).
    pub net: Option<NetConfig>,
    /// Shared host directories (virtio-fs, each served by a vhost-user backend).
    pub fs: Vec<FsConfig>,
}

/// virtio-fs: the mount tag the guest names, and the Unix socket its vhost-user backend
/// (virtiofsd) listens on.
#[derive(Debug, Clone)]
pub struct FsConfig {
    pub tag: String,
    pub socket: PathBuf,
}

/// A raw disk image for virtio-blk.
#[derive(Debug, Clone)]
pub struct DiskConfig {
    pub path: PathBuf,
    pub read_only: bool,
}

/// virtio-vsock: the guest's CID and the host Unix socket (`<uds>_<port>` for guest connects).
#[derive(Debug, Clone)]
pub struct VsockConfig {
    pub guest_cid: u64,
    pub uds_path: PathBuf,
}

/// virtio-net: the guest's MAC and the Unix socket where passt (or anything speaking qemu's
/// `-netdev stream` framing) listens.
#[derive(Debug, Clone)]
pub struct NetConfig {
    pub socket: PathBuf,
    pub mac: [u8; 6],
}

impl Default for VmmConfig {
    fn default() -> Self {
        VmmConfig {
            vcpus: 1,
            memory_mib: 512,
            boot: Boot::TestGuest {
                image: vec![0xf4],
                load_addr: 0x1000,
            },
            serial: SerialConfig::default(),
            rng: true,
            disk: None,
            vsock: None,
            net: None,
            fs: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    #[error("{0}")]
    Hypervisor(#[from] HypervisorError),
    #[error("{0}")]
    Memory(#[from] crate::memory::MemoryError),
    #[error("{0}")]
    Boot(#[from] boot::BootError),
    #[error("{0}")]
    Acpi(#[from] acpi::AcpiError),
    #[error("{0}")]
    Regs(#[from] regs::RegsError),
    #[error("{0}")]
    Bus(#[from] BusError),
    #[error("{0}")]
    Disk(#[from] crate::devices::virtio::blk::BlockError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("too many devices: no interrupt line left for device {0}")]
    OutOfIrqs(usize),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> VmmError {
    let what = what.into();
    move |source| VmmError::Io { what, source }
}

/// A built VM, ready to [`Vmm::run`].
pub struct Vmm {
    vm: Arc<dyn Vm>,
    vcpu_count: u8,
    start: StartState,
    pio: Arc<Bus>,
    mmio: Arc<Bus>,
    exit: Arc<ExitSignal>,
    event_loop: EventLoop,
    mem: GuestMemoryMmap,
}

/// Collects devices while the VM is built.
struct Wiring<'a> {
    vm: &'a dyn Vm,
    mem: GuestMemoryMmap,
    pio: Bus,
    mmio: Bus,
    event_loop: EventLoop,
    mmio_base: u64,
    virtio: Vec<acpi::MmioDeviceInfo>,
}

impl Wiring<'_> {
    fn add_pio(
        &mut self,
        port: u16,
        len: u64,
        dev: Arc<Mutex<dyn BusDevice>>,
    ) -> Result<(), VmmError> {
        Ok(self.pio.insert(u64::from(port), len, dev)?)
    }

    fn add_virtio<D>(&mut self, device: D) -> Result<(), VmmError>
    where
        D: VirtioDevice + EventHandler + 'static,
    {
        let index = self.virtio.len();
        let irq = layout::VIRTIO_IRQ_FIRST + index as u32;
        if irq > layout::IRQ_LAST {
            return Err(VmmError::OutOfIrqs(index));
        }
        let base = self.mmio_base + index as u64 * layout::VIRTIO_MMIO_SIZE;
        let device = Arc::new(Mutex::new(device));
        {
            let dev = device.lock().unwrap_or_else(|p| p.into_inner());
            self.vm
                .register_irqfd(dev.interrupt().line().eventfd(), irq)?;
            if self.vm.has_irqchip() {
                for (i, evt) in dev.queue_events().iter().enumerate() {
                    self.vm
                        .register_ioevent(evt, base + QUEUE_NOTIFY_OFFSET, i as u32)?;
                }
            }
        }
        let transport = MmioTransport::new(self.mem.clone(), device.clone())
            .map_err(io("creating a virtio-mmio transport"))?;
        self.mmio.insert(
            base,
            layout::VIRTIO_MMIO_SIZE,
            Arc::new(Mutex::new(transport)),
        )?;
        self.event_loop.add_handler(device);
        self.virtio.push(acpi::MmioDeviceInfo {
            base,
            size: layout::VIRTIO_MMIO_SIZE,
            irq,
        });
        Ok(())
    }
}

fn serial_output(cfg: &SerialConfig) -> Result<SerialOutput, VmmError> {
    let mut out = SerialOutput::new();
    if let Some(path) = &cfg.log {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(io(format!("opening the serial log {}", path.display())))?;
        out = out.with(Box::new(file));
    }
    if cfg.stdout {
        out = out.with(Box::new(std::io::stdout()));
    }
    Ok(out)
}

impl Vmm {
    /// Builds the VM described by `config` on KVM.
    pub fn new(config: VmmConfig) -> Result<Self, VmmError> {
        if config.vcpus == 0 {
            return Err(VmmError::Config("at least one vCPU".into()));
        }
        let test_guest = matches!(config.boot, Boot::TestGuest { .. });
        let ranges = if test_guest {
            vec![(0, TEST_GUEST_RAM)]
        } else {
            layout::ram_ranges(u64::from(config.memory_mib) << 20)
        };
        let mem = crate::memory::create_guest_memory(&ranges)?;
        let kvm = Kvm::new()?;
        let vm: Arc<dyn Vm> = Arc::new(kvm.create_vm(config.vcpus, !test_guest)?);
        vm.map_memory(&mem)?;
        let exit = Arc::new(ExitSignal::new().map_err(io("creating the exit event"))?);

        let mut w = Wiring {
            vm: vm.as_ref(),
            mem: mem.clone(),
            pio: Bus::new(),
            mmio: Bus::new(),
            event_loop: EventLoop::new().map_err(io("creating the event loop"))?,
            mmio_base: if test_guest {
                TEST_GUEST_MMIO_BASE
            } else {
                layout::VIRTIO_MMIO_START
            },
            virtio: Vec::new(),
        };

        let serial_irq = Arc::new(IrqLine::new().map_err(io("creating the serial irq"))?);
        vm.register_irqfd(serial_irq.eventfd(), layout::SERIAL_IRQ)?;
        let serial = SerialConsole::new(serial_irq, serial_output(&config.serial)?);
        w.add_pio(layout::SERIAL_PORT, 8, Arc::new(Mutex::new(serial)))?;
        w.add_pio(
            layout::I8042_PORT,
            5,
            Arc::new(Mutex::new(I8042::new(exit.clone()))),
        )?;
        w.add_pio(
            layout::ACPI_PM_PORT,
            2,
            Arc::new(Mutex::new(AcpiPm::new(exit.clone()))),
        )?;
        if test_guest {
            w.add_pio(
                layout::DEBUG_EXIT_PORT,
                1,
                Arc::new(Mutex::new(DebugExit::new(exit.clone()))),
            )?;
        }

        if config.rng {
            w.add_virtio(Rng::new().map_err(io("creating virtio-rng"))?)?;
        }
        if let Some(disk) = &config.disk {
            let file = DiskFile::open(&disk.path, disk.read_only)?;
            w.add_virtio(Block::new(file).map_err(io("creating virtio-blk"))?)?;
        }
        if let Some(vsock) = &config.vsock {
            if vsock.guest_cid < 3 || vsock.guest_cid > u64::from(u32::MAX) {
                return Err(VmmError::Config(format!(
                    "guest CID {} is reserved or out of range",
                    vsock.guest_cid
                )));
            }
            let dev = Vsock::new(vsock.guest_cid, &vsock.uds_path).map_err(io(format!(
                "listening on the vsock socket {}",
                vsock.uds_path.display()
            )))?;
            w.add_virtio(dev)?;
        }

        if let Some(net) = &config.net {
            let stream = FrameStream::connect(&net.socket).map_err(io(format!(
                "connecting to the network socket {}",
                net.socket.display()
            )))?;
            w.add_virtio(Net::new(net.mac, stream).map_err(io("creating virtio-net"))?)?;
        }
        for fs in &config.fs {
            let dev = Fs::new(&fs.tag, &fs.socket)
                .map_err(|e| VmmError::Config(format!("virtio-fs {}: {e}", fs.tag)))?;
            w.add_virtio(dev)?;
        }

        let start = match &config.boot {
            Boot::TestGuest { image, load_addr } => {
                mem.write_slice(image, GuestAddress(u64::from(*load_addr)))
                    .map_err(|_| VmmError::Config("the test guest does not fit in RAM".into()))?;
                StartState::RealMode {
                    cs: 0,
                    ip: *load_addr,
                    sp: 0x7000,
                }
            }
            Boot::Linux {
                kernel,
                initrd,
                cmdline,
            } => {
                let loaded = boot::load_kernel(&mem, kernel)?;
                let initrd = match initrd {
                    Some(path) => Some(boot::load_initrd(&mem, &loaded, path)?),
                    None => None,
                };
                boot::write_boot_params(&mem, &loaded, cmdline, initrd)?;
                acpi::write_tables(&mem, config.vcpus, &w.virtio)?;
                StartState::LongMode(regs::write_long_mode_tables(&mem, loaded.entry)?)
            }
        };

        let Wiring {
            pio,
            mmio,
            event_loop,
            ..
        } = w;
        Ok(Vmm {
            vm,
            vcpu_count: config.vcpus,
            start,
            pio: Arc::new(pio),
            mmio: Arc::new(mmio),
            exit,
            event_loop,
            mem,
        })
    }

    /// The handle to stop the VM from outside: `request(ExitReason::Stopped)`.
    pub fn exit_signal(&self) -> Arc<ExitSignal> {
        self.exit.clone()
    }

    /// Guest memory (tests read results from it).
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// Runs the VM to its end: vCPU threads, the device loop, then a clean stop of both.
    pub fn run(self) -> Result<ExitReason, VmmError> {
        install_kick_handler().map_err(io("installing the vCPU kick handler"))?;
        let stopper = self
            .event_loop
            .stopper()
            .map_err(io("creating the event-loop stopper"))?;
        let event_loop = self.event_loop;
        let loop_thread = std::thread::Builder::new()
            .name("berth-devices".into())
            .spawn(move || event_loop.run())
            .map_err(io("starting the device thread"))?;

        let mut vcpu_threads: Vec<JoinHandle<()>> = Vec::new();
        for index in 0..self.vcpu_count {
            let runner = VcpuRunner {
                index,
                vcpu: self.vm.create_vcpu(index)?,
                start: self.start.clone(),
                pio: self.pio.clone(),
                mmio: self.mmio.clone(),
                exit: self.exit.clone(),
            };
            let thread = std::thread::Builder::new()
                .name(format!("berth-vcpu{index}"))
                .spawn(move || runner.run())
                .map_err(io("starting a vCPU thread"))?;
            vcpu_threads.push(thread);
        }

        let reason = self.exit.wait();
        for thread in vcpu_threads {
            kick_until_finished(&thread);
            let _ = thread.join();
        }
        let _ = stopper.write(1);
        match loop_thread.join() {
            Ok(Err(e)) => tracing::warn!("device loop ended with an error: {e}"),
            Err(_) => tracing::error!("device loop panicked"),
            Ok(Ok(())) => {}
        }
        Ok(reason)
    }
}

fn kick_until_finished(thread: &JoinHandle<()>) {
    use std::os::unix::thread::JoinHandleExt;
    while !thread.is_finished() {
        // SAFETY: the thread has not been joined, so its pthread_t is valid; the kick signal
        // has a handler installed that does nothing.
        unsafe { libc::pthread_kill(thread.as_pthread_t(), kick_signal()) };
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_exit_reason_wins() {
        let exit = ExitSignal::new().unwrap();
        exit.request(ExitReason::Reset);
        exit.request(ExitReason::Poweroff);
        assert_eq!(exit.wait(), ExitReason::Reset);
        assert_eq!(ExitReason::Reset.exit_code(), 2);
        assert_eq!(ExitReason::DebugExit(1).exit_code(), 17);
    }
}
