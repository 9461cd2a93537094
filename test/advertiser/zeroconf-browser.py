# Test-only: an independent DNS-SD browser (python-zeroconf, Debian's python3-zeroconf) that reports
# what it sees as JSON lines on stdout. Run by test/advertiser/zeroconf.ts inside a netns host of the
# test LAN (test/helpers/netlan.ts), bound to that host's address; never on the machine's interfaces.
#   usage: zeroconf-browser.py <interface address> <service type, e.g. _muster._tcp.local.>
import json
import signal
import sys
import threading

from zeroconf import IPVersion, ServiceBrowser, ServiceStateChange, Zeroconf

address, service_type = sys.argv[1], sys.argv[2]
zc = Zeroconf(interfaces=[address], ip_version=IPVersion.V4Only)
lock = threading.Lock()
EVENTS = {
    ServiceStateChange.Added: "added",
    ServiceStateChange.Updated: "updated",
    ServiceStateChange.Removed: "removed",
}


def emit(**fields):
    with lock:
        sys.stdout.write(json.dumps(fields) + "\n")
        sys.stdout.flush()


def text(b):
    return None if b is None else b.decode("utf-8", "replace")


def on_change(zeroconf, service_type, name, state_change):
    txt, addresses, port = {}, [], None
    if state_change is not ServiceStateChange.Removed:
        info = zeroconf.get_service_info(service_type, name, timeout=3000)
        if info is not None:
            txt = {text(k): text(v) for k, v in info.properties.items()}
            addresses = info.parsed_addresses()
            port = info.port
    emit(ev=EVENTS[state_change], name=name, txt=txt, addresses=addresses, port=port)


def stop(*_):
    zc.close()
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
ServiceBrowser(zc, service_type, handlers=[on_change])
emit(ev="ready")
signal.pause()
