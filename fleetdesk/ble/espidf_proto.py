"""ESP-IDF protocomm / wifi_provisioning protobuf messages, built at runtime (no protoc).

Field names, numbers and types follow ESP-IDF's published definitions
(components/protocomm/proto: constants, sec0, sec1, sec2, session;
components/wifi_provisioning/proto: wifi_constants, wifi_config, wifi_scan, wifi_ctrl).
The descriptors go into a private pool, so they never clash with other protobuf users.

    from fleetdesk.ble.espidf_proto import pb
    msg = pb.SessionData(sec_ver=pb.SecScheme1)
"""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto
_T = {"bytes": _F.TYPE_BYTES, "string": _F.TYPE_STRING, "bool": _F.TYPE_BOOL, "int32": _F.TYPE_INT32,
      "uint32": _F.TYPE_UINT32}


def _two_round_payload(msg_type: str, prefix: str) -> list[tuple]:
    """SecNPayload of the two-round handshakes (sec1.proto, sec2.proto): the message type, then
    one of <prefix>SessionCmd0/Resp0/Cmd1/Resp1 (fields 20-23, oneof ``payload``)."""
    steps = [(f"{side}{n}", f"{prefix}Session{msg}{n}") for n in (0, 1) for side, msg in (("sc", "Cmd"), ("sr", "Resp"))]
    return [("msg", 1, msg_type)] + [(name, 20 + i, message, "payload") for i, (name, message) in enumerate(steps)]


def _commands(first: int, *commands: str) -> list[tuple]:
    """The ``payload`` oneof of the wifi_*.proto payloads: ``cmd_<x>`` then ``resp_<x>`` (messages
    Cmd<X>, Resp<X>) for each command X in order, numbered from ``first``."""
    out: list[tuple] = []
    for command in commands:
        snake = re.sub(r"(?<!^)(?=[A-Z])", "_", command).lower()
        for kind in ("cmd", "resp"):
            out.append((f"{kind}_{snake}", first + len(out), kind.title() + command, "payload"))
    return out


