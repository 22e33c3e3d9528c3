"""An slixmpp external component (XEP-0114) for tests/external_component.rs: connects with the
shared secret, then echoes every message it receives back to the sender and answers
disco#info with its own identity. Prints "ok: ..." lines the test waits for."""

import argparse
import asyncio
import sys

from slixmpp.componentxmpp import ComponentXMPP


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("domain")
    parser.add_argument("secret")
    parser.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args()

    component = ComponentXMPP(args.domain, args.secret, args.host, args.port)
    component.register_plugin("xep_0030")
    component.plugin["xep_0030"].add_identity(category="gateway", itype="test", name="slix echo")
    done = asyncio.get_event_loop().create_future()

    def connected(_):
        print("ok: component connected", flush=True)

    def message(msg):
        if msg["type"] in ("chat", "normal") and msg["body"]:
            print(f"ok: got {msg['body']!r} from {msg['from']}", flush=True)
            msg.reply(f"echo: {msg['body']}").send()
            if msg["body"] == "bye" and not done.done():
                done.set_result(True)

    component.add_event_handler("session_start", connected)
    component.add_event_handler("message", message)
    component.connect()
    loop = asyncio.get_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(done, args.timeout))
    except asyncio.TimeoutError:
        print("timeout", flush=True)
        return 1
    loop.run_until_complete(asyncio.wait_for(component.disconnect(), 5))
    return 0


sys.exit(main())
