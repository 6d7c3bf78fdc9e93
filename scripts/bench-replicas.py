#!/usr/bin/env python3
"""Benchmark of replicas sharing the tenants (docs/performance.md).

Starts a private Mosquitto, a fresh database with N connection rows and R
replicas of the real binary (same MQTT_INSTANCE_ID), then measures:

- failover: SIGKILL one replica; time until every connection is connected
  again by the others (their health: owned connections sum to N, all
  connected). Median and max over --runs;
- join: a new replica starts; time until it owns its share (N / R, less 2);
- lease traffic: database transactions per second of the whole instance
  while idle (pg_stat_database.xact_commit over --idle-secs), per replica
  and per 1,000 connections.

Loopback only. Needs: mosquitto, psql, the binary (default
target/release/mqtt-supervisor; --binary to choose). Prints one JSON line.

    cargo build --release -p mqtt-supervisor
    scripts/bench-replicas.py --connections 1000 --replicas 3 --runs 3
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psql(db, sql):
    out = subprocess.run(
        ["psql", f"{PG}/{db}", "-qtAX", "-c", sql],
        check=True, capture_output=True, text=True,
    )
    return out.stdout.strip()


def say(msg):
    print(f"[bench-replicas {time.monotonic() - START:7.2f} s] {msg}", file=sys.stderr)


def health(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/mqtt/health/", timeout=2) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        return json.load(e)
    except Exception:
        return None


class Replica:
    def __init__(self, binary, url, lease):
        self.port = free_port()
        env = dict(os.environ)
        env.update({
            "DATABASE_URL": url,
            "MQTT_INSTANCE_ID": "bench",
            "MQTT_HTTP_ADDR": f"127.0.0.1:{self.port}",
            "MQTT_LEASE_PERIOD": str(lease),
            "MQTT_LOG_FORMAT": "text",
        })
        env.pop("RUST_LOG", None)
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [binary, "run"], env=env, stdout=self.log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def owned_connected(self):
        h = health(self.port)
        if not h:
            return None
        return h["service"].get("owned", 0), h["connections"]["healthy"]

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def wait_all(replicas, n, timeout):
    """Seconds until the alive replicas own and connect all n, or None."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        states = [r.owned_connected() for r in replicas]
        if all(states) and sum(s[0] for s in states) == n and sum(s[1] for s in states) == n:
            return time.monotonic() - began
        time.sleep(0.1)
    return None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--connections", type=int, default=1000)
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--lease", type=int, default=15)
    p.add_argument("--idle-secs", type=int, default=30)
    p.add_argument("--binary", default="target/release/mqtt-supervisor")
    a = p.parse_args()
    n, r = a.connections, a.replicas

    conf_dir = tempfile.mkdtemp(prefix="bench-replicas-")
    mport = free_port()
    with open(f"{conf_dir}/mosquitto.conf", "w") as f:
        f.write(f"listener {mport} 127.0.0.1\nallow_anonymous true\nmax_connections -1\n"
                "log_dest none\npersistence false\n")
    broker = subprocess.Popen(["mosquitto", "-c", f"{conf_dir}/mosquitto.conf"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = f"bench_replicas_{os.getpid()}"
    psql("postgres", f"CREATE DATABASE {db}")
    url = f"{PG}/{db}"
    replicas = []
    try:
        subprocess.run([a.binary, "migrate"], env={**os.environ, "DATABASE_URL": url},
                       check=True, capture_output=True)
        psql(db, "INSERT INTO mqtt_connections (name, broker_host, broker_port) "
                 f"SELECT 'site_' || i, '127.0.0.1', {mport} FROM generate_series(1, {n}) AS i")
        say(f"{n} rows, broker on {mport}; starting {r} replicas (lease {a.lease} s)")
        replicas = [Replica(a.binary, url, a.lease) for _ in range(r)]
        up = wait_all(replicas, n, 120)
        say(f"all {n} owned and connected after {up} s")
        # Let the shares settle (handovers between the replicas that started
        # together) before measuring the idle traffic.
        time.sleep(2 * a.lease)
        shares = [s[0] for s in (x.owned_connected() for x in replicas)]

        before = int(psql(db, f"SELECT xact_commit FROM pg_stat_database WHERE datname = '{db}'"))
        time.sleep(a.idle_secs)
        after = int(psql(db, f"SELECT xact_commit FROM pg_stat_database WHERE datname = '{db}'"))
        tps = (after - before - 2) / a.idle_secs
        say(f"idle: {tps:.2f} transactions/s for {r} replicas")

        failovers, joins = [], []
        for run in range(a.runs):
            victim = replicas.pop(0)
            owned = victim.owned_connected()
            victim.kill()
            t = wait_all(replicas, n, 4 * a.lease + 30)
            say(f"run {run + 1}: SIGKILL of a replica owning {owned[0] if owned else '?'}: "
                f"all connected again after {t} s")
            failovers.append(t)
            joiner = Replica(a.binary, url, a.lease)
            replicas.append(joiner)
            began = time.monotonic()
            target = n // len(replicas) - 2
            joined = None
            while time.monotonic() - began < 10 * a.lease:
                s = joiner.owned_connected()
                if s and s[0] >= target and s[1] >= target:
                    joined = time.monotonic() - began
                    break
                time.sleep(0.1)
            say(f"run {run + 1}: a new replica owned and connected {target}+ after {joined} s")
            joins.append(joined)
            wait_all(replicas, n, 4 * a.lease + 30)

        ok = [f for f in failovers if f is not None]
        print(json.dumps({
            "connections": n, "replicas": r, "lease_secs": a.lease,
            "start_all_connected_secs": up, "shares": shares,
            "failover_secs": failovers,
            "failover_median_secs": statistics.median(ok) if ok else None,
            "failover_max_secs": max(ok) if ok else None,
            "join_share_secs": joins,
            "idle_transactions_per_sec": round(tps, 2),
            "idle_transactions_per_sec_per_replica": round(tps / r, 3),
            "idle_transactions_per_sec_per_1000_connections": round(tps * 1000 / n, 3),
        }))
    finally:
        for x in replicas:
            x.stop()
        broker.terminate()
        time.sleep(0.5)
        psql("postgres", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


START = time.monotonic()
if __name__ == "__main__":
    main()
