# Off-board shim of MicroPython's `esp32` module.
import _air


def mcu_temperature():
    return 41


class Partition:
    BOOT = 0
    RUNNING = 1
    TYPE_APP = 0
    TYPE_DATA = 1

    def __init__(self, id):
        self.id = id

    def info(self):
        return (0, 0x10 if self.id == Partition.RUNNING else 0, 0x10000, 0x1F0000, "factory", False)

    def get_next_update(self):
        raise OSError(19, "no OTA partitions off-board (file-set OTA is used)")

    @staticmethod
    def mark_app_valid_cancel_rollback():
        return None


def chip():
    return _air.chip()
