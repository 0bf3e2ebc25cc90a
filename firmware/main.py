# Boot: run the app from the active OTA slot (/ota/<slot>/) if there is one, else the
# factory files next to this one. A slot that fails to import is rolled back.
import sys


def _read_json(path):
    import json

    try:
        with open(path) as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return None


def _rollback(info, exc):
    import json
    import os

    print("boot: OTA slot %s does not start (%r); rolling back to %s" % (
        info.get("slot"), exc, info.get("previous")))
    try:
        os.remove("ota/boot.json")
    except OSError:
        pass
    s = _read_json("settings.json")
    if isinstance(s, dict) and info.get("previous"):
        s["firmware_version"] = info["previous"]
        with open("settings.json", "w") as f:
            f.write(json.dumps(s))
    for name in list(sys.modules):
        if name == "fd" or name.startswith("fd."):
            del sys.modules[name]


def boot():
    info = _read_json("ota/boot.json")
    slot = None
    if isinstance(info, dict) and info.get("slot") in ("a", "b"):
        slot = "ota/" + info["slot"]
        sys.path.insert(0, slot)
    try:
        from fd import app
    except Exception as exc:
        if slot is None:
            raise
        sys.path.remove(slot)
        _rollback(info, exc)
        from fd import app
    app.main()


try:
    boot()
except MemoryError:  # say it plainly: the board's GC heap is too small for this firmware
    import gc

    gc.collect()
    print("E: out of memory: this firmware needs a larger GC heap than this board gives (%d bytes free "
          "after a collect; ESP32: 112 KB, an ESP8266's 38 KB is too small); see firmware/README.md 'Heap'"
          % gc.mem_free())
    raise
