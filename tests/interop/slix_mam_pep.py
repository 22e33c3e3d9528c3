#!/usr/bin/env python3
"""slixmpp (a third-party XMPP library) as Conversations-style clients would use a
Starling server: MAM paging through an archive with XEP-0059 in both directions
(XEP-0313), and OMEMO-style publishing (XEP-0384 devicelist with publish-options
access_model=open, XEP-0223) delivered to a contact whose caps carry +notify
(XEP-0115, XEP-0163), plus precondition-not-met. Exit status 0 when every step passed.

usage: slix_mam_pep.py HOST PORT DOMAIN [--timeout S]   (accounts alice / bob, password pw)
"""
import argparse
import asyncio
import ssl
import sys
import xml.etree.ElementTree as ET

import slixmpp
from slixmpp.exceptions import IqError

parser = argparse.ArgumentParser()
parser.add_argument("host")
parser.add_argument("port", type=int)
parser.add_argument("domain")
parser.add_argument("--timeout", type=float, default=60)
args = parser.parse_args()

DEVICELIST = "eu.siacs.conversations.axolotl.devicelist"
COUNT = 120
steps = []


def step(name):
    print("ok:", name, flush=True)
    steps.append(name)


class Client(slixmpp.ClientXMPP):
    def __init__(self, user):
        super().__init__(f"{user}@{args.domain}/slix", "pw")
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.enable_direct_tls = False
        for plugin in ["xep_0030", "xep_0004", "xep_0059", "xep_0060", "xep_0115", "xep_0163", "xep_0313"]:
            self.register_plugin(plugin)
        self.ready = asyncio.get_event_loop().create_future()
        self.add_event_handler("session_start", self.started)

    async def started(self, _):
        self.send_presence()
        self.ready.set_result(True)


def publish_options(access_model):
    form = alice.plugin["xep_0004"].make_form(ftype="submit")
    form.add_field(var="FORM_TYPE", ftype="hidden", value="http://jabber.org/protocol/pubsub#publish-options")
    form.add_field(var="pubsub#access_model", value=access_model)
    return form


def devicelist(ids):
    element = ET.Element("{eu.siacs.conversations.axolotl}list")
    for device in ids:
        ET.SubElement(element, "{eu.siacs.conversations.axolotl}device", id=str(device))
    return element


async def scenario():
    await asyncio.gather(alice.ready, bob.ready)
    step("both logged in")
    bob_jid = f"bob@{args.domain}"
    for i in range(COUNT):
        alice.send_message(mto=bob_jid, mbody=f"msg {i:03}", mtype="chat")
    expected = [f"msg {i:03}" for i in range(COUNT)]

    forward = [m["mam_result"]["forwarded"]["stanza"]["body"]
               async for m in alice.plugin["xep_0313"].iterate(with_jid=slixmpp.JID(bob_jid), rsm={"max": 25})]
    assert forward == expected, forward[:5]
    step(f"MAM forward paging returned all {COUNT} messages in order")
    backward = [m["mam_result"]["forwarded"]["stanza"]["body"]
                async for m in alice.plugin["xep_0313"].iterate(with_jid=slixmpp.JID(bob_jid), rsm={"max": 25}, reverse=True)]
    assert backward == list(reversed(expected)), backward[:5]
    step("MAM backward paging returned them newest first")
    bob_copies = [m["mam_result"]["forwarded"]["stanza"]["body"]
                  async for m in bob.plugin["xep_0313"].iterate(rsm={"max": 40})]
    assert bob_copies == expected
    step("the recipient's archive has its copies")

    got = asyncio.get_running_loop().create_future()

    def on_event(msg):
        if msg["pubsub_event"]["items"]["node"] == DEVICELIST and not got.done():
            got.set_result(msg)

    bob.add_event_handler("pubsub_publish", on_event)
    bob.plugin["xep_0163"].add_interest(DEVICELIST)
    await bob.plugin["xep_0115"].update_caps()
    bob.send_presence(pto=f"alice@{args.domain}")
    # A round trip so that the directed presence has arrived before alice publishes.
    await bob.plugin["xep_0030"].get_info(jid=args.domain)

    result = await alice.plugin["xep_0060"].publish(
        slixmpp.JID(f"alice@{args.domain}"), DEVICELIST, id="current",
        payload=devicelist([31337]), options=publish_options("open"))
    assert result["pubsub"]["publish"]["item"]["id"] == "current"
    step("alice published her devicelist with access_model=open")
    event = await asyncio.wait_for(got, 20)
    assert event["from"] == slixmpp.JID(f"alice@{args.domain}")
    step("bob (+notify) received the devicelist")

    try:
        await alice.plugin["xep_0060"].publish(
            slixmpp.JID(f"alice@{args.domain}"), DEVICELIST, id="current",
            payload=devicelist([1]), options=publish_options("presence"))
        raise AssertionError("a mismatching publish-options was accepted")
    except IqError as error:
        assert error.condition == "conflict", error.condition
        step("mismatching publish-options: precondition-not-met")
    items = await bob.plugin["xep_0060"].get_items(slixmpp.JID(f"alice@{args.domain}"), DEVICELIST)
    assert [i["id"] for i in items["pubsub"]["items"]] == ["current"]
    step("bob fetched the devicelist")


async def main():
    global alice, bob
    alice, bob = Client("alice"), Client("bob")
    alice.connect(args.host, args.port)
    bob.connect(args.host, args.port)
    try:
        await asyncio.wait_for(scenario(), args.timeout)
    except (asyncio.TimeoutError, AssertionError, IqError) as error:
        print("failed:", repr(error), "after steps:", steps, flush=True)
        return 1
    finally:
        alice.disconnect()
        bob.disconnect()
    return 0


alice = bob = None
sys.exit(asyncio.run(main()))
