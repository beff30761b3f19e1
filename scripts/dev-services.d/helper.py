#!/usr/bin/env python3
"""Helpers for scripts/dev-services (standard library only, no packages needed).

Protocol-level readiness probes (each exits 0 and prints one line when the server really
answers, non-zero with the reason otherwise), plus small config generators.

  helper.py kafka HOST PORT          ApiVersions v0 + Metadata v4: a broker is registered
  helper.py cql HOST PORT            native protocol v4: OPTIONS, STARTUP, SELECT release_version
  helper.py mongo HOST PORT          OP_MSG hello (a writable primary) + ping + buildInfo
  helper.py memcached HOST PORT      text protocol "version"
  helper.py kafka-cluster-id         prints a random Kafka cluster id (base64url UUID)
  helper.py clickhouse-config SRC_DIR DST_DIR HOME HTTP_PORT TCP_PORT
                                     copies config.xml/users.xml with paths and ports rewritten
"""

import base64
import os
import socket
import struct
import sys
import uuid
import xml.etree.ElementTree as ET

TIMEOUT = 5.0


class ProbeError(Exception):
    pass


def connect(host, port):
    try:
        return socket.create_connection((host, int(port)), timeout=TIMEOUT)
    except OSError as e:
        raise ProbeError(f"cannot connect to {host}:{port}: {e}") from None


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ProbeError("connection closed by the server")
        buf += chunk
    return bytes(buf)


class Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ProbeError("short response")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def i8(self):
        return struct.unpack(">b", self.take(1))[0]

    def i16(self):
        return struct.unpack(">h", self.take(2))[0]

    def i32(self):
        return struct.unpack(">i", self.take(4))[0]

    def string16(self):
        n = self.i16()
        return None if n < 0 else self.take(n).decode("utf-8", "replace")


# ---------------------------------------------------------------- Kafka


def kafka_request(sock, api_key, version, corr, body):
    client = b"dev-services"
    header = struct.pack(">hhih", api_key, version, corr, len(client)) + client
    msg = header + body
    sock.sendall(struct.pack(">i", len(msg)) + msg)
    size = struct.unpack(">i", recv_exact(sock, 4))[0]
    r = Reader(recv_exact(sock, size))
    if r.i32() != corr:
        raise ProbeError("correlation id mismatch")
    return r


def probe_kafka(host, port):
    with connect(host, port) as s:
        r = kafka_request(s, 18, 0, 1, b"")  # ApiVersions v0
        err = r.i16()
        if err != 0:
            raise ProbeError(f"ApiVersions error code {err}")
        versions = {}
        for _ in range(r.i32()):
            key, lo, hi = r.i16(), r.i16(), r.i16()
            versions[key] = (lo, hi)
        if 3 not in versions:
            raise ProbeError("broker does not offer the Metadata API")
        lo, hi = versions[3]
        if not lo <= 4 <= hi:
            raise ProbeError(f"Metadata v4 unsupported (broker offers v{lo}-v{hi})")
        # Metadata v4: empty topic list (= no topics), allow_auto_topic_creation = false.
        r = kafka_request(s, 3, 4, 2, struct.pack(">ib", 0, 0))
        r.i32()  # throttle_time_ms
        brokers = []
        for _ in range(r.i32()):
            node, bhost, bport = r.i32(), r.string16(), r.i32()
            r.string16()  # rack
            brokers.append(f"{node}@{bhost}:{bport}")
        cluster = r.string16()
        controller = r.i32()
        if not brokers:
            raise ProbeError("no broker registered yet (metadata has an empty broker list)")
        if controller < 0:
            raise ProbeError("no controller yet")
        return f"kafka ready: cluster {cluster}, brokers {','.join(brokers)}, {len(versions)} APIs"


# ---------------------------------------------------------------- CQL (native protocol v4)


def cql_frame(sock, stream, opcode, body):
    sock.sendall(struct.pack(">BBhBi", 0x04, 0, stream, opcode, len(body)) + body)
    head = recv_exact(sock, 9)
    _version, _flags, rstream, ropcode, length = struct.unpack(">BBhBi", head)
    r = Reader(recv_exact(sock, length))
    if ropcode == 0x00:
        code = r.i32()
        raise ProbeError(f"CQL error 0x{code:04x}: {r.string16()}")
    if rstream != stream:
        raise ProbeError("CQL stream id mismatch")
    return ropcode, r


