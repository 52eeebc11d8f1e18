#!/usr/bin/env python3
"""Drives the verification page the way a person does, through the Chrome DevTools Protocol of a
headless Chromium: the signature file dropped on its zone (Input.dispatchDragEvent), the document
chosen with the file input (DOM.setFileInputFiles), then prints the page's verdict and reason.
Standard library only (a minimal WebSocket client).
usage: verify_page_cdp.py CHROMIUM PAGE_URL SIG_FILE DOC_FILE PROFILE_DIR"""
import base64, json, os, socket, struct, subprocess, sys, time, urllib.request

chrome, url, sig, doc, prof = sys.argv[1:6]
proc = subprocess.Popen([chrome, "--headless", "--disable-gpu", "--no-sandbox", "--disable-dev-shm-usage", "--no-first-run",
                         "--user-data-dir=" + prof, "--remote-debugging-port=0", "about:blank"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    port_file = os.path.join(prof, "DevToolsActivePort")
    for _ in range(100):  # at most 10 s for the browser to start
        if os.path.exists(port_file) and open(port_file).read().count("\n") >= 1:
            break
        time.sleep(0.1)
    port = int(open(port_file).read().split("\n")[0])
    targets = json.load(urllib.request.urlopen("http://127.0.0.1:%d/json" % port, timeout=10))
    ws_url = [t for t in targets if t["type"] == "page"][0]["webSocketDebuggerUrl"]
    path = ws_url.split(str(port), 1)[1]
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path, port, key)).encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    buf = buf.split(b"\r\n\r\n", 1)[1]

    def recv_exact(n):
        global buf
        while len(buf) < n:
            chunk = s.recv(65536)
            if not chunk:
                raise EOFError("devtools connection closed")
            buf += chunk
        out, buf = buf[:n], buf[n:]
        return out

    def recv_msg():
        data = b""
        while True:
            h = recv_exact(2)
            n = h[1] & 0x7F
            if n == 126: n = struct.unpack(">H", recv_exact(2))[0]
            elif n == 127: n = struct.unpack(">Q", recv_exact(8))[0]
            data += recv_exact(n)
            if h[0] & 0x80:
                return data

    ids = [0]
    def call(method, **params):
        ids[0] += 1
        p = json.dumps({"id": ids[0], "method": method, "params": params}).encode()
        mask = os.urandom(4)
        hdr = bytes([0x81]) + (bytes([0x80 | len(p)]) if len(p) < 126 else bytes([0x80 | 126]) + struct.pack(">H", len(p)))
        s.sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(p)))
        while True:
            m = json.loads(recv_msg())
            if m.get("id") == ids[0]:
                if "error" in m:
                    raise RuntimeError("%s: %s" % (method, m["error"]))
                return m.get("result", {})

    def js(expr):
        return call("Runtime.evaluate", expression=expr, returnByValue=True)["result"].get("value")

    call("Page.enable")
    call("Page.navigate", url=url)
    for _ in range(100):
        if js("document.readyState === 'complete' && !!window.KSI"):
            break
        time.sleep(0.1)
    # The signature dropped on its zone.
    box = js("(() => { const r = document.getElementById('sig-drop').getBoundingClientRect();"
             " return [r.x + r.width / 2, r.y + r.height / 2]; })()")
    data = {"items": [], "files": [os.path.abspath(sig)], "dragOperationsMask": 1}
    for kind in ("dragEnter", "dragOver", "drop"):
        call("Input.dispatchDragEvent", type=kind, x=box[0], y=box[1], data=data)
    # The document chosen with the file input.
    root = call("DOM.getDocument")["root"]["nodeId"]
    node = call("DOM.querySelector", nodeId=root, selector="#doc-file")["nodeId"]
    call("DOM.setFileInputFiles", files=[os.path.abspath(doc)], nodeId=node)
    want = os.path.basename(doc)
    for _ in range(100):  # at most 10 s for the verdict
        got = js("[document.getElementById('sig-name').textContent, document.getElementById('result').dataset.doc || '',"
                 " document.getElementById('verdict').textContent, document.getElementById('reason').textContent]")
        if got and got[1] == want and got[2]:
            break
        time.sleep(0.1)
    print("signature: %s\nverdict covers: %s\nverdict: %s\nreason: %s" % tuple(got))
finally:
    proc.kill()
    proc.wait()
