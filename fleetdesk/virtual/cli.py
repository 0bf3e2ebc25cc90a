"""`fleetdesk boards virtual`: run N virtual boards until SIGTERM; `boards virtual-ctl`;
`boards press PORT [--long | --seconds S]` presses a virtual board's button.

fleetdesk/boards/cli.py creates the ``boards`` parser and calls
:func:`add_virtual_command`; :func:`register` only adds a ``boards`` parser itself when
that module is absent.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

CHIPS = ["esp32", "esp32s3", "esp32c3", "esp8266"]
SHORT_HOLD_S = 0.2
LONG_HOLD_S = 3.5  # the firmware's long press is >= 3 s
MAX_HOLD_S = 30.0


def add_virtual_command(boards_sub) -> None:
    """Add ``virtual`` and ``virtual-ctl`` under the ``boards`` parser."""
    p = boards_sub.add_parser("virtual", help="run virtual ESP boards that esptool can flash (until SIGTERM)")
    p.add_argument("--count", type=int, default=1, help="number of boards (default 1)")
    p.add_argument("--chip", default="esp32", choices=CHIPS)
    p.add_argument("--state-dir", type=Path, help="where flash images persist (default: app data dir)")
    p.add_argument("--base-port", type=int, default=0, help="first TCP port (default: free ports)")
    p.add_argument("--no-throttle", action="store_true", help="no serial line-rate limit (fast tests)")
    p.add_argument("--flash-size", type=int, default=4, choices=[1, 2, 4, 8, 16], help="flash size in MB")
    p.add_argument("--revision", default="3.0", help="chip revision, e.g. 3.0 (ESP32) or 0.2")
    p.add_argument("--secure-boot", action="store_true", help="eFuses report secure boot enabled")
    p.add_argument("--flash-encryption", action="store_true", help="eFuses report flash encryption enabled")
    p.add_argument("--interpreter", default="micropython", choices=["micropython", "cpython"],
                   help="how booted firmware runs")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for the booted firmware (repeatable)")
    p.add_argument("--native-usb", action="store_true",
                   help="USB-Serial/JTAG board (VID 303A, like ESP32-S3/C3): re-enumerates under a new "
                        "port when a flash tool resets it into the bootloader")
    p.add_argument("--psram", action="store_true",
                   help="a PSRAM board (ESP32/ESP32-S3 SPIRAM build, MB-sized GC heap); default: the chip's "
                        "stock heap without PSRAM (ESP32 112 KB)")
    p.add_argument("--no-register", action="store_true", help="do not list the ports for discovery")
    p.add_argument("--json", action="store_true", help="print one JSON line: [{port, chip, mac}, ...]")
    p.set_defaults(func=_run)

    c = boards_sub.add_parser("virtual-ctl", help="unplug/replug/reset/drop a running virtual board")
    c.add_argument("port", help="socket://127.0.0.1:PORT of the board")
    c.add_argument("action", choices=["unplug", "replug", "reenumerate", "reset", "drop", "status"],
                   help="reenumerate = unplug + replug under a new port (same location)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=_ctl)

    b = boards_sub.add_parser("press", help="press the button of a running virtual board (BOOT / button_pin)")
    b.add_argument("port", help="socket://127.0.0.1:PORT of the board")
    hold = b.add_mutually_exclusive_group()
    hold.add_argument("--long", action="store_true",
                      help=f"hold it {LONG_HOLD_S:g} s: the firmware goes back to Config mode (BLE)")
    hold.add_argument("--seconds", type=float, help=f"hold it this long (default {SHORT_HOLD_S:g} s: a short press)")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=_press)


def parse_revision(text: str) -> int:
    """"3.0" -> 300, "0.2" -> 2, "301" -> 301."""
    from fleetdesk.errors import BoardError

    try:
        if "." in text:
            major, minor = text.lstrip("v").split(".", 1)
            return int(major) * 100 + int(minor)
        return int(text)
    except ValueError:
        raise BoardError(f"Bad chip revision {text!r}", "write it as MAJOR.MINOR, e.g. 3.0") from None


def _run(args) -> int:
    import asyncio

    from fleetdesk.errors import BoardError

    if args.count < 1 or args.count > 256:
        raise BoardError(f"--count {args.count} is out of range", "run between 1 and 256 boards")
    if args.interpreter == "micropython":
        # refuse up front: boards that cannot boot what they are flashed with are no stand-in
        from fleetdesk.virtual.runtime import micropython_binary

        try:
            micropython_binary()
        except BoardError as exc:
            raise BoardError(f"virtual boards cannot boot firmware: {exc.message}", exc.advice) from None
    return asyncio.run(_serve(args))


async def _serve(args) -> int:
    import asyncio
    import signal

    from fleetdesk.virtual.board import VirtualBoard, default_state_dir
    from fleetdesk.virtual.spec import BoardSpec

    env = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            from fleetdesk.errors import BoardError

            raise BoardError(f"Bad --env {item!r}", "write it as KEY=VALUE")
        env[key] = value
    state_dir = args.state_dir or default_state_dir()
    state_dir.mkdir(parents=True, exist_ok=True)
    revision = parse_revision(args.revision)
    boards: list[VirtualBoard] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # Windows: Ctrl-C raises KeyboardInterrupt
            pass
    control = await asyncio.start_server(lambda r, w: _control(r, w, boards), "127.0.0.1", 0)
    control_url = "tcp://127.0.0.1:%d" % control.sockets[0].getsockname()[1]
    try:
        for i in range(args.count):
            spec = BoardSpec(chip=args.chip, name=f"{args.chip}-{i}", flash_mb=args.flash_size,
                             revision=revision, secure_boot=args.secure_boot,
                             flash_encryption=args.flash_encryption, throttle=not args.no_throttle,
                             interpreter=args.interpreter, native_usb=args.native_usb, psram=args.psram,
                             mac_seed=str(state_dir.resolve()))  # boards of two processes never share a MAC
            board = VirtualBoard(spec, state_dir, args.base_port + i if args.base_port else 0,
                                 register=not args.no_register, env=env or None)
            board.control = control_url
            await board.start()
            boards.append(board)
        listing = [{"port": b.url, "chip": b.spec.model.name, "mac": b.spec.mac} for b in boards]
        if args.json:
            print(json.dumps(listing), flush=True)
        else:
            for entry in listing:
                print(f"{entry['port']}  {entry['chip']}  {entry['mac']}", flush=True)
            print(f"{len(boards)} virtual board(s) running; flash state in {state_dir}. Ctrl-C to stop.",
                  file=sys.stderr, flush=True)
        await stop.wait()
    finally:
        control.close()
        for board in boards:
            try:
                await board.close()
            except Exception:  # noqa: BLE001 - closing the rest matters more
                pass
    return 0


async def _control(reader, writer, boards) -> None:
    from fleetdesk.errors import BoardError, FleetdeskError

    try:
        line = await reader.readline()
        request = json.loads(line)
        board = next((b for b in boards if b.url == request.get("port")), None)
        action = request.get("action")
        if board is None:
            reply = {"ok": False, "error": "no such board in this process"}
        elif action == "unplug":
            await board.unplug()
            reply = {"ok": True}
        elif action == "replug":
            await board.replug()
            reply = {"ok": True}
        elif action == "reenumerate":
            await board.unplug()
            await board.replug(new_port=True)
            reply = {"ok": True}
        elif action == "reset":
            await board.reset()
            reply = {"ok": True}
        elif action == "drop":
            board.drop_connections()
            reply = {"ok": True}
        elif action == "status":
            reply = {"ok": True}
        elif action == "press":
            seconds = float(request.get("seconds", SHORT_HOLD_S))
            if not 0.02 <= seconds <= MAX_HOLD_S:
                raise BoardError(f"a press of {seconds:g} s is out of range",
                                 f"hold the button between 0.02 and {MAX_HOLD_S:g} s")
            reply = {"ok": True, **await board.press_button(seconds)}
        else:
            reply = {"ok": False, "error": f"unknown action {action!r}"}
        if board is not None and reply["ok"]:
            reply.update(state=board.state, boots=board.boots, port=board.url)
    except FleetdeskError as exc:
        reply = {"ok": False, "error": exc.message, "advice": exc.advice}
    except Exception as exc:  # noqa: BLE001 - a bad control request must not stop the boards
        reply = {"ok": False, "error": str(exc)}
    writer.write(json.dumps(reply).encode() + b"\n")
    try:
        await writer.drain()
    finally:
        writer.close()


def _ctl(args) -> int:
    from fleetdesk.virtual import registry

    result = registry.control(args.port, args.action)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result.get('port', args.port)}: {result.get('state', 'ok')}")
    return 0


def _press(args) -> int:
    """Press a virtual board's button; exit 0 when the firmware was watching it, 1 if not."""
    from fleetdesk.errors import BoardError
    from fleetdesk.virtual import registry

    if registry.lookup(args.port) is None:
        raise BoardError(f"{args.port} is not a running virtual board",
                         "only virtual boards have a button this command can press; on a real board "
                         "press its BOOT button (list virtual boards with `fleetdesk boards list`)")
    seconds = LONG_HOLD_S if args.long else (args.seconds if args.seconds is not None else SHORT_HOLD_S)
    result = registry.control(args.port, "press", timeout=seconds + 15.0, seconds=seconds)
    if args.json:
        print(json.dumps(result))
    elif result.get("listening"):
        kind = "long press: back to Config mode (BLE)" if seconds >= 3.0 else "short press"
        print(f"{args.port}: button GPIO{result['pin']} held {seconds:g} s ({kind})")
    else:
        print(f"{args.port}: button GPIO{result['pin']} held {seconds:g} s, but the firmware was not "
              f"watching it (state {result.get('state')}: not booted, or in Config mode)", file=sys.stderr)
    return 0 if result.get("listening") else 1
