# Small GATT-server layer over MicroPython's `bluetooth` module (aioble is not bundled):
# registers the provisioning service, turns IRQs into an inbox the asyncio loop awaits,
# reassembles fragments per characteristic and fragments notifications to the MTU.

import asyncio

import bluetooth

from fd.ble_proto import CHANNEL_UUIDS, SERVICE_UUID, Reassembler, fragment, unhex

_IRQ_CENTRAL_CONNECT = 1
_IRQ_CENTRAL_DISCONNECT = 2
_IRQ_GATTS_WRITE = 3
_IRQ_MTU_EXCHANGED = 21

_FLAGS = bluetooth.FLAG_READ | bluetooth.FLAG_WRITE | bluetooth.FLAG_WRITE_NO_RESPONSE | bluetooth.FLAG_NOTIFY
BUFFER = 512  # max ATT value we accept per write (MTU 515 - 3)
COMPANY = 0xFFFF  # "no company" id used for the manufacturer-data state byte


class _Flag:
    # asyncio.ThreadSafeFlag on the device (IRQs run from the scheduler); Event elsewhere
    def __init__(self):
        tsf = getattr(asyncio, "ThreadSafeFlag", None)
        self.f = tsf() if tsf else asyncio.Event()
        self.tsf = tsf is not None

    def set(self):
        self.f.set()

    async def wait(self):
        await self.f.wait()
        if not self.tsf:
            self.f.clear()


def _ad(kind, payload):
    return bytes([len(payload) + 1, kind]) + payload


def uuid_le(uuid_str):
    """128-bit UUID string -> 16 bytes little endian (as in advertising data)."""
    return bytes(reversed(unhex(uuid_str.replace("-", ""))))


def adv_payloads(name, provisioned):
    """(adv_data, resp_data): flags + 128-bit service UUID; name + manufacturer state byte."""
    adv = _ad(0x01, b"\x06") + _ad(0x07, uuid_le(SERVICE_UUID))
    resp = _ad(0x09, name.encode()) + _ad(0xFF, COMPANY.to_bytes(2, "little") + bytes([1 if provisioned else 0]))
    return adv, resp


class GattServer:
    def __init__(self, ble):
        self.ble = ble
        chars = tuple((bluetooth.UUID(u), _FLAGS) for u in CHANNEL_UUIDS)
        ((h0, h1, h2, h3),) = ble.gatts_register_services(((bluetooth.UUID(SERVICE_UUID), chars),))
        self.handles = (h0, h1, h2, h3)
        self.chan_of = {h0: 0, h1: 1, h2: 2, h3: 3}
        for h in self.handles:
            ble.gatts_set_buffer(h, BUFFER)
        self.conn = None
        self.mtu = 23
        self.inbox = []
        self.flag = _Flag()
        self.reasm = [Reassembler() for _ in self.handles]
        ble.irq(self._irq)

    def _irq(self, event, data):
        if event == _IRQ_CENTRAL_CONNECT:
            self.conn = data[0]
            self.mtu = 23
            self.reasm = [Reassembler() for _ in self.handles]
            self.inbox.append(("connect", None))
        elif event == _IRQ_CENTRAL_DISCONNECT:
            self.conn = None
            self.inbox.append(("disconnect", None))
        elif event == _IRQ_GATTS_WRITE:
            h = data[1]
            if h in self.chan_of:
                self.inbox.append((self.chan_of[h], bytes(self.ble.gatts_read(h))))
        elif event == _IRQ_MTU_EXCHANGED:
            self.mtu = data[1]
        else:
            return
        self.flag.set()

    async def next_event(self):
        while not self.inbox:
            await self.flag.wait()
        return self.inbox.pop(0)

    def advertise(self, name, provisioned):
        adv, resp = adv_payloads(name, provisioned)
        self.ble.gap_advertise(100000, adv_data=adv, resp_data=resp)

    def stop_advertising(self):
        self.ble.gap_advertise(None)

    def set_value(self, chan, value):
        self.ble.gatts_write(self.handles[chan], value)

    def send(self, chan, msg):
        if self.conn is None:
            return
        for frag in fragment(msg, self.mtu - 3):
            self.ble.gatts_notify(self.conn, self.handles[chan], frag)

    def disconnect(self):
        if self.conn is not None:
            try:
                self.ble.gap_disconnect(self.conn)
            except Exception:
                pass
