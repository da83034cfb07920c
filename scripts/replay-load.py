#!/usr/bin/env python3
"""Open-loop, bounded HTTP load replayer (Python 3 stdlib only, asyncio).

Sends GET requests at the instants a load shape's rate curve schedules, whatever the
answers do (open loop: a slow or missing answer never delays the next request), to one
or more targets at once with the same schedule (so two pools see identical load at the
same instants). Each request has a timeout; the run is bounded in requests, duration and
requests in flight per target (hard caps, with safe defaults).

Shapes (rate r(t) in requests per second, t in seconds since the start):
  ramp      r = PEAK * t / DURATION                            (0 -> PEAK over the run)
  sawtooth  r = PEAK * (t mod PERIOD) / PERIOD                 (0 -> PEAK each PERIOD)
  burst     r = PEAK for BURST s from OFFSET within each PERIOD, BASE otherwise
  constant  r = PEAK
Arrival instants come from integrating the rate: the k-th request goes at the t where
the integral of r from 0 reaches k (evenly spaced at a steady rate; --arrivals poisson
draws exponential gaps of unit mean in that integral instead, seeded, so the schedule is
still the same for every target and every run with the same seed).

Connections: HTTP/1.1, a fresh TCP connection per request (`Connection: close`), so no
request waits for another's connection and each latency includes one loopback connect.
Latency is from just before the connect to the last byte of the answer. Targets must be
http://127.0.0.1[:port]/... (loopback only).

Output (--out): one tab-separated line per request, after a header line:
  target  sent_at_s  latency_ms  status
target is the target's label (NAME in NAME=URL, else the URL); sent_at_s is when the
request was actually sent, in seconds since the start (the start's Unix time in ms is in
the first line, `# t0_epoch_ms=...`); status is the HTTP status, 0 for a timeout or a
connection error, -1 for a request not sent because the target already had
--max-in-flight requests open (latency -1). A summary per target goes to stderr.

Examples:
  replay-load.py --shape ramp --peak 30 --duration 120 --out ramp.tsv \\
      --target a=http://127.0.0.1:8080/function/a/cgi-bin/cpu?ms=20 \\
      --target b=http://127.0.0.1:8080/function/b/cgi-bin/cpu?ms=20
  replay-load.py --shape burst --base 2 --peak 30 --burst 20 --period 90 --duration 270 ...
  replay-load.py --shape constant --peak 1 --duration 10 --target URL   (unloaded latency)
"""

import argparse
import asyncio
import math
import random
import sys
import time
import urllib.parse

HARD_MAX_REQUESTS = 1_000_000
HARD_MAX_DURATION = 6 * 3600


def rate_fn(a):
    """The shape's rate curve r(t), requests per second."""
    if a.shape == "ramp":
        return lambda t: a.peak * min(t / a.duration, 1.0)
    if a.shape == "sawtooth":
        return lambda t: a.peak * ((t % a.period) / a.period)
    if a.shape == "burst":

        def burst(t):
            phase = (t - a.offset) % a.period
            return a.peak if phase < a.burst else a.base

        return burst
    if a.shape == "constant":
        return lambda t: a.peak
    raise ValueError(a.shape)


def schedule(a):
    """Send instants (seconds since the start), by integrating r(t) in 1 ms steps."""
    r = rate_fn(a)
    rng = random.Random(a.seed)
    gap = (lambda: rng.expovariate(1.0)) if a.arrivals == "poisson" else (lambda: 1.0)
    dt = 0.001
    times = []
    acc = 0.0
    nxt = gap()
    steps = int(round(a.duration / dt))
    for i in range(steps):
        t = i * dt
        # Midpoint rule: exact for the piecewise-linear and piecewise-constant shapes
        # except at the kinks, to well under one request.
        inc = r(t + dt / 2) * dt
        while acc + inc >= nxt:
            # Where within the step the integral crosses nxt (linear interpolation).
            frac = (nxt - acc) / inc if inc > 0 else 0.0
            times.append(t + frac * dt)
            if len(times) >= a.max_requests:
                return times, True
            nxt += gap()
        acc += inc
    return times, False


def parse_target(spec):
    label, sep, url = spec.partition("=")
    if not sep or "://" in label:
        label, url = spec, spec
    u = urllib.parse.urlsplit(url)
    if u.scheme != "http" or u.hostname != "127.0.0.1":
        sys.exit(f"replay-load: {url}: only http://127.0.0.1 targets are allowed")
    path = u.path or "/"
    if u.query:
        path += "?" + u.query
    return label, u.port or 80, path


async def one_request(port, path, timeout):
    """Returns (status, latency_ms); status 0 on timeout or connection error."""
    t0 = time.monotonic()
    writer = None

    async def go():
        nonlocal writer
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"User-Agent: invok-replay-load\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        line = await reader.readline()
        parts = line.split()
        status = int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0
        # The whole answer: the server closes after it (Connection: close).
        while await reader.read(65536):
            pass
        return status

    try:
        status = await asyncio.wait_for(go(), timeout)
    except (asyncio.TimeoutError, OSError, ValueError):
        status = 0
    finally:
        if writer is not None:
            writer.close()
    return status, (time.monotonic() - t0) * 1000.0


