"""SMTP delivery as the README promises it: the next MX after a temporary
reply, and a mail given up after `outbound.max_lifetime` with one notice
to its XMPP sender."""

import asyncio
import time

import pytest

from peers import Gateway, Relay, escaped, registered_client, run, wait_until
from test_trust import mx_port_free_on


class Deferring(Relay):
    """A relay that answers every mail with a temporary failure, at RCPT
    or at the end of DATA, and counts the attempts."""

    class Handler(Relay.Handler):
        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
            self.relay.attempts += 1
            if self.relay.stage == "RCPT":
                return self.relay.reply
            envelope.rcpt_tos.append(address)
            return "250 2.1.5 OK"

        async def handle_DATA(self, server, session, envelope):
            return self.relay.reply

    def __init__(self, stage="RCPT", reply="451 4.3.0 Try again later", **kwargs):
        super().__init__(**kwargs)
        self.stage, self.reply, self.attempts = stage, reply, 0


@pytest.mark.parametrize("stage,reply", [("RCPT", "451 4.3.0 Mailbox busy"),
                                         ("DATA", "421 4.3.2 Shutting down")])
def test_the_next_mx_after_a_temporary_reply(tmp_path, stage, reply):
    port = mx_port_free_on("127.0.0.2", "127.0.0.3")
    dns = {"mx": {"two.test": [(10, "mx1.two.test"), (20, "mx2.two.test")]},
           "hosts": {"mx1.two.test": "127.0.0.2", "mx2.two.test": "127.0.0.3"}}
    first = Deferring(stage, reply, host="127.0.0.2", port=port)
    second = Relay(host="127.0.0.3", port=port)
    gateway = Gateway(tmp_path, dns=dns, relay=False, mx_port=port)
    try:
        first.start()
        second.start()
        gateway.start()

        async def scenario():
            alice = await registered_client(gateway)
            alice.send(escaped("bob@two.test"), "The first MX is busy.", subject="Failover")
            assert await wait_until(lambda: second.received, timeout=20), gateway.facteur.log_tail()
            # In the same attempt: a retry would have asked the first again.
            assert first.attempts == 1
            assert second.received[0]["rcpt_tos"] == ["bob@two.test"]
            assert second.received[0]["message"]["Subject"] == "Failover"
            await asyncio.sleep(1)
            assert len(second.received) == 1 and first.attempts == 1
            await alice.disconnect()
        run(scenario())
    finally:
        gateway.stop()
        first.stop()
        second.stop()


def test_mail_given_up_after_max_lifetime_gets_one_notice(tmp_path):
    gateway = Gateway(tmp_path, outbound='max_lifetime = "3s"')
    gateway.relay = Deferring(port=gateway.relay.port)
    try:
        gateway.start()

        async def scenario():
            alice = await registered_client(gateway)
            started = time.monotonic()
            alice.send(escaped("bob@example.net"), "Nobody takes this today.", subject="Patience")
            notice = await alice.wait_for(lambda m: m["subject"] == "Undelivered mail", timeout=30)
            # Given up at the first failure whose next retry would fall past
            # max_lifetime, which is after one retry wait (retry_initial).
            assert time.monotonic() - started >= 1, "given up before retrying"
            assert notice["from"] == escaped("bob@example.net")
            body = notice["body"]
            assert body.startswith("Your mail to bob@example.net could not be delivered: gave up after"), body
            assert "(451): 4.3.0 Try again later" in body, body
            attempts = gateway.relay.attempts
            assert attempts >= 2, "retried before giving up"
            # Given up for good: no more attempts, no second notice.
            await asyncio.sleep(4)
            assert gateway.relay.attempts == attempts
            assert [m["subject"] for m in alice.messages].count("Undelivered mail") == 1
            assert gateway.relay.received == []
            await alice.disconnect()
        run(scenario())
        assert gateway.facteur.queue().get(("to_mail", "failed")) == 1, gateway.facteur.queue()
    finally:
        gateway.stop()
