# Real-mode test guest: drives the virtio-mmio handshake of the virtio-net device at 0x90000
# (the only device), posts one 2048-byte rx buffer, sends one 60-byte frame starting
# "berth ping" on tx, waits for tx to be used and for a frame to arrive on rx, checks that it
# starts "berth pong", prints "net ok" on COM1 and reports 0x43 on the debug-exit port (0x01
# on failure). Only VERSION_1 is negotiated: one buffer per frame, a 12-byte header.
.code16
.globl _start
_start:
    mov $0x9000, %ax
    mov %ax, %ds
    cmpl $0x74726976, 0x00      # magic "virt"
    jne fail
    cmpl $2, 0x04               # version 2
    jne fail
    cmpl $1, 0x08               # device id: net
    jne fail
    movl $1, 0x70               # ACKNOWLEDGE
    movl $3, 0x70               # DRIVER
    movl $1, 0x24               # driver features select: high word
    movl $1, 0x20               # VIRTIO_F_VERSION_1
    movl $0xb, 0x70             # FEATURES_OK
    movl 0x70, %eax
    test $8, %al
    jz fail

    movl $0, 0x30               # queue 0: rx
    movl $8, 0x38
    movl $0x3000, 0x80
    movl $0, 0x84
    movl $0x3100, 0x90
    movl $0, 0x94
    movl $0x3200, 0xa0
    movl $0, 0xa4
    movl $1, 0x44
    movl $1, 0x30               # queue 1: tx
    movl $8, 0x38
    movl $0x3400, 0x80
    movl $0, 0x84
    movl $0x3500, 0x90
    movl $0, 0x94
    movl $0x3600, 0xa0
    movl $0, 0xa4
    movl $1, 0x44
    movl $0xf, 0x70             # DRIVER_OK
    movl 0x70, %eax
    cmp $0xf, %eax
    jne fail

    xor %ax, %ax
    mov %ax, %ds
    movl $0x5000, 0x3000        # rx desc[0]: 2048 writable bytes at 0x5000
    movl $0, 0x3004
    movl $2048, 0x3008
    movw $2, 0x300c
    movw $0, 0x300e
    movw $0, 0x3104
    movw $1, 0x3102             # rx avail.idx = 1
    movl $0x74726562, 0x400c    # tx frame after the 12-byte header: "berth ping"
    movl $0x69702068, 0x4010
    movw $0x676e, 0x4014
    movl $0x4000, 0x3400        # tx desc[0]: header + 60-byte frame at 0x4000
    movl $0, 0x3404
    movl $72, 0x3408
    movw $0, 0x340c
    movw $0, 0x340e
    movw $0, 0x3504
    movw $1, 0x3502             # tx avail.idx = 1

    mov $0x9000, %ax
    mov %ax, %ds
    movl $0, 0x50               # QueueNotify(rx)
    movl $1, 0x50               # QueueNotify(tx)
    xor %ax, %ax
    mov %ax, %ds
tx_wait:
    cmpw $1, 0x3602             # tx used.idx
    jne tx_wait
rx_wait:
    cmpw $1, 0x3202             # rx used.idx
    jne rx_wait
    cmpl $72, 0x3208            # rx used.ring[0].len: header + 60 bytes
    jne fail
    cmpw $1, 0x500a             # num_buffers
    jne fail
    cmpl $0x74726562, 0x500c    # "bert"
    jne fail
    cmpl $0x676e6f70, 0x5012    # "pong"
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
    mov $0x43, %al
    out %al, $0xf4
    hlt
fail:
    mov $0x01, %al
    out %al, $0xf4
    hlt
msg:
    .asciz "net ok\n"
