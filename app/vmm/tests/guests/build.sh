#!/bin/sh
# Assembles the real-mode test guests into the flat .bin images tests/guest_realmode.rs loads
# at 0x1000. Needs GNU binutils; the .bin files are committed so tests do not.
set -eu
cd "$(dirname "$0")"
tmp=$(mktemp -d)
for src in *.S; do
    name=${src%.S}
    as --32 -o "$tmp/$name.o" "$src"
    ld -m elf_i386 -Ttext=0x1000 --oformat=binary -o "$name.bin" "$tmp/$name.o"
done
rm -rf "$tmp"
