"""ClickHouse's HTTP interface, as much of it as clickhouse-go v2 uses, over chDB.

chDB (PyPI) embeds a current ClickHouse engine in-process and opens no port.
This server lets the project's unchanged Go code (clickhouse-go with
Protocol HTTP, warehouse.Config.Protocol = "http") send its statements to
that engine, so that `make test` can run every statement the project sends
on a current release beside the local 18.16 server (docs/clickhouse.md).

    python bridge.py --port 18124 --data DIR

What it implements:
  GET /, GET /ping              "Ok." (ClickHouse's health answer)
  POST / (or GET /?query=)      the statement in the body, or in the query
                                parameter followed by the body, as ClickHouse
                                does; the answer in default_format (clickhouse-go
                                asks for Native); errors as HTTP 500 with
                                "Code: N. DB::Exception: ..." and the
                                X-ClickHouse-Exception-Code header
  POST /?query=INSERT ... FORMAT F  with the data in the body: the data is
                                written to a file and inserted with
                                INSERT ... SELECT * FROM file(path, F)
  GET /bridge/log?from=N        the statements run so far (JSON), for the
                                check's coverage figures
  POST /bridge/fail-after?prefix=P  the next statement starting with P is
                                executed and then answered with an error, as
                                a timeout that hid a success would be (tests
                                the projector's retry)

One difference from a server, on purpose and only here: chDB writes the
Native format at protocol revision 0 (in-process, there is no client
revision), so the answer to clickhouse-go's connection query
`SELECT displayName(), version(), revision(), timezone()` reports revision
0 and the driver reads the blocks accordingly. Statements run one at a
time on one chDB session (the engine's data directory is --data).
"""

import argparse
import http.server
import json
import os
import re
import signal
import sys
import tempfile
import threading
import time
import urllib.parse

from chdb import session as chdb_session

# clickhouse-go's connection query; answered with revision 0 (see above).
HELLO = "SELECT displayName(), version(), revision(), timezone()"

# URL parameters clickhouse-go sends that are not settings, and
# max_execution_time, which it derives from a context's deadline: the Go
# side enforces that deadline itself, so it is not applied here.
CLIENT_PARAMS = {"query", "database", "default_format", "client_protocol_version", "query_id", "quota_key", "max_execution_time"}

