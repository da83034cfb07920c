#!/usr/bin/env python3
"""Requests that arrived while a pool lacked the capacity for them (bench-predictive).

  capacity-waits.py TSV RAW TARGET TARGET_RPS FROM_S

TSV is replay-load.py's output (its header gives t0_epoch_ms), RAW the pool's watch_pool
samples ("epoch_ms desired ready starting cpu" every 0.1 s), TARGET the pool's name in
the TSV, TARGET_RPS its targetRequestsPerSecond, FROM_S where the measured window
begins (seconds after t0; the warm-up before it is not counted).

A request counts as short of capacity when, at the instant it was sent, the pool's
ready containers times TARGET_RPS were fewer than the requests sent to it in the second
before (the offered rate): the pool had not yet the containers its own rule asks for.
This is what scaling ahead can change, and unlike latency it does not move with the CPU
the two pools' containers take from each other on a shared host. Prints
"requests short short_percent".
"""
import bisect
import sys

tsv, raw, target, target_rps, from_s = sys.argv[1:6]
target_rps, from_s = float(target_rps), float(from_s)
t0 = None
sent = []
with open(tsv) as f:
    for line in f:
        if line.startswith("#"):
            for field in line[1:].split():
                if field.startswith("t0_epoch_ms="):
                    t0 = int(field.split("=", 1)[1])
            continue
        cols = line.split("\t")
        if cols[0] == target:
            sent.append(float(cols[1]))
if t0 is None:
    sys.exit(f"{tsv}: no t0_epoch_ms in its header")
sent.sort()
samples = []
with open(raw) as f:
    for line in f:
        cols = line.split()
        if len(cols) >= 3:
            samples.append(((int(cols[0]) - t0) / 1000.0, int(cols[2])))
samples.sort()
times = [t for t, _ in samples]
total = short = 0
for i, t in enumerate(sent):
    if t < from_s:
        continue
    total += 1
    offered = i + 1 - bisect.bisect_right(sent, t - 1.0)
    k = bisect.bisect_right(times, t) - 1
    ready = samples[k][1] if k >= 0 else 0
    if ready * target_rps < offered:
        short += 1
print(total, short, f"{100.0 * short / max(total, 1):.2f}")
