"""A log writer for the tests: appends numbered lines at a steady rate and rotates its log the
way logrotate and loggers do.

    python -m tests.sources.writer PATH COUNT [--rate LINES_PER_S] [--rotate MODE]
        [--every N] [--tag TAG] [--late N]

Line i is `TAG i <filler>` (filler of varying length, so lines straddle read chunks).
Rotation modes, every N lines:
  rename        PATH.k -> PATH.k+1, PATH -> PATH.1, create a new empty PATH, after
                --late-delay seconds write --late more lines to the old file (a logger that
                reopens only when told to), then reopen.
  copytruncate  shift the numbered copies, copy PATH to PATH.1, truncate PATH to 0 (the
                writer does this itself, so no line falls between the copy and the truncation,
                the window logrotate's copytruncate leaves open whoever reads the log).
  delete        unlink PATH and create it anew.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time


def line(tag: str, number: int) -> bytes:
    return f"{tag} {number:08d} {'x' * (number * 7919 % 151)}\n".encode()


def shift(path: str) -> None:
    generation = 1
    while os.path.exists(f"{path}.{generation}"):
        generation += 1
    for number in range(generation - 1, 0, -1):
        os.rename(f"{path}.{number}", f"{path}.{number + 1}")


def open_log(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("count", type=int)
    parser.add_argument("--rate", type=float, default=50_000)
    parser.add_argument("--rotate", choices=("none", "rename", "copytruncate", "delete"),
                        default="none")
    parser.add_argument("--every", type=int, default=10_000)
    parser.add_argument("--tag", default="L")
    parser.add_argument("--late", type=int, default=20)
    parser.add_argument("--late-delay", type=float, default=0.05)
    parser.add_argument("--first", type=int, default=0)
    args = parser.parse_args()
    path = args.path
    fd = open_log(path)
    started = time.monotonic()
    burst = max(int(args.rate / 200), 1)
    number = args.first
    end = args.first + args.count
    while number < end:
        for _ in range(min(burst, end - number)):
            os.write(fd, line(args.tag, number))
            number += 1
            if number % args.every == 0 and number < end:
                fd, number = rotate(args, fd, number, end)
        ahead = (number - args.first) / args.rate - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)
    os.close(fd)


def rotate(args, fd: int, number: int, end: int) -> tuple[int, int]:
    path = args.path
    if args.rotate == "rename":
        shift(path)
        os.rename(path, f"{path}.1")
        os.close(open_log(path))
        time.sleep(args.late_delay)
        for _ in range(min(args.late, end - number)):
            os.write(fd, line(args.tag, number))
            number += 1
        os.close(fd)
        return open_log(path), number
    if args.rotate == "copytruncate":
        shift(path)
        shutil.copyfile(path, f"{path}.1")
        os.truncate(path, 0)
        return fd, number
    if args.rotate == "delete":
        os.close(fd)
        os.unlink(path)
        return open_log(path), number
    return fd, number


if __name__ == "__main__":
    main()
