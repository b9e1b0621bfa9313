//! Architecture code: the guest physical address map, boot-time CPU state and firmware
//! tables. Only x86_64 exists; an aarch64 module would sit beside it.

pub mod x86_64;
