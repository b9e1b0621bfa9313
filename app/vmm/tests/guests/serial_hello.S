# Real-mode test guest: prints "hello from guest" on COM1, reads the line-status register,
# reports 0x2a on the debug-exit port.
.code16
.globl _start
_start:
    mov $0x3f8, %dx
    mov $msg, %si
print:
    lodsb
    test %al, %al
    jz done
    out %al, %dx
    jmp print
done:
    mov $0x3fd, %dx             # LSR: THR empty must be set
    in %dx, %al
    test $0x20, %al
    jz fail
    mov $0x2a, %al
    out %al, $0xf4
    hlt
fail:
    mov $0x01, %al
    out %al, $0xf4
    hlt
msg:
    .asciz "hello from guest\n"
