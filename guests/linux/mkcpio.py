#!/usr/bin/env python3
"""Write a deterministic newc ("070701") cpio archive, optionally gzip-compressed.

The machine has no cpio binary, and the Linux initramfs loader only needs newc,
so this writes it directly. Output is byte-identical for identical inputs: every
entry has uid/gid 0, mtime 0 (or $SOURCE_DATE_EPOCH), sequential inode numbers,
entries are sorted by path (parents first), and the gzip header carries mtime 0.

Usage:
  mkcpio.py -o OUT[.gz] [--dir DEST[:MODE]]... [--file SRC:DEST[:MODE]]...
            [--symlink DEST:TARGET]... [--node DEST:c|b:MAJOR:MINOR[:MODE]]...

DEST paths are absolute inside the archive ("/bin/busybox"). Missing parent
directories are added with mode 0755. A --file MODE defaults to 0755 when SRC is
executable, 0644 otherwise. OUT ending in ".gz" is gzip-compressed.
"""

import argparse
import gzip
import os
import stat
import sys

NEWC_MAGIC = b"070701"


def parse_mode(text, default):
    return int(text, 8) if text else default


def split_spec(spec, min_parts, max_parts, what):
    parts = spec.split(":")
    if not min_parts <= len(parts) <= max_parts:
        sys.exit(f"mkcpio: bad {what} spec {spec!r}")
    return parts + [""] * (max_parts - len(parts))


def archive_name(dest):
    if not dest.startswith("/") or dest == "/":
        sys.exit(f"mkcpio: destination must be an absolute path below /: {dest!r}")
    parts = [p for p in dest.split("/") if p]
    if any(p in (".", "..") for p in parts):
        sys.exit(f"mkcpio: destination must not contain . or ..: {dest!r}")
    return "/".join(parts)


class Archive:
    def __init__(self):
        # name -> (mode, data bytes, rdev major, rdev minor)
        self.entries = {}

    def add(self, dest, mode, data=b"", rdev=(0, 0)):
        name = archive_name(dest)
        if name in self.entries:
            sys.exit(f"mkcpio: {dest} given twice")
        self.entries[name] = (mode, data, rdev)
        parent = os.path.dirname(name)
        while parent and parent not in self.entries:
            self.entries[parent] = (stat.S_IFDIR | 0o755, b"", (0, 0))
            parent = os.path.dirname(parent)

    def serialize(self, mtime):
        out = bytearray()

        def record(ino, name, mode, data, rdev, nlink):
            encoded = name.encode() + b"\0"
            fields = [ino, mode, 0, 0, nlink, mtime, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0]
            out.extend(NEWC_MAGIC + b"".join(b"%08X" % f for f in fields))
            out.extend(encoded)
            out.extend(b"\0" * (-len(out) % 4))
            out.extend(data)
            out.extend(b"\0" * (-len(out) % 4))

        # Sorting by path components puts every directory before its contents.
        for ino, name in enumerate(sorted(self.entries, key=lambda n: n.split("/")), start=1):
            mode, data, rdev = self.entries[name]
            nlink = 2 if stat.S_ISDIR(mode) else 1
            record(ino, name, mode, data, rdev, nlink)
        record(0, "TRAILER!!!", 0, b"", (0, 0), 1)
        return bytes(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--dir", action="append", default=[], metavar="DEST[:MODE]")
    ap.add_argument("--file", action="append", default=[], metavar="SRC:DEST[:MODE]")
    ap.add_argument("--symlink", action="append", default=[], metavar="DEST:TARGET")
    ap.add_argument("--node", action="append", default=[], metavar="DEST:c|b:MAJOR:MINOR[:MODE]")
    args = ap.parse_args()

    archive = Archive()
    for spec in args.dir:
        dest, mode = split_spec(spec, 1, 2, "--dir")
        archive.add(dest, stat.S_IFDIR | parse_mode(mode, 0o755))
    for spec in args.file:
        src, dest, mode = split_spec(spec, 2, 3, "--file")
        with open(src, "rb") as f:
            data = f.read()
        default = 0o755 if os.access(src, os.X_OK) else 0o644
        archive.add(dest, stat.S_IFREG | parse_mode(mode, default), data)
    for spec in args.symlink:
        dest, target = split_spec(spec, 2, 2, "--symlink")
        archive.add(dest, stat.S_IFLNK | 0o777, target.encode())
    for spec in args.node:
        dest, kind, major, minor, mode = split_spec(spec, 4, 5, "--node")
        kinds = {"c": stat.S_IFCHR, "b": stat.S_IFBLK}
        if kind not in kinds:
            sys.exit(f"mkcpio: node kind must be c or b: {spec!r}")
        archive.add(dest, kinds[kind] | parse_mode(mode, 0o600), b"", (int(major), int(minor)))

    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    data = archive.serialize(mtime)
    tmp = args.output + ".tmp"
    with open(tmp, "wb") as f:
        if args.output.endswith(".gz"):
            with gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0, compresslevel=9) as gz:
                gz.write(data)
        else:
            f.write(data)
    os.replace(tmp, args.output)


if __name__ == "__main__":
    main()