async def run(a, targets, times):
    out = open(a.out, "w", buffering=1) if a.out != "-" else sys.stdout
    t0_wall = time.time()
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.05
    out.write(f"# t0_epoch_ms={int((t0_wall + 0.05) * 1000)} shape={a.shape} "
              f"connections=fresh-per-request timeout_s={a.timeout}\n")
    out.write("target\tsent_at_s\tlatency_ms\tstatus\n")
    in_flight = {label: 0 for label, _, _ in targets}
    results = {label: [] for label, _, _ in targets}
    tasks = set()
    max_lag = 0.0

    async def fire(label, port, path, sent):
        in_flight[label] += 1
        try:
            status, ms = await one_request(port, path, a.timeout)
        finally:
            in_flight[label] -= 1
        results[label].append((status, ms))
        out.write(f"{label}\t{sent:.4f}\t{ms:.2f}\t{status}\n")

    deadline = t0 + min(a.duration, a.max_duration)
    for at in times:
        when = t0 + at
        if when > deadline:
            break
        delay = when - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        now = loop.time()
        max_lag = max(max_lag, now - when)
        sent = now - t0
        for label, port, path in targets:
            if in_flight[label] >= a.max_in_flight:
                results[label].append((-1, -1.0))
                out.write(f"{label}\t{sent:.4f}\t-1\t-1\n")
                continue
            task = asyncio.create_task(fire(label, port, path, sent))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(set(tasks), timeout=a.timeout + 1)
    if out is not sys.stdout:
        out.close()
    for label, rs in results.items():
        lat = sorted(ms for s, ms in rs if s > 0)
        codes = {}
        for s, _ in rs:
            codes[s] = codes.get(s, 0) + 1

        def pct(p):
            return lat[min(len(lat) - 1, max(0, math.ceil(p * len(lat)) - 1))] if lat else float("nan")

        print(f"replay-load: {label}: {len(rs)} requests, statuses {dict(sorted(codes.items()))}, "
              f"p50 {pct(0.5):.1f} ms, p99 {pct(0.99):.1f} ms", file=sys.stderr)
    print(f"replay-load: largest send lag behind the schedule {max_lag * 1000:.1f} ms", file=sys.stderr)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--target", action="append", required=True,
                   help="[NAME=]http://127.0.0.1:PORT/PATH; repeat for several targets (same schedule)")
    p.add_argument("--shape", choices=["ramp", "sawtooth", "burst", "constant"], required=True)
    p.add_argument("--peak", type=float, required=True, help="peak rate, requests/s per target")
    p.add_argument("--duration", type=float, required=True, help="seconds of schedule")
    p.add_argument("--period", type=float, default=60.0, help="sawtooth/burst period, s (60)")
    p.add_argument("--burst", type=float, default=10.0, help="burst length, s (10)")
    p.add_argument("--offset", type=float, default=0.0, help="burst start within each period, s (0)")
    p.add_argument("--base", type=float, default=0.0, help="rate outside bursts, requests/s (0)")
    p.add_argument("--arrivals", choices=["uniform", "poisson"], default="uniform")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeout", type=float, default=10.0, help="per-request timeout, s (10)")
    p.add_argument("--max-requests", type=int, default=50_000,
                   help="cap on scheduled instants (each goes to every target) (50000)")
    p.add_argument("--max-duration", type=float, default=1800.0, help="cap on the run, s (1800)")
    p.add_argument("--max-in-flight", type=int, default=256,
                   help="per target; beyond it a request is skipped and logged as status -1 (256)")
    p.add_argument("--out", default="-", help="TSV output file (- for stdout)")
    p.add_argument("--dry-run", action="store_true", help="print the schedule's size and exit")
    a = p.parse_args()
    for name in ("peak", "duration", "period", "burst", "base", "timeout", "max_duration"):
        v = getattr(a, name)
        if not math.isfinite(v) or v < 0:
            p.error(f"--{name.replace('_', '-')} must be a finite number >= 0")
    if a.duration <= 0 or a.period <= 0 or a.timeout <= 0:
        p.error("--duration, --period and --timeout must be > 0")
    a.max_requests = max(1, min(a.max_requests, HARD_MAX_REQUESTS))
    a.max_duration = min(a.max_duration, HARD_MAX_DURATION)
    a.max_in_flight = max(1, min(a.max_in_flight, 4096))
    targets = [parse_target(t) for t in a.target]
    if len({t[0] for t in targets}) != len(targets):
        p.error("target labels must differ")
    times, capped = schedule(a)
    if capped:
        print(f"replay-load: schedule capped at --max-requests {a.max_requests} "
              f"(ends at {times[-1]:.1f} s)", file=sys.stderr)
    if a.duration > a.max_duration:
        print(f"replay-load: duration capped at --max-duration {a.max_duration:.0f} s", file=sys.stderr)
    print(f"replay-load: {a.shape}: {len(times)} instants x {len(targets)} target(s) over "
          f"{min(a.duration, a.max_duration):.0f} s", file=sys.stderr)
    if a.dry_run:
        return
    asyncio.run(run(a, targets, times))


if __name__ == "__main__":
    main()
