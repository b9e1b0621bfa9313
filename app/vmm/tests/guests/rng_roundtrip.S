# Real-mode test guest: drives the virtio-mmio register handshake of the virtio-rng device at
# 0x90000 (the first test-guest window), posts one 16-byte writable buffer, notifies, polls the
# used ring, prints "rng ok" on COM1 and reports 0x42 on the debug-exit port (0x01 on failure).
# Regenerate the bytes in tests/guest_realmode.rs with tests/guests/build.sh.
.code16
.globl _start
_start:
    mov $0x9000, %ax
    mov %ax, %ds
    cmpl $0x74726976, 0x00      # magic "virt"
    jne fail
    cmpl $2, 0x04               # version 2
    jne fail
    cmpl $4, 0x08               # device id: rng
    jne fail
    movl $1, 0x70               # ACKNOWLEDGE
    movl $3, 0x70               # DRIVER
    movl $1, 0x24               # driver features select: high word
    movl $1, 0x20               # VIRTIO_F_VERSION_1
    movl $0xb, 0x70             # FEATURES_OK
    movl 0x70, %eax
    test $8, %al
    jz fail
    movl $0, 0x30               # queue 0
    cmpl $8, 0x34               # QueueNumMax >= 8
    jb fail
    movl $8, 0x38
    movl $0x3000, 0x80          # descriptor table
    movl $0, 0x84
    movl $0x3100, 0x90          # avail ring
    movl $0, 0x94
    movl $0x3200, 0xa0          # used ring
    movl $0, 0xa4
    movl $1, 0x44               # QueueReady
    movl $0xf, 0x70             # DRIVER_OK
    movl 0x70, %eax
    cmp $0xf, %eax
    jne fail

    xor %ax, %ax
    mov %ax, %ds
    movl $0x4000, 0x3000        # desc[0].addr
    movl $0, 0x3004
    movl $16, 0x3008            # desc[0].len
    movw $2, 0x300c             # VIRTQ_DESC_F_WRITE
    movw $0, 0x300e
    movw $0, 0x3104             # avail.ring[0] = 0
    movw $1, 0x3102             # avail.idx = 1

    mov $0x9000, %ax
    mov %ax, %ds
    movl $0, 0x50               # QueueNotify(0)
    xor %ax, %ax
    mov %ax, %ds
wait:
    cmpw $1, 0x3202             # used.idx
    jne wait
    cmpl $16, 0x3208            # used.ring[0].len
    jne fail

    mov $0x3f8, %dx
    mov $msg, %si
print:
    lodsb
    test %al, %al
    jz done
    out %al, %dx
    jmp print
done:
    mov $0x42, %al
    out %al, $0xf4
    hlt
fail:
    mov $0x01, %al
    out %al, $0xf4
    hlt
msg:
    .asciz "rng ok\n"
