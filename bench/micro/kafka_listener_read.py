"""Reads chat.room-events.v1 through LiveChat's Kafka listener as fast as a confluent-kafka
consumer goes, in a new consumer group: records/s, and the server's CPU seconds meanwhile.

Usage: python kafka_listener_read.py BOOTSTRAP SERVER_PID [GROUP]
(needs `pip install confluent-kafka`; start LiveChat with --kafka-listen BOOTSTRAP and fill its
log first, e.g. with `loadgen ingest`).
"""

import os
import sys
import time
import uuid

from confluent_kafka import Consumer, TopicPartition

TOPIC = "chat.room-events.v1"


def cpu_seconds(pid: str) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    bootstrap, pid = sys.argv[1], sys.argv[2]
    group = sys.argv[3] if len(sys.argv) > 3 else f"read-{uuid.uuid4()}"
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.max.bytes": 52428800,
        }
    )
    parts = c.list_topics(TOPIC, timeout=10).topics[TOPIC].partitions
    total = sum(c.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10)[1] for p in parts)
    c.subscribe([TOPIC])
    n, started, cpu0 = 0, None, None
    while n < total:
        msgs = c.consume(num_messages=10000, timeout=1.0)
        for m in msgs:
            if m.error():
                raise SystemExit(m.error())
        if msgs and started is None:
            started, cpu0 = time.monotonic(), cpu_seconds(pid)
        n += len(msgs)
    secs = time.monotonic() - started
    cpu = cpu_seconds(pid) - cpu0
    c.close()
    print(f"{n} records in {secs:.2f} s: {n / secs:,.0f} records/s; server CPU {cpu:.2f} s "
          f"({cpu / n * 1e6:.1f} µs per record)")


if __name__ == "__main__":
    main()
