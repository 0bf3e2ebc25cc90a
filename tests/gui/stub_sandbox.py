"""A stand-in for `fleetdesk sandbox up --json` used by the launcher's unit tests.

It keeps the CLI contract (ready JSON line on stdout, endpoint.json with pid, a listening
MQTT port, runs until SIGTERM) without mosquitto, so launcher logic is tested in < 1 s.
Behaviour knobs (env): STUB_MODE = ok | fail | die-later | ignore-term.
"""

import json
import os
import signal
import socket
import sys
import time

args = sys.argv[1:]
assert args[:3] == ["sandbox", "up", "--json"], args
state_dir = args[args.index("--state-dir") + 1]
mode = os.environ.get("STUB_MODE", "ok")
if mode == "fail":
    print("starting broker", file=sys.stderr, flush=True)
    print("port 18883 is in use: pick another --port-base", file=sys.stderr, flush=True)
    sys.exit(3)
if mode == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(8)
port = srv.getsockname()[1]
ready = {
    "mqtt_host": "127.0.0.1",
    "mqtt_port": port,
    "ws_port": port + 1,
    "http_endpoint": "https://127.0.0.1:1",
    "ca_file": os.path.join(state_dir, "ca.pem"),
    "region": "us-east-1",
}
print("stub sandbox: some human chatter first", flush=True)
with open(os.path.join(state_dir, "endpoint.json"), "w") as f:
    json.dump({**ready, "pid": os.getpid(), "state_dir": state_dir}, f)
print(json.dumps(ready), flush=True)
srv.settimeout(0.1)
t0 = time.monotonic()
while True:
    if mode == "die-later" and time.monotonic() - t0 > 0.5:
        print("mosquitto died and could not be restarted", file=sys.stderr, flush=True)
        sys.exit(4)
    try:
        conn, _ = srv.accept()
        conn.close()
    except socket.timeout:
        pass
