#!/usr/bin/env python3
"""Memory of a proxy holding many idle keep-alive client connections.

Opens COUNT connections to HOST:PORT, sends one `GET / HTTP/1.1` (keep-alive) on each, reads
the whole answer, then leaves them all open and idle and reads VmRSS of the given pids (and of
their child processes, e.g. nginx workers) from /proc. Prints the RSS before the connections,
with them open, and after closing them. Standard library only.

    idle_conns.py --port 18080 --count 10000 --pid 1234 [--metrics http://127.0.0.1:19090/metrics]
"""

import argparse
import asyncio
import os
import resource
import sys
import time
import urllib.request


def children(pid):
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def vmrss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_split_kib(pids, with_children):
    """(RssAnon, RssFile) in KiB summed over the pids (and their children)."""
    anon = file = 0
    for pid in pids:
        for p in [pid] + (children(pid) if with_children else []):
            try:
                with open(f"/proc/{p}/status") as f:
                    for line in f:
                        if line.startswith("RssAnon:"):
                            anon += int(line.split()[1])
                        elif line.startswith("RssFile:"):
                            file += int(line.split()[1])
            except OSError:
                pass
    return anon, file


def rss_report(pids, with_children):
    """(total KiB, "pid:KiB ..." detail)."""
    seen = []
    for pid in pids:
        seen.append(pid)
        if with_children:
            seen += children(pid)
    parts, total = [], 0
    for pid in seen:
        kib = vmrss_kib(pid)
        if kib is not None:
            total += kib
            parts.append(f"{pid}:{kib}")
    return total, " ".join(parts)


def cpu_seconds(pids, with_children):
    """utime + stime of the pids (and their children), in seconds."""
    tck = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        for p in [pid] + (children(pid) if with_children else []):
            try:
                with open(f"/proc/{p}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
            except (OSError, IndexError, ValueError):
                pass
    return total / tck


def mib(kib):
    return f"{kib / 1024:.1f} MiB ({kib} kB)"


def gauge(url, name):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " ") or line.startswith(name + "{"):
                    return line.split()[-1]
    except Exception as e:  # noqa: BLE001 - informative only
        return f"? ({e})"
    return "?"


async def read_answer(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length, chunked = None, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name == b"connection" and b"close" in value.lower():
            raise ConnectionError("server answered Connection: close")
    if chunked:
        await reader.readuntil(b"0\r\n\r\n")
    elif length:
        await reader.readexactly(length)
    return status


async def open_one(host, port, request, gate, conns, errors, statuses):
    async with gate:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 30)
            writer.write(request)
            await writer.drain()
            status = await asyncio.wait_for(read_answer(reader), 30)
            statuses[status] = statuses.get(status, 0) + 1
            conns.append((reader, writer))
        except Exception as e:  # noqa: BLE001 - counted and reported
            key = type(e).__name__ + (f": {e}" if str(e) else "")
            errors[key] = errors.get(key, 0) + 1


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, default=10000)
    p.add_argument("--pid", type=int, action="append", required=True)
    p.add_argument("--children", action="store_true", help="add child processes' RSS")
    p.add_argument("--metrics", help="Berth admin /metrics URL, to read client_connections")
    p.add_argument("--parallel", type=int, default=200, help="connections being opened at once")
    p.add_argument("--hold", type=float, default=3.0,
                   help="seconds idle before reading RSS (keep well under the proxy's idle limits)")
    p.add_argument("--label", default="proxy")
    a = p.parse_args()

    # The script's own fd limit (the brief's `ulimit -n 20000`; 20000 is the hard limit here).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 20000 if hard == resource.RLIM_INFINITY else min(20000, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if a.count + 100 > resource.getrlimit(resource.RLIMIT_NOFILE)[0]:
        sys.exit(f"fd limit {resource.getrlimit(resource.RLIMIT_NOFILE)[0]} too low for {a.count}")

    before, detail_before = rss_report(a.pid, a.children)
    print(f"[{a.label}] RSS before: {mib(before)}   [{detail_before}]", flush=True)

    request = (f"GET / HTTP/1.1\r\nHost: {a.host}:{a.port}\r\n"
               "Connection: keep-alive\r\nUser-Agent: idle-conns\r\n\r\n").encode()
    conns, errors, statuses = [], {}, {}
    gate = asyncio.Semaphore(a.parallel)
    started = time.monotonic()
    await asyncio.gather(*(open_one(a.host, a.port, request, gate, conns, errors, statuses)
                           for _ in range(a.count)))
    took = time.monotonic() - started
    print(f"[{a.label}] opened {len(conns)}/{a.count} keep-alive connections in {took:.1f}s; "
          f"answers by status: {statuses}; errors: {errors or 'none'}", flush=True)

    cpu0, t0 = cpu_seconds(a.pid, a.children), time.monotonic()
    await asyncio.sleep(a.hold)
    cpu1, t1 = cpu_seconds(a.pid, a.children), time.monotonic()
    # Still open? A closed socket would show EOF to a non-blocking peek.
    alive = sum(1 for r, _ in conns if not r.at_eof())
    held, detail_held = rss_report(a.pid, a.children)
    print(f"[{a.label}] RSS with {alive} idle connections open: {mib(held)}   [{detail_held}]",
          flush=True)
    anon, file = rss_split_kib(a.pid, a.children)
    print(f"[{a.label}]   of which anonymous (heap, stacks): {mib(anon)}; "
          f"file-backed (program code and libraries): {mib(file)}", flush=True)
    print(f"[{a.label}] CPU while the connections sat idle for {t1 - t0:.1f}s: "
          f"{(cpu1 - cpu0) / (t1 - t0) * 100:.1f}% of a core", flush=True)
    if alive < len(conns):
        print(f"[{a.label}] WARNING: the server closed {len(conns) - alive} of the idle connections "
              f"within {time.monotonic() - started:.0f}s of the first one opening", flush=True)
    if len(conns):
        print(f"[{a.label}] RSS per idle connection (delta/open): "
              f"{(held - before) * 1024 / len(conns):.0f} bytes", flush=True)
    if a.metrics:
        print(f"[{a.label}] edge gauge berth_edge_client_connections = "
              f"{gauge(a.metrics, 'berth_edge_client_connections')}", flush=True)

    for _, w in conns:
        w.close()
    await asyncio.gather(*(w.wait_closed() for _, w in conns), return_exceptions=True)
    await asyncio.sleep(2)
    after, detail_after = rss_report(a.pid, a.children)
    print(f"[{a.label}] RSS 2s after closing them: {mib(after)}   [{detail_after}]", flush=True)
    return 0 if len(conns) == a.count else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