INSERT_DATA = re.compile(r"^\s*(INSERT\s+INTO\s+.*?)\s+FORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE | re.DOTALL)
# How many statements /bridge/log keeps (a check of the whole project sends a few thousand).
LOG_KEEP = 200000

ERROR_CODE = re.compile(r"Code:\s*(\d+)\.")


class Engine:
    """One chDB session; statements run one at a time, and are logged."""

    def __init__(self, data_dir):
        os.makedirs(data_dir, exist_ok=True)
        self.tmp = os.path.join(data_dir, "bridge-tmp")
        os.makedirs(self.tmp, exist_ok=True)
        self.sess = chdb_session.Session(data_dir)
        self.lock = threading.Lock()
        self.database = "default"
        self.log = []  # the last LOG_KEEP statements; self.base is the index of log[0]
        self.base = 0
        self.fail_after = []  # statement prefixes to answer with an error once

    def run(self, sql, fmt, database, data=None):
        """Runs one statement and returns its answer's bytes; raises on error."""
        with self.lock:
            started = time.monotonic()
            entry = {"i": self.base + len(self.log), "sql": sql, "ok": True}
            self.log.append(entry)
            if len(self.log) > LOG_KEEP:
                self.base += len(self.log) - LOG_KEEP
                del self.log[:-LOG_KEEP]
            try:
                if database and database != self.database:
                    self.sess.query("USE " + quote_ident(database))
                    self.database = database
                if sql.strip() == HELLO and fmt == "Native":
                    out = self._hello()
                elif data is not None:
                    out = self._insert(sql, data)
                else:
                    res = self.sess.query(sql, fmt)
                    out = bytes(res.bytes()) if res is not None else b""
                for p in self.fail_after:
                    if sql.lstrip().startswith(p):
                        self.fail_after.remove(p)
                        raise RuntimeError("Code: 209. DB::Exception: injected by the bridge after the statement ran (fail-after). (SOCKET_TIMEOUT)")
                return out
            except Exception as e:  # chDB raises RuntimeError with ClickHouse's text
                entry["ok"] = False
                entry["error"] = str(e)
                raise
            finally:
                entry["ms"] = round((time.monotonic() - started) * 1000, 3)

    def _hello(self):
        """Answers HELLO with revision 0, encoded as the driver reads its
        answer: Native at the client's revision (block info, and a custom
        serialization flag per column)."""
        name, version, tz = str(self.sess.query("SELECT displayName(), version(), timezone()", "TSV")).strip("\n").split("\t")
        out = bytearray(b"\x01\x00\x02\xff\xff\xff\xff\x00")  # block info: not overflows, bucket -1
        out += b"\x04\x01"  # 4 columns, 1 row
        for col, typ, value in (("displayName()", "String", name), ("version()", "String", version),
                                ("revision()", "UInt32", 0), ("timezone()", "String", tz)):
            for text in (col, typ):
                out += varint(len(text.encode())) + text.encode()
            out += b"\x00"  # no custom serialization
            if typ == "UInt32":
                out += value.to_bytes(4, "little")
            else:
                out += varint(len(value.encode())) + value.encode()
        return bytes(out)

    def _insert(self, sql, data):
        m = INSERT_DATA.match(sql)
        if not m:
            raise RuntimeError("Code: 62. DB::Exception: bridge: an insert with data must end in FORMAT <name>. (SYNTAX_ERROR)")
        fd, path = tempfile.mkstemp(dir=self.tmp, suffix=".data")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            stmt = "%s SELECT * FROM file(%s, %s)" % (m.group(1), quote_str(path), quote_str(m.group(2)))
            self.sess.query(stmt)
        finally:
            os.unlink(path)
        return b""


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def quote_str(s):
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_ident(s):
    return "`" + s.replace("\\", "\\\\").replace("`", "\\`") + "`"


def error_code(msg):
    m = ERROR_CODE.search(msg)
    return m.group(1) if m else "1001"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clickhouse-go expects
    engine = None

    def log_message(self, fmt, *args):  # requests are in /bridge/log, not stderr
        pass

    def reply(self, status, body, ctype="text/plain; charset=UTF-8", headers=None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        params = urllib.parse.parse_qs(url.query)
        if url.path in ("/", "/ping") and "query" not in params:
            return self.reply(200, b"Ok.\n")
        if url.path == "/bridge/log":
            start = int(params.get("from", ["0"])[0])
            with self.engine.lock:
                e = self.engine
                stmts = e.log[max(start - e.base, 0):]
                body = json.dumps({"next": e.base + len(e.log), "statements": stmts}).encode()
            return self.reply(200, body, "application/json")
        if url.path == "/":
            return self.statement(params, b"")
        return self.reply(404, b"Code: 1001. DB::Exception: bridge: no such path\n")

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        params = urllib.parse.parse_qs(url.query)
        n = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self.read_chunked()
        else:
            body = self.rfile.read(n) if n else b""
        if url.path == "/bridge/fail-after":
            with self.engine.lock:
                self.engine.fail_after.append(params["prefix"][0])
            return self.reply(200, b"Ok.\n")
        if url.path != "/":
            return self.reply(404, b"Code: 1001. DB::Exception: bridge: no such path\n")
        return self.statement(params, body)

    def read_chunked(self):
        out = bytearray()
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                self.rfile.readline()
                return bytes(out)
            out += self.rfile.read(size)
            self.rfile.readline()

    def statement(self, params, body):
        get = lambda k, d="": params.get(k, [d])[0]
        unknown = [k for k in params if k not in CLIENT_PARAMS and not k.startswith("param_")]
        if unknown or any(k.startswith("param_") for k in params) or self.headers.get("Content-Encoding"):
            msg = "Code: 115. DB::Exception: bridge: settings, server-side parameters and compression are not supported: %s. (UNKNOWN_SETTING)\n" % ", ".join(sorted(params))
            return self.reply(500, msg.encode(), headers={"X-ClickHouse-Exception-Code": "115"})
        sql, data = get("query"), None
        if sql and body and INSERT_DATA.match(sql):
            data = body
        else:
            sql = (sql + "\n" if sql else "") + body.decode("utf-8")
        fmt = get("default_format", "TabSeparated")
        try:
            out = self.engine.run(sql, fmt, get("database"), data)
        except Exception as e:
            msg = str(e).strip()
            code = error_code(msg)
            if not msg.startswith("Code:"):
                msg = "Code: %s. DB::Exception: %s" % (code, msg)
            return self.reply(500, (msg + "\n").encode(), headers={"X-ClickHouse-Exception-Code": code})
        ctype = "application/octet-stream" if fmt == "Native" else "text/plain; charset=UTF-8"
        return self.reply(200, out, ctype, {"X-ClickHouse-Format": fmt})


def stop(*_):
    raise KeyboardInterrupt  # serve_forever returns, the session closes


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=18124)
    ap.add_argument("--data", required=True, help="chDB data directory")
    args = ap.parse_args()
    Handler.engine = Engine(args.data)
    ver = Handler.engine.sess.query("SELECT version()", "TSV")
    srv = http.server.ThreadingHTTPServer((args.host, args.port), Handler)
    srv.daemon_threads = True
    signal.signal(signal.SIGTERM, stop)
    print("chdb bridge: ClickHouse %s (chDB) on http://%s:%d, data in %s" % (str(ver).strip(), args.host, args.port, args.data), flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        Handler.engine.sess.close()


if __name__ == "__main__":
    sys.exit(main())
