"""A data team's consumer, as the confluent-kafka docs write one: a consumer group on
chat.room-events.v1 that decodes each value with the Avro deserializer and the schema registry
at LiveChat's /registry, then commits synchronously.

Usage: confluent_consumer.py BOOTSTRAP REGISTRY_URL GROUP ROOM_ID EXPECTED

Reads until EXPECTED messages of ROOM_ID arrived (then one more second, so a record read twice
would show), commits, and prints one JSON object: the room's messages in the order read (their
client_msg_id: the text is sealed) and the (partition, offset) of every record read.
"""

import json
import sys
import time

from confluent_kafka import Consumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

TOPIC = "chat.room-events.v1"


def main() -> None:
    bootstrap, registry, group, room, expected = sys.argv[1:6]
    expected = int(expected)
    decode = AvroDeserializer(SchemaRegistryClient({"url": registry}))
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([TOPIC])
    messages, positions = [], []
    deadline = time.monotonic() + 60
    settle_until = None
    while time.monotonic() < deadline:
        if settle_until is not None and time.monotonic() >= settle_until:
            break
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            raise SystemExit(f"consumer error: {msg.error()}")
        event = decode(msg.value(), SerializationContext(TOPIC, MessageField.VALUE))
        positions.append([msg.partition(), msg.offset()])
        if event["room_id"] == room and event["event_type"] == "MESSAGE_SENT":
            messages.append(event["client_msg_id"])
            if len(messages) >= expected and settle_until is None:
                settle_until = time.monotonic() + 1.0
    if positions:
        consumer.commit(asynchronous=False)
    consumer.close()
    print(json.dumps({"messages": messages, "positions": positions}))


if __name__ == "__main__":
    main()
