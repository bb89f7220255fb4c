"""The original prototype's way, for comparison: one INSERT and one commit per MQTT message.

A paho subscriber (QoS 1, acking on receipt like the Flask app) that writes every reading
with its own INSERT and COMMIT into a ``power_readings``-shaped table. Run by bench/pipeline.py.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
import pymysql
from paho.mqtt.enums import CallbackAPIVersion

from powerflow_ingest.mqtt import BrokerAddress

TABLE = """
CREATE TABLE IF NOT EXISTS power_readings (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    timestamp DATETIME(3) NOT NULL,
    device_code VARCHAR(64) NOT NULL,
    temperature DOUBLE, humidity DOUBLE, brightness DOUBLE, electric DOUBLE,
    created_at DATETIME(3) NOT NULL
)
"""


def main(mqtt_url: str, db_host: str, db_port: int, database: str) -> None:
    """Subscribe to power/measurement and store each message as the prototype did."""
    db = pymysql.connect(host=db_host, port=db_port, user="root", database=database)
    with db.cursor() as cur:
        cur.execute(TABLE)
    db.commit()
    stop = threading.Event()

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        body = json.loads(message.payload)
        with db.cursor() as cur:
            cur.execute(
                "INSERT INTO power_readings (timestamp, device_code, temperature, humidity,"
                " brightness, electric, created_at) VALUES (%s,%s,%s,%s,%s,%s,%s)",
                (
                    datetime.fromisoformat(body["timestamp"]).replace(tzinfo=None),
                    str(body["deviceCode"]),
                    body.get("temp"),
                    body.get("humidity"),
                    body.get("brightness"),
                    body.get("electric"),
                    datetime.now(UTC).replace(tzinfo=None),
                ),
            )
        db.commit()

    address = BrokerAddress.parse(mqtt_url)
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="original")
    if address.username:
        client.username_pw_set(address.username, address.password)
    client.on_message = on_message
    client.on_connect = lambda c, *_a: c.subscribe("power/measurement", qos=1)
    client.connect(address.host, address.port)
    signal.signal(signal.SIGTERM, lambda *_a: stop.set())
    client.loop_start()
    print("ready", flush=True)
    stop.wait()
    client.loop_stop()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
