#!/usr/bin/env python3
"""Stream management (XEP-0198) with slixmpp, an independent third-party library: alice
enables resumable stream management, her TCP connection is cut, bob sends her a message
while she is away, and alice reconnects, resumes the stream and receives it (once).
Exit status 0 when every step succeeded.

usage: slix_sm.py HOST PORT DOMAIN [--timeout S]   (accounts alice / bob, password pw)
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
    def __init__(self, user):
        super().__init__(f"{user}@{args.domain}/slix", "pw")
        # The test server's certificate is self-signed.
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.enable_direct_tls = False
        self.register_plugin("xep_0199")


async def main():
    loop = asyncio.get_running_loop()
    bob_ready = loop.create_future()
    sm_enabled = loop.create_future()
    cut = loop.create_future()
    resumed = loop.create_future()
    received = []
    done = loop.create_future()

    bob = Client("bob")
    alice = Client("alice")
    alice.register_plugin("xep_0198")

    async def bob_start(_):
        bob.send_presence()
        step("bob logged in")
        bob_ready.set_result(True)

    async def alice_start(_):
        alice.send_presence()
        step("alice logged in as " + alice.boundjid.full)

    def alice_sm_enabled(stanza):
        assert stanza["id"], "a resumption id"
        step("alice enabled resumable stream management")
        sm_enabled.set_result(True)

    def alice_disconnected(_):
        if not cut.done():
            cut.set_result(True)

    def alice_resumed(stanza):
        step("alice resumed the stream")
        resumed.set_result(True)

    def alice_message(msg):
        if msg["type"] == "chat" and msg["from"].bare == f"bob@{args.domain}":
            received.append(msg["body"])
            if msg["body"] == "after resume":
                done.set_result(True)

    bob.add_event_handler("session_start", bob_start)
    alice.add_event_handler("session_start", alice_start)
    alice.add_event_handler("sm_enabled", alice_sm_enabled)
    alice.add_event_handler("disconnected", alice_disconnected)
    alice.add_event_handler("session_resumed", alice_resumed)
    alice.add_event_handler("message", alice_message)

    async def scenario():
        bob.connect(args.host, args.port)
        alice.connect(args.host, args.port)
        await bob_ready
        await sm_enabled
        # The TCP connection dies without a stream close, as when a phone loses its network.
        alice.abort()
        await cut
        step("alice's connection was cut")
        bob.send_message(mto=f"{alice.boundjid.full}", mbody="while away", mtype="chat")
        # The ping's answer shows the server has handled the message.
        await bob.plugin["xep_0199"].ping(jid=args.domain, timeout=10)
        step("bob sent a message meanwhile")
        alice.connect(args.host, args.port)
        await resumed
        bob.send_message(mto=f"{alice.boundjid.full}", mbody="after resume", mtype="chat")
        await done
        # Anything sent twice would have arrived before the later message.
        assert received == ["while away", "after resume"], received
        step("alice got the message sent while she was away, once")

    try:
        await asyncio.wait_for(scenario(), args.timeout)
    except asyncio.TimeoutError:
        print("timeout after steps:", steps, "received:", received, flush=True)
        return 1
    finally:
        alice.disconnect()
        bob.disconnect()
    return 0


sys.exit(asyncio.run(main()))
