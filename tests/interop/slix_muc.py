#!/usr/bin/env python3
"""Two slixmpp clients use a Starling room with slixmpp's XEP-0045 plugin: alice creates
and configures it, bob joins, they exchange groupchat messages, alice kicks bob and bob
sees status 307. Exit status 0 when every step succeeded.

usage: slix_muc.py HOST PORT DOMAIN [--timeout S]   (accounts alice / bob, password pw)
"""
import argparse
import asyncio
import ssl
import sys

import slixmpp

parser = argparse.ArgumentParser()
parser.add_argument("host")
parser.add_argument("port", type=int)
parser.add_argument("domain")
parser.add_argument("--timeout", type=float, default=30)
args = parser.parse_args()

ROOM = f"slix@conference.{args.domain}"
steps = []


def step(name):
    print("ok:", name, flush=True)
    steps.append(name)


class Client(slixmpp.ClientXMPP):
    def __init__(self, user):
        super().__init__(f"{user}@{args.domain}/slix", "pw")
        # The test server's certificate is self-signed.
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.enable_direct_tls = False
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0045")
        self.started = asyncio.get_event_loop().create_future()
        self.add_event_handler("session_start", lambda _: self.started.set_result(True))


async def scenario(alice, bob):
    loop = asyncio.get_running_loop()
    await alice.started
    await bob.started
    alice.send_presence()
    bob.send_presence()
    muc_a, muc_b = alice.plugin["xep_0045"], bob.plugin["xep_0045"]

    info = await alice.plugin["xep_0030"].get_info(jid=f"conference.{args.domain}")
    identities = [(c, t) for (c, t, _lang, _name) in info["disco_info"]["identities"]]
    assert ("conference", "text") in identities, identities
    step("the service is a conference/text")

    own, _subject, _occupants, _history = await muc_a.join_muc_wait(ROOM, "Alice", timeout=10)
    assert 201 in own["muc"]["status_codes"], own
    step("alice created the room")
    form = await muc_a.get_room_config(ROOM, timeout=10)
    form.set_values({"muc#roomconfig_roomname": "Slix room"})
    await muc_a.set_room_config(ROOM, form, timeout=10)
    step("alice configured the room")

    own, _subject, occupants, _history = await muc_b.join_muc_wait(ROOM, "Bob", timeout=10)
    assert own["muc"]["role"] == "participant", own
    assert any(p["muc"]["nick"] == "Alice" for p in occupants), occupants
    step("bob joined and saw alice")

    got_hello = loop.create_future()
    got_reply = loop.create_future()

    def bob_message(msg):
        if msg["body"] == "hello room" and not got_hello.done():
            got_hello.set_result(msg)

    def alice_message(msg):
        if msg["body"] == "hello alice" and not got_reply.done():
            got_reply.set_result(msg)

    bob.add_event_handler(f"muc::{ROOM}::message", bob_message)
    alice.add_event_handler(f"muc::{ROOM}::message", alice_message)
    alice.send_message(mto=ROOM, mbody="hello room", mtype="groupchat")
    msg = await asyncio.wait_for(got_hello, args.timeout)
    assert msg["from"].resource == "Alice", msg
    step("bob got alice's groupchat message")
    bob.send_message(mto=ROOM, mbody="hello alice", mtype="groupchat")
    msg = await asyncio.wait_for(got_reply, args.timeout)
    assert msg["from"].resource == "Bob", msg
    step("alice got bob's groupchat message")

    kicked = loop.create_future()

    def bob_presence(pres):
        if pres["type"] == "unavailable" and not kicked.done():
            kicked.set_result(pres)

    bob.add_event_handler(f"muc::{ROOM}::presence", bob_presence)
    await muc_a.set_role(ROOM, "Bob", "none", reason="testing", timeout=10)
    pres = await asyncio.wait_for(kicked, args.timeout)
    codes = pres["muc"]["status_codes"]
    assert 307 in codes and 110 in codes, codes
    step("bob was kicked with 307")


async def main():
    alice = Client("alice")
    bob = Client("bob")
    alice.connect(args.host, args.port)
    bob.connect(args.host, args.port)
    try:
        await asyncio.wait_for(scenario(alice, bob), args.timeout)
    except Exception as e:  # noqa: BLE001 - any failure ends the scenario with its steps
        print("failed after steps:", steps, "error:", repr(e), flush=True)
        return 1
    finally:
        alice.disconnect()
        bob.disconnect()
    return 0


sys.exit(asyncio.run(main()))