def cql_string(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def probe_cql(host, port):
    with connect(host, port) as s:
        op, _ = cql_frame(s, 1, 0x05, b"")  # OPTIONS
        if op != 0x06:
            raise ProbeError(f"OPTIONS answered with opcode 0x{op:02x}, not SUPPORTED")
        body = struct.pack(">h", 1) + cql_string("CQL_VERSION") + cql_string("3.0.0")
        op, _ = cql_frame(s, 2, 0x01, body)  # STARTUP
        if op == 0x03:
            raise ProbeError("server requires authentication (expected AllowAllAuthenticator)")
        if op != 0x02:
            raise ProbeError(f"STARTUP answered with opcode 0x{op:02x}, not READY")
        q = b"SELECT release_version FROM system.local"
        body = struct.pack(">i", len(q)) + q + struct.pack(">hB", 0x0001, 0)  # consistency ONE
        op, r = cql_frame(s, 3, 0x07, body)  # QUERY
        if op != 0x08 or r.i32() != 2:
            raise ProbeError("query did not return rows")
        flags, ncols = r.i32(), r.i32()
        if flags & 0x0002:
            r.take(max(r.i32(), 0))
        if not flags & 0x0004:
            if flags & 0x0001:
                r.string16(), r.string16()
            for _ in range(ncols):
                if not flags & 0x0001:
                    r.string16(), r.string16()
                r.string16()
                r.i16()  # varchar: no type parameters
        if r.i32() < 1:
            raise ProbeError("system.local is empty")
        n = r.i32()
        version = r.take(n).decode() if n >= 0 else "?"
        return f"cassandra ready: release_version {version}"


# ---------------------------------------------------------------- MongoDB wire (OP_MSG)


def bson_doc(pairs):
    out = b""
    for key, value in pairs:
        k = key.encode() + b"\x00"
        if isinstance(value, int):
            out += b"\x10" + k + struct.pack("<i", value)
        else:
            v = value.encode() + b"\x00"
            out += b"\x02" + k + struct.pack("<i", len(v)) + v
    return struct.pack("<i", len(out) + 5) + out + b"\x00"


def bson_top_level(data):
    """Decodes the scalar top-level fields of a BSON document; nested ones are skipped."""
    out, pos = {}, 4
    end = struct.unpack_from("<i", data, 0)[0] - 1
    while pos < end:
        t = data[pos]
        pos += 1
        z = data.index(b"\x00", pos)
        key = data[pos:z].decode()
        pos = z + 1
        if t == 0x01:
            out[key] = struct.unpack_from("<d", data, pos)[0]
            pos += 8
        elif t in (0x02, 0x0D, 0x0E):
            n = struct.unpack_from("<i", data, pos)[0]
            out[key] = data[pos + 4:pos + 3 + n].decode("utf-8", "replace")
            pos += 4 + n
        elif t in (0x03, 0x04):
            pos += struct.unpack_from("<i", data, pos)[0]
        elif t == 0x05:
            pos += 5 + struct.unpack_from("<i", data, pos)[0]
        elif t == 0x07:
            pos += 12
        elif t == 0x08:
            out[key] = bool(data[pos])
            pos += 1
        elif t in (0x09, 0x11, 0x12):
            out[key] = struct.unpack_from("<q", data, pos)[0]
            pos += 8
        elif t in (0x0A, 0xFF, 0x7F):
            out[key] = None
        elif t == 0x10:
            out[key] = struct.unpack_from("<i", data, pos)[0]
            pos += 4
        elif t == 0x13:
            pos += 16
        else:
            break  # a type we do not need; stop decoding
    return out


def mongo_command(sock, request_id, pairs):
    body = struct.pack("<i", 0) + b"\x00" + bson_doc(pairs)
    sock.sendall(struct.pack("<iiii", 16 + len(body), request_id, 0, 2013) + body)
    length, _rid, _to, opcode = struct.unpack("<iiii", recv_exact(sock, 16))
    payload = recv_exact(sock, length - 16)
    if opcode != 2013 or payload[4] != 0:
        raise ProbeError(f"unexpected reply opcode {opcode}")
    doc = bson_top_level(payload[5:])
    if doc.get("ok") != 1:
        raise ProbeError(f"command failed: {doc.get('errmsg', doc)}")
    return doc


def probe_mongo(host, port):
    with connect(host, port) as s:
        hello = mongo_command(s, 1, [("hello", 1), ("$db", "admin")])
        if not hello.get("isWritablePrimary", hello.get("ismaster")):
            raise ProbeError("hello: not a writable primary yet")
        mongo_command(s, 2, [("ping", 1), ("$db", "admin")])
        info = mongo_command(s, 3, [("buildInfo", 1), ("$db", "admin")])
        return (f"mongo ready: ping ok, writable primary, version {info.get('version', '?')}, "
                f"maxWireVersion {hello.get('maxWireVersion', '?')}")


# ---------------------------------------------------------------- memcached


def probe_memcached(host, port):
    with connect(host, port) as s:
        s.sendall(b"version\r\n")
        line = b""
        while not line.endswith(b"\r\n"):
            chunk = s.recv(256)
            if not chunk:
                break
            line += chunk
        text = line.decode(errors="replace").strip()
        if not text.startswith("VERSION "):
            raise ProbeError(f"unexpected answer {text!r}")
        return f"memcached ready: {text}"


# ---------------------------------------------------------------- config generators


def kafka_cluster_id():
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def set_text(root, tag, text):
    el = root.find(tag)
    if el is None:
        el = ET.SubElement(root, tag)
    el.text = str(text)
    return el


def clickhouse_config(src, dst, home, http_port, tcp_port):
    tree = ET.parse(os.path.join(src, "config.xml"))
    root = tree.getroot()
    logger = root.find("logger")
    if logger is None:
        logger = ET.SubElement(root, "logger")
    set_text(logger, "level", "information")
    set_text(logger, "log", f"{home}/log/clickhouse-server.log")
    set_text(logger, "errorlog", f"{home}/log/clickhouse-server.err.log")
    set_text(logger, "size", "100M")
    set_text(logger, "count", "2")
    # Loopback only, our ports; no TLS ports, no interserver (replication) port.
    for tag in ("listen_host", "https_port", "tcp_port_secure", "interserver_http_port",
                "interserver_http_host", "mysql_port", "remote_servers", "graphite"):
        for el in root.findall(tag):
            root.remove(el)
    listen = ET.SubElement(root, "listen_host")
    listen.text = "127.0.0.1"
    set_text(root, "http_port", http_port)
    set_text(root, "tcp_port", tcp_port)
    set_text(root, "path", f"{home}/data/")
    set_text(root, "tmp_path", f"{home}/data/tmp/")
    set_text(root, "user_files_path", f"{home}/data/user_files/")
    set_text(root, "format_schema_path", f"{home}/data/format_schemas/")
    set_text(root, "users_config", f"{dst}/users.xml")
    set_text(root, "timezone", "UTC")
    set_text(root, "mark_cache_size", 268435456)
    set_text(root, "uncompressed_cache_size", 268435456)
    os.makedirs(dst, exist_ok=True)
    tree.write(os.path.join(dst, "config.xml"), encoding="utf-8", xml_declaration=True)
    users = ET.parse(os.path.join(src, "users.xml"))
    users.write(os.path.join(dst, "users.xml"), encoding="utf-8", xml_declaration=True)


PROBES = {"kafka": probe_kafka, "cql": probe_cql, "mongo": probe_mongo,
          "memcached": probe_memcached}


def main(argv):
    if len(argv) >= 2 and argv[1] in PROBES and len(argv) == 4:
        try:
            print(PROBES[argv[1]](argv[2], argv[3]))
            return 0
        except (ProbeError, OSError, ValueError, struct.error) as e:
            print(f"{argv[1]} not ready: {e}", file=sys.stderr)
            return 1
    if argv[1:] == ["kafka-cluster-id"]:
        print(kafka_cluster_id())
        return 0
    if len(argv) == 7 and argv[1] == "clickhouse-config":
        clickhouse_config(*argv[2:])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
