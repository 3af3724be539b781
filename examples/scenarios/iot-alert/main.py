"""IoT alert over MQTT: the seed's "IoT data processing" scenario, kept in its shape.

A device publishes `{"device_data": {"device_id": ..., "temperature": ...}}` on `sensors/<id>/telemetry`; an
MQTT trigger runs this function for each message; above the threshold it publishes an alert on
`alerts/<device_id>` (retained, QoS 1) that dashboards and the device itself subscribe to.
What was fixed so that it runs (docs/scenarios.md):
- `event['device_data']`: a trigger's event is a CloudEvent (polyfn's native flavor); the device's JSON is
  the message body, `json.loads(event['data']['body'])`;
- `THRESHOLD` and `send_alert` were never defined: the threshold comes from the function's environment,
  the alert is an MQTT publish (paho-mqtt) back to the broker the reading came from.
"""

import json
import os

import paho.mqtt.publish as mqtt_publish

THRESHOLD = float(os.environ.get("THRESHOLD", "30"))
MQTT_HOST = os.environ.get("MQTT_HOST", "127.0.0.1")
MQTT_PORT = int(os.environ.get("MQTT_PORT", "1883"))


def send_alert(device_id, message, reading):
    payload = json.dumps({"device_id": device_id, "alert": message, "reading": reading})
    mqtt_publish.single(f"alerts/{device_id}", payload, qos=1, retain=True, hostname=MQTT_HOST, port=MQTT_PORT,
                        client_id="")


def handle(event, context):
    # 获取设备数据 (the device's reading)
    device_data = json.loads(event["data"]["body"])["device_data"]
    # 对设备数据进行处理,如温度监控和报警 (monitor the temperature, alert above the threshold)
    if device_data["temperature"] > THRESHOLD:
        send_alert(device_data["device_id"], "Temperature is too high!", device_data)
        print(f"ALERT {device_data['device_id']}: {device_data['temperature']} > {THRESHOLD}")
        return {"alert": True}
    return {"alert": False}
