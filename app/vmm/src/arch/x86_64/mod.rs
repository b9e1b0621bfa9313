//! x86_64: the address map ([`layout`]), long-mode setup ([`regs`]), CPUID ([`cpuid`]) and
//! MSRs ([`msr`]) for the boot vCPU, the Linux boot protocol ([`boot`]) and ACPI ([`acpi`]).

pub mod acpi;
pub mod boot;
pub mod cpuid;
pub mod layout;
pub mod msr;
pub mod regs;
