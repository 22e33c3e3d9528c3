#!/usr/bin/env python3
"""Two slixmpp clients (an independent, third-party XMPP library) log in to a Starling
server over STARTTLS with SCRAM, query disco#info and ping the server, and exchange
messages. Exit status 0 when every step succeeded.

usage: slix_chat.py HOST PORT DOMAIN [--timeout S]   (accounts alice / bob, password pw)
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

steps = []


def step(name):
    print("ok:", name, flush=True)
    steps.append(name)


class Client(slixmpp.ClientXMPP):
    def __init__(self, user, on_start):
        super().__init__(f"{user}@{args.domain}/slix", "pw")
        # The test server's certificate is self-signed.
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.enable_direct_tls = False
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0199")
        self.add_event_handler("session_start", on_start)
        self.add_event_handler("failed_auth", lambda *_: print("auth failed", flush=True))


async def main():
    loop = asyncio.get_running_loop()
    bob_ready = loop.create_future()
    reply_seen = loop.create_future()

    async def bob_start(_):
        bob.send_presence()
        step("bob logged in")
        bob_ready.set_result(True)

    def bob_message(msg):
        if msg["type"] == "chat" and msg["body"] == "hello bob":
            step("bob got alice's message from " + str(msg["from"]))
            msg.reply("hello alice").send()

    async def alice_start(_):
        alice.send_presence()
        step("alice logged in as " + alice.boundjid.full)
        info = await alice.plugin["xep_0030"].get_info(jid=args.domain)
        features = info["disco_info"]["features"]
        assert "urn:xmpp:ping" in features, features
        step("disco#info lists ping")
        await alice.plugin["xep_0199"].ping(jid=args.domain, timeout=10)
        step("server answered ping")
        await bob_ready
        alice.send_message(mto=f"bob@{args.domain}/slix", mbody="hello bob", mtype="chat")

    def alice_message(msg):
        if msg["type"] == "chat" and msg["body"] == "hello alice":
            step("alice got bob's reply")
            reply_seen.set_result(True)

    bob = Client("bob", bob_start)
    bob.add_event_handler("message", bob_message)
    alice = Client("alice", alice_start)
    alice.add_event_handler("message", alice_message)
    bob.connect(args.host, args.port)
    alice.connect(args.host, args.port)
    try:
        await asyncio.wait_for(reply_seen, args.timeout)
    except asyncio.TimeoutError:
        print("timeout after steps:", steps, flush=True)
        return 1
    finally:
        alice.disconnect()
        bob.disconnect()
    return 0


sys.exit(asyncio.run(main()))
