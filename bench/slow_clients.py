"""Slow clients against a gateway, for bench/isolation.sh part 4.

Opens SLOW connections that each send a request head announcing a body and
then dribble the body one byte every 2 s, and IDLE connections that connect
and send nothing; meanwhile sends NORMAL ordinary requests one after another
and reports how many were answered within 1 s and within 5 s, and how the
slow connections ended (answered 408, closed, still open after WAIT s).

usage: slow_clients.py HOST PORT PATH SLOW IDLE NORMAL WAIT
"""

import asyncio
import sys
import time

host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
slow, idle, normal, wait = (int(a) for a in sys.argv[4:8])


async def slow_body(results):
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        results["connect failed"] += 1
        return
    head = f"POST {path} HTTP/1.1\r\nhost: bench\r\ncontent-length: 1000\r\n\r\n"
    writer.write(head.encode())
    started = time.monotonic()
    try:
        while time.monotonic() - started < wait:
            writer.write(b"x")
            await writer.drain()
            try:
                data = await asyncio.wait_for(reader.read(4096), 2)
            except asyncio.TimeoutError:
                continue
            if data.startswith(b"HTTP/1.1 408"):
                results["answered 408"] += 1
            elif data:
                results["answered other"] += 1
            else:
                results["closed without answer"] += 1
            return
        results["still open"] += 1
    except OSError:
        results["closed without answer"] += 1
    finally:
        writer.close()


async def idle_connection(hold):
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError:
        return
    await asyncio.sleep(hold)
    writer.close()


async def one_request():
    started = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
        writer.write(f"GET {path} HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n".encode())
        await asyncio.wait_for(reader.read(4096), 10)
        writer.close()
    except (OSError, asyncio.TimeoutError):
        return None
    return time.monotonic() - started


async def main():
    results = {k: 0 for k in ["answered 408", "answered other", "closed without answer", "still open", "connect failed"]}
    slow_tasks = [asyncio.create_task(slow_body(results)) for _ in range(slow)]
    idle_tasks = [asyncio.create_task(idle_connection(wait)) for _ in range(idle)]
    await asyncio.sleep(1)
    latencies = []
    for _ in range(normal):
        latencies.append(await one_request())
        await asyncio.sleep(0.1)
    await asyncio.gather(*slow_tasks, *idle_tasks)
    answered = [l for l in latencies if l is not None]
    print(f"normal requests: {normal}, answered within 1 s: {sum(l < 1 for l in answered)}, "
          f"within 5 s: {sum(l < 5 for l in answered)}, not answered: {normal - len(answered)}")
    print("slow bodies: " + ", ".join(f"{k} {v}" for k, v in results.items()))


asyncio.run(main())
