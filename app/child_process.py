"""How the service starts a Python process of its own (the chart renderer, the pipeline), and
the framing both speak over their pipes: a 4-byte length, then the bytes."""

from __future__ import annotations

import asyncio
import os
import struct
import sys
from pathlib import Path

CODE_ROOT = str(Path(__file__).resolve().parent.parent)  # the `app` the service itself runs
HEADER = struct.Struct(">I")


def frame(data: bytes) -> bytes:
    return HEADER.pack(len(data)) + data


async def read_frame(reader: asyncio.StreamReader, limit: int) -> bytes:
    """The next frame's bytes; ValueError past `limit` (the pipe is out of step, or hostile)."""
    (size,) = HEADER.unpack(await reader.readexactly(HEADER.size))
    if size > limit:
        raise ValueError(f"a frame of {size} bytes")
    return await reader.readexactly(size)


async def pipe_streams(
    read_fd: int, write_fd: int, limit: int
) -> tuple[asyncio.StreamReader, asyncio.WriteTransport]:
    """A reader on one pipe and a (never blocking) writer on the other, on the running loop."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit)
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", 0)
    )
    writer, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(write_fd, "wb", 0))
    return reader, writer


def module_command(module: str) -> tuple[str, ...]:
    """`python -P -m module`: -P keeps the working directory off sys.path (an `app` there is not
    the service's); child_env() puts the service's own code first instead."""
    return (sys.executable, "-P", "-m", module)


def child_env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [CODE_ROOT, os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}
