"""An XEP-0357 app server as an slixmpp external component (XEP-0114), for tests/push.rs:
answers every pubsub publish with a result and prints one line per notification,
"ok: push from=<jid> node=<node> count=<message-count> body=<last-message-body>",
after "ok: component connected". Exits after --notifications notifications."""

import argparse
import asyncio
import sys

from slixmpp.componentxmpp import ComponentXMPP
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

PUBSUB = "http://jabber.org/protocol/pubsub"
PUSH = "urn:xmpp:push:0"
DATA = "jabber:x:data"


def summary(publish):
    """The urn:xmpp:push:summary fields of a <publish/>, as a dict."""
    fields = {}
    form = publish.find(f"{{{PUBSUB}}}item/{{{PUSH}}}notification/{{{DATA}}}x")
    if form is not None:
        for field in form.findall(f"{{{DATA}}}field"):
            value = field.find(f"{{{DATA}}}value")
            fields[field.get("var")] = value.text if value is not None else ""
    return fields


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("domain")
    parser.add_argument("secret")
    parser.add_argument("--notifications", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args()

    component = ComponentXMPP(args.domain, args.secret, args.host, args.port)
    done = asyncio.get_event_loop().create_future()
    seen = []

    def publish(iq):
        if iq["type"] != "set":
            return
        element = iq.xml.find(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}publish")
        if element is None:
            iq.reply().error().set_payload([]).send()
            return
        fields = summary(element)
        if fields.get("FORM_TYPE") != "urn:xmpp:push:summary":
            print(f"bad form: {fields}", flush=True)
        print(
            f"ok: push from={iq['from']} node={element.get('node')} "
            f"count={fields.get('message-count')} body={fields.get('last-message-body')}",
            flush=True,
        )
        iq.reply().send()
        seen.append(fields)
        if len(seen) >= args.notifications and not done.done():
            done.set_result(True)

    component.register_handler(
        Callback("push publish", MatchXPath(f"{{jabber:component:accept}}iq/{{{PUBSUB}}}pubsub"), publish)
    )
    component.add_event_handler("session_start", lambda _: print("ok: component connected", flush=True))
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
