#!/usr/bin/env python3
"""slixmpp (an independent, third-party XMPP library) registers an account in-band
(XEP-0077) and logs in with it; an administrator then lists the ad-hoc commands
(XEP-0050), adds a user, counts the registered users and deletes the in-band account
with the XEP-0133 commands, and the added user logs in. Exit status 0 when every step
succeeded.

usage: slix_admin.py HOST PORT DOMAIN [--timeout S]   (account admin, password pw)
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

ADMIN = "http://jabber.org/protocol/admin"
steps = []


def step(name):
    print("ok:", name, flush=True)
    steps.append(name)


class Client(slixmpp.ClientXMPP):
    def __init__(self, user, password, on_start, register=False):
        super().__init__(f"{user}@{args.domain}/slix", password)
        # The test server's certificate is self-signed.
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.enable_direct_tls = False
        for plugin in ("xep_0030", "xep_0004", "xep_0050", "xep_0133"):
            self.register_plugin(plugin)
        if register:
            self.register_plugin("xep_0077")
            self.add_event_handler("register", self.on_register)
        self.add_event_handler("session_start", on_start)
        self.add_event_handler("failed_auth", lambda *_: print("auth failed:", user, flush=True))

    async def on_register(self, form):
        fields = form["register"]["form"].get_fields() if form["register"]["form"] else {}
        assert "username" in fields and "password" in fields, form
        reply = self.Iq()
        reply["type"] = "set"
        reply["register"]["username"] = self.boundjid.user
        reply["register"]["password"] = self.password
        await reply.send(timeout=10)
        step("registered in-band as " + self.boundjid.user)


async def run_command(xmpp, command, values):
    """execute, then complete with `values`; returns the completed <command/>."""
    adhoc = xmpp.plugin["xep_0050"]
    node = f"{ADMIN}#{command}"
    first = await adhoc.send_command(args.domain, node, action="execute", timeout=10)
    assert first["command"]["status"] == "executing", first
    form = xmpp.plugin["xep_0004"].make_form(ftype="submit")
    form.add_field(var="FORM_TYPE", ftype="hidden", value=ADMIN)
    for var, (ftype, value) in values.items():
        form.add_field(var=var, ftype=ftype, value=value)
    done = await adhoc.send_command(
        args.domain, node, action="complete", payload=form, sessionid=first["command"]["sessionid"], timeout=10
    )
    command_el = done["command"]
    assert command_el["status"] == "completed", done
    errors = [text for kind, text in command_el["notes"] if kind == "error"]
    assert not errors, errors
    return command_el


async def main():
    loop = asyncio.get_running_loop()
    newbie_in = loop.create_future()
    newbie_gone = loop.create_future()
    carol_in = loop.create_future()

    async def newbie_start(_):
        step("newbie logged in")
        newbie_in.set_result(True)

    newbie = Client("newbie", "newbie password", newbie_start, register=True)
    newbie.add_event_handler("disconnected", lambda *_: newbie_gone.done() or newbie_gone.set_result(True))
    newbie.connect(args.host, args.port)
    admin = None
    carol = None
    try:
        await asyncio.wait_for(newbie_in, args.timeout)

        admin_done = loop.create_future()

        async def admin_start(_):
            try:
                items = await admin.plugin["xep_0133"].get_commands(jid=args.domain, timeout=10)
                nodes = [node for (_jid, node, _name) in items["disco_items"]["items"]]
                for command in ("add-user", "delete-user", "get-registered-users-num"):
                    assert f"{ADMIN}#{command}" in nodes, nodes
                step("commands listed")
                await run_command(
                    admin,
                    "add-user",
                    {
                        "accountjid": ("jid-single", f"carol@{args.domain}"),
                        "password": ("text-private", "carol password"),
                        "password-verify": ("text-private", "carol password"),
                    },
                )
                step("added carol")
                counted = await admin.plugin["xep_0050"].send_command(
                    args.domain, f"{ADMIN}#get-registered-users-num", action="execute", timeout=10
                )
                values = counted["command"]["form"].get_values()
                assert values.get("registeredusersnum") == "3", values
                step("three registered users")
                await run_command(
                    admin, "delete-user", {"accountjids": ("jid-multi", [f"newbie@{args.domain}"])}
                )
                step("deleted newbie")
                admin_done.set_result(True)
            except Exception as err:  # report, don't hang until the timeout
                admin_done.set_exception(err)

        admin = Client("admin", "pw", admin_start)
        admin.connect(args.host, args.port)
        await asyncio.wait_for(admin_done, args.timeout)
        await asyncio.wait_for(newbie_gone, args.timeout)
        step("newbie's session ended")

        async def carol_start(_):
            step("carol logged in")
            carol_in.set_result(True)

        carol = Client("carol", "carol password", carol_start)
        carol.connect(args.host, args.port)
        await asyncio.wait_for(carol_in, args.timeout)
    except asyncio.TimeoutError:
        print("timeout after steps:", steps, flush=True)
        return 1
    finally:
        for client in (newbie, admin, carol):
            if client is not None:
                client.disconnect()
    return 0


sys.exit(asyncio.run(main()))
