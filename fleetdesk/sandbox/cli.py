"""`fleetdesk sandbox up | env | status`: run and use the local AWS IoT Core emulator."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("sandbox", help="the local AWS IoT Core emulator (mosquitto + control plane)")
    sub = p.add_subparsers(dest="sandbox_command", metavar="ACTION")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    up = sub.add_parser("up", help="run the sandbox in the foreground until Ctrl-C / SIGTERM")
    _state_arg(up)
    up.add_argument("--port-base", type=int, default=None, metavar="N",
                    help="use ports N..N+3 (mqtt, ws, https, internal); 0 = free ports (default 18883)")
    up.add_argument("--region", default="us-east-1", help="region used in ARNs (default us-east-1)")
    up.add_argument("--host", default="127.0.0.1", metavar="ADDR",
                    help="address devices use for MQTT (default 127.0.0.1); give this PC's LAN IP or name "
                         "for real boards: the MQTT listener then binds all interfaces")
    up.add_argument("--json", action="store_true", help="print one JSON line when ready")
    up.add_argument("--reset", action="store_true",
                    help="move the whole state dir aside (asks for a confirmation word) and start an empty sandbox")
    up.set_defaults(func=_up)

    env = sub.add_parser("env", help="print shell exports that point boto3 / the aws CLI at the sandbox")
    _state_arg(env)
    env.add_argument("--format", choices=("sh", "powershell", "json"), default="sh",
                     help="sh (default; eval \"$(fleetdesk sandbox env)\"), powershell, or json")
    env.set_defaults(func=_env)

    status = sub.add_parser("status", help="is a sandbox running for this state dir? (exit 0 yes, 3 no)")
    _state_arg(status)
    status.add_argument("--json", action="store_true", help="one JSON line")
    status.set_defaults(func=_status)


def _state_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state-dir", type=Path, default=None, metavar="DIR",
                   help="sandbox state dir (default: the per-user one, FLEETDESK_SANDBOX_DIR overrides)")


def _state_dir(args) -> Path:
    from fleetdesk.paths import sandbox_state_dir

    return args.state_dir or sandbox_state_dir()


def _up(args) -> int:
    import asyncio

    from fleetdesk.sandbox.server import DEFAULT_PORT_BASE, run_sandbox

    port_base = DEFAULT_PORT_BASE if args.port_base is None else args.port_base
    if getattr(args, "reset", False):
        import sys

        from fleetdesk.errors import SandboxError
        from fleetdesk.sandbox.server import is_running
        from fleetdesk.sandbox.state_check import reset_state

        state = _state_dir(args)
        if is_running(state):
            raise SandboxError(f"a sandbox is running for {state}", "stop it before resetting its state")

        def ask(prompt: str) -> str:
            print(prompt, end="", file=sys.stderr, flush=True)
            return input()

        aside = reset_state(state, ask)
        if aside:
            print(f"sandbox: the old state is kept in {aside}", file=sys.stderr, flush=True)

    def ready(info) -> None:
        if args.json:
            print(json.dumps(info.ready_json()), flush=True)
        else:
            print(f"Sandbox running (state {info.state_dir})\n"
                  f"  MQTT (mTLS)   {info.mqtt_host}:{info.mqtt_port}\n"
                  f"  MQTT over WSS {info.mqtt_host}:{info.ws_port} (SigV4)\n"
                  f"  control plane {info.http_endpoint}\n"
                  f"  CA            {info.ca_file}\n"
                  f"Use it from a shell: eval \"$(fleetdesk sandbox env)\"   Stop: Ctrl-C", flush=True)

    try:
        asyncio.run(run_sandbox(_state_dir(args), port_base, args.region, host=args.host, on_ready=ready))
    except KeyboardInterrupt:
        pass
    return 0


def _running(args):
    from fleetdesk.sandbox.info import SandboxInfo

    return SandboxInfo.load(_state_dir(args))


def _env(args) -> int:
    from fleetdesk.errors import SandboxError

    info = _running(args)
    if info is None:
        raise SandboxError(f"no sandbox is running for {_state_dir(args)}",
                           "start one with `fleetdesk sandbox up` (same --state-dir)")
    env = info.env()
    if args.format == "json":
        print(json.dumps(env))
    elif args.format == "powershell":
        for k, v in env.items():
            print(f"$env:{k} = '{v}'")
    else:
        for k, v in env.items():
            print(f"export {k}={shlex.quote(v)}")
    return 0


def _status(args) -> int:
    info = _running(args)
    if args.json:
        doc = {"running": info is not None, **(info.to_json() if info else {"state_dir": str(_state_dir(args))})}
        if info:
            from fleetdesk.sandbox.quotas import load_status

            doc.update(load_status(Path(info.state_dir)) or {})  # quotas in force, throttled per caller
        print(json.dumps(doc))
    elif info:
        print(f"running (pid {info.pid}): mqtt {info.mqtt_host}:{info.mqtt_port}, control plane {info.http_endpoint}")
    else:
        print(f"not running (state dir {_state_dir(args)})", file=sys.stderr)
    return 0 if info else 3