# file -> (dependencies, enums {name: [(value name, number)]}, messages {name: [field specs]})
# field spec: (name, number, type) where type is a scalar name, an enum or a message name;
# a 4th item names the oneof; a leading "*" on the type means repeated.
_SPEC: dict[str, tuple[list[str], dict[str, list[tuple[str, int]]], dict[str, list[tuple]]]] = {
    "constants.proto": ([], {"Status": [("Success", 0), ("InvalidSecScheme", 1), ("InvalidProto", 2),
                                        ("TooManySessions", 3), ("InvalidArgument", 4), ("InternalError", 5),
                                        ("CryptoError", 6), ("InvalidSession", 7)]}, {}),
    "sec0.proto": (["constants.proto"],
                   {"Sec0MsgType": [("S0_Session_Command", 0), ("S0_Session_Response", 1)]},
                   {"S0SessionCmd": [], "S0SessionResp": [("status", 1, "Status")],
                    "Sec0Payload": [("msg", 1, "Sec0MsgType"), ("sc", 20, "S0SessionCmd", "payload"),
                                    ("sr", 21, "S0SessionResp", "payload")]}),
    "sec1.proto": (["constants.proto"],
                   {"Sec1MsgType": [("Session_Command0", 0), ("Session_Response0", 1), ("Session_Command1", 2),
                                    ("Session_Response1", 3)]},
                   {"SessionCmd1": [("client_verify_data", 2, "bytes")],
                    "SessionResp1": [("status", 1, "Status"), ("device_verify_data", 3, "bytes")],
                    "SessionCmd0": [("client_pubkey", 1, "bytes")],
                    "SessionResp0": [("status", 1, "Status"), ("device_pubkey", 2, "bytes"),
                                     ("device_random", 3, "bytes")],
                    "Sec1Payload": _two_round_payload("Sec1MsgType", "")}),
    "sec2.proto": (["constants.proto"],
                   {"Sec2MsgType": [("S2Session_Command0", 0), ("S2Session_Response0", 1),
                                    ("S2Session_Command1", 2), ("S2Session_Response1", 3)]},
                   {"S2SessionCmd0": [("client_username", 1, "bytes"), ("client_pubkey", 2, "bytes")],
                    "S2SessionResp0": [("status", 1, "Status"), ("device_pubkey", 2, "bytes"),
                                       ("device_salt", 3, "bytes")],
                    "S2SessionCmd1": [("client_proof", 1, "bytes")],
                    "S2SessionResp1": [("status", 1, "Status"), ("device_proof", 2, "bytes"),
                                       ("device_nonce", 3, "bytes")],
                    "Sec2Payload": _two_round_payload("Sec2MsgType", "S2")}),
    "session.proto": (["sec0.proto", "sec1.proto", "sec2.proto"],
                      {"SecSchemeVersion": [("SecScheme0", 0), ("SecScheme1", 1), ("SecScheme2", 2)]},
                      {"SessionData": [("sec_ver", 2, "SecSchemeVersion"), ("sec0", 10, "Sec0Payload", "proto"),
                                       ("sec1", 11, "Sec1Payload", "proto"), ("sec2", 12, "Sec2Payload", "proto")]}),
    "wifi_constants.proto": ([], {
        "WifiStationState": [("Connected", 0), ("Connecting", 1), ("Disconnected", 2), ("ConnectionFailed", 3)],
        "WifiConnectFailedReason": [("AuthError", 0), ("NetworkNotFound", 1)],
        "WifiAuthMode": [("Open", 0), ("WEP", 1), ("WPA_PSK", 2), ("WPA2_PSK", 3), ("WPA_WPA2_PSK", 4),
                         ("WPA2_ENTERPRISE", 5), ("WPA3_PSK", 6), ("WPA2_WPA3_PSK", 7)]},
        {"WifiConnectedState": [("ip4_addr", 1, "string"), ("auth_mode", 2, "WifiAuthMode"), ("ssid", 3, "bytes"),
                                ("bssid", 4, "bytes"), ("channel", 5, "int32")],
         "WifiAttemptFailed": [("attempts_remaining", 1, "uint32")]}),
    "wifi_config.proto": (["constants.proto", "wifi_constants.proto"],
                          {"WiFiConfigMsgType": [("TypeCmdGetStatus", 0), ("TypeRespGetStatus", 1),
                                                 ("TypeCmdSetConfig", 2), ("TypeRespSetConfig", 3),
                                                 ("TypeCmdApplyConfig", 4), ("TypeRespApplyConfig", 5)]},
                          {"CmdGetStatus": [],
                           "RespGetStatus": [("status", 1, "Status"), ("sta_state", 2, "WifiStationState"),
                                             ("fail_reason", 10, "WifiConnectFailedReason", "state"),
                                             ("connected", 11, "WifiConnectedState", "state"),
                                             ("attempt_failed", 12, "WifiAttemptFailed", "state")],
                           "CmdSetConfig": [("ssid", 1, "bytes"), ("passphrase", 2, "bytes"), ("bssid", 3, "bytes"),
                                            ("channel", 4, "int32")],
                           "RespSetConfig": [("status", 1, "Status")],
                           "CmdApplyConfig": [],
                           "RespApplyConfig": [("status", 1, "Status")],
                           "WiFiConfigPayload": [("msg", 1, "WiFiConfigMsgType"),
                                                 *_commands(10, "GetStatus", "SetConfig", "ApplyConfig")]}),
    "wifi_scan.proto": (["constants.proto", "wifi_constants.proto"],
                        {"WiFiScanMsgType": [("TypeCmdScanStart", 0), ("TypeRespScanStart", 1),
                                             ("TypeCmdScanStatus", 2), ("TypeRespScanStatus", 3),
                                             ("TypeCmdScanResult", 4), ("TypeRespScanResult", 5)]},
                        {"CmdScanStart": [("blocking", 1, "bool"), ("passive", 2, "bool"),
                                          ("group_channels", 3, "uint32"), ("period_ms", 4, "uint32")],
                         "RespScanStart": [], "CmdScanStatus": [],
                         "RespScanStatus": [("scan_finished", 1, "bool"), ("result_count", 2, "uint32")],
                         "CmdScanResult": [("start_index", 1, "uint32"), ("count", 2, "uint32")],
                         "WiFiScanResult": [("ssid", 1, "bytes"), ("channel", 2, "uint32"), ("rssi", 3, "int32"),
                                            ("bssid", 4, "bytes"), ("auth", 5, "WifiAuthMode")],
                         "RespScanResult": [("entries", 1, "*WiFiScanResult")],
                         "WiFiScanPayload": [("msg", 1, "WiFiScanMsgType"), ("status", 2, "Status"),
                                             *_commands(10, "ScanStart", "ScanStatus", "ScanResult")]}),
    "wifi_ctrl.proto": (["constants.proto"],
                        {"WiFiCtrlMsgType": [("TypeCtrlReserved", 0), ("TypeCmdCtrlReset", 1),
                                             ("TypeRespCtrlReset", 2), ("TypeCmdCtrlReprov", 3),
                                             ("TypeRespCtrlReprov", 4)]},
                        {"CmdCtrlReset": [], "RespCtrlReset": [], "CmdCtrlReprov": [], "RespCtrlReprov": [],
                         "WiFiCtrlPayload": [("msg", 1, "WiFiCtrlMsgType"), ("status", 2, "Status"),
                                             *_commands(11, "CtrlReset", "CtrlReprov")]}),
}


def _build() -> SimpleNamespace:
    pool = descriptor_pool.DescriptorPool()
    enums = {e for _deps, es, _ms in _SPEC.values() for e in es}
    out: dict[str, Any] = {}
    for fname, (deps, es, ms) in _SPEC.items():
        fd = descriptor_pb2.FileDescriptorProto(name=fname, syntax="proto3", dependency=deps)
        for ename, values in es.items():
            e = fd.enum_type.add(name=ename)
            for vname, num in values:
                e.value.add(name=vname, number=num)
                out[vname] = num
        for mname, fields in ms.items():
            m = fd.message_type.add(name=mname)
            oneofs: list[str] = []
            for spec in fields:
                name, number, ftype = spec[:3]
                repeated = ftype.startswith("*")
                ftype = ftype.lstrip("*")
                f = m.field.add(name=name, number=number,
                                label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL)
                if ftype in _T:
                    f.type = _T[ftype]
                else:
                    f.type = _F.TYPE_ENUM if ftype in enums else _F.TYPE_MESSAGE
                    f.type_name = "." + ftype
                if len(spec) > 3:
                    if spec[3] not in oneofs:
                        oneofs.append(spec[3])
                        m.oneof_decl.add(name=spec[3])
                    f.oneof_index = oneofs.index(spec[3])
        pool.Add(fd)
        for mname in ms:
            out[mname] = message_factory.GetMessageClass(pool.FindMessageTypeByName(mname))
    return SimpleNamespace(**out)


pb = _build()
