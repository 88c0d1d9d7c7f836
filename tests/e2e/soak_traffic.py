"""The traffic of the usage soak (``test_soak_usage.py``): one method per kind of request, each
keeping what the ledger row of every request it sent must say (:class:`Expect`) and, for
refusals, the response, to be checked for readability once the soak is over.

Keys (see the test's ``setup``): alice (simulator), bob (simulator, full body logging), carol
(the fake Anthropic), dave (simulator, budget spent, rate-limited), erin (the fake Bedrock,
which refuses naming the account), mallory (simulator, full body logging, hostile strings).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from tests.e2e.soak_support import (
    ABANDONED_OUTPUT,
    EARLY_ESTIMATE,
    MIB,
    SONNET,
    Expect,
    SoakAnthropic,
    fallback_cost,
    haiku_cost,
    mismatch,
    search_output,
    sonnet_cost,
    usage_seen,
)
from tests.e2e.test_gateway import ControlPlaneProcess

MODEL = "claude-haiku-4-5"
BIG_BODY = 3_000_000  # bytes of prompt per logged request during the outage
LOGGED = 12  # 12 x 3 MB = 36 MB waiting: more than one 32 MiB message
RPM = 100  # dave's rate limit
# Client strings a terminal or the console would act on.
ESC = "\x1b[2J\x1b]0;owned\x07\x1b[31m"
MARKUP = ("x[/]", "[@click=app.quit]", "[/][bold]", "claude-haiku-4-5[@click=app.bell]")
INVALID = "invalid_request_error"


def body(model: str = MODEL, text: str = "hi", stream: bool = False, max_tokens: int = 16) -> bytes:
    return orjson.dumps(
        {
            "model": model,
            "max_tokens": max_tokens,
            "stream": stream,
            "messages": [{"role": "user", "content": text}],
        }
    )


def metadata(doc: dict[str, Any]) -> dict[str, str]:
    return {"x-tollgate-metadata": orjson.dumps(doc).decode()}


class Traffic:
    def __init__(
        self, client: httpx.AsyncClient, secrets: dict[str, str], anthropic: SoakAnthropic
    ) -> None:
        self.c = client
        self.secrets = secrets
        self.anthropic = anthropic
        self.expect: dict[str, Expect] = {}  # request id -> its ledger row
        self.by_session: dict[str, Expect] = {}  # calls that never got an answer (no id)
        self.refusals: list[tuple[httpx.Response, int, str, str]] = []  # + status, type, needle
        self.escaped: list[str] = []  # ids of answers that quote terminal escapes
        self.sent = 0
        self.served = 0  # by the good workers
        self._numbers = itertools.count()

    def headers(self, key: str, **extra: str) -> dict[str, str]:
        return {
            "x-api-key": self.secrets[key],
            "anthropic-version": "2023-06-01",
            "content-type": "application/json",
            **extra,
        }

    async def post(self, path: str, content: bytes, headers: dict[str, str]) -> httpx.Response:
        r = await self.c.post(path, content=content, headers=headers)
        self.sent += 1
        request_id = r.headers["x-tollgate-request-id"]
        assert request_id not in self.expect, "request ids are unique"
        self.expect[request_id] = Expect(status=r.status_code)  # refined by the caller
        return r

    async def good(
        self,
        key: str,
        content: bytes,
        stream: bool,
        price: Callable[[int, int], int] = haiku_cost,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        """A simulator request that must be served, and billed exactly as its client saw it;
        ``headers`` are sent besides the key's."""
        r = await self.post("/v1/messages", content, self.headers(key, **(headers or {})))
        assert r.status_code == 200, r.text[:300]
        seen_in, seen_out = usage_seen(r.content, stream)
        model = orjson.loads(content)["model"]
        request_id = r.headers["x-tollgate-request-id"]
        self.expect[request_id] = Expect(
            200, price(seen_in, seen_out), seen_in, seen_out, model=model
        )
        return request_id

    async def refused(
        self, path: str, content: bytes, headers: dict[str, str], status: int, needle: str,
        etype: str = INVALID,
    ) -> None:  # fmt: skip
        r = await self.post(path, content, headers)
        self.refusals.append((r, status, etype, needle))
        self.expect[r.headers["x-tollgate-request-id"]] = Expect(status, cost=0)

    def mismatches(self, rows: list[dict[str, Any]]) -> list[str]:
        """Every way the ledger differs from what was sent; [] when it is exact."""
        by_id = {row["request_id"]: row for row in rows}
        wrong = [f"{rid}: not in the ledger" for rid in self.expect if rid not in by_id]
        wrong += [m for rid, want in self.expect.items() if (m := mismatch(by_id[rid], want))]
        for session, want in self.by_session.items():
            found = [row for row in rows if row["session_id"] == session]
            if len(found) != 1:
                wrong.append(f"{session}: {len(found)} rows")
            elif m := mismatch(found[0], want):
                wrong.append(m)
        return wrong

    # --- the kinds of traffic -----------------------------------------------------------------

    async def good_worker(self, w: int, total: int) -> None:
        """Takes numbers until ``total`` requests were sent by all the workers together."""
        while (i := next(self._numbers)) < total:
            stream = i % 3 == 0
            session = {"x-claude-code-session-id": f"good-{w}"}
            await self.good("alice", body(text=f"good {i}", stream=stream), stream, headers=session)
            self.served += 1

    async def bad_strings(self) -> None:
        """Findings 1 and 3: model ids, metadata, session ids and user agents a client chose."""
        h = self.headers("alice")
        for i in range(40):  # distinct multi-MB model ids (finding 3: the price caches)
            huge = f"claude-opus-zz{i}-" + "x" * (MIB + i)
            await self.refused("/v1/messages", body(huge), h, 400, "at most 256")
            nul = f"claude-sonnet-4-5\x00{i}"
            await self.refused("/v1/messages", body(nul), h, 400, "not a model id")
        for i in range(20):
            nul_meta = {"x-tollgate-metadata": f'{{"team":"a\\u0000{i}"}}'}
            await self.refused("/v1/messages", body(), self.headers("alice", **nul_meta), 400, "control character")  # fmt: skip
            many = metadata({f"k{n}": "v" for n in range(17)})
            await self.refused("/v1/messages", body(), self.headers("alice", **many), 400, "more than 16")  # fmt: skip
        vertex = "/vertex/v1/projects/p/locations/r/publishers/anthropic/models/"
        content = orjson.dumps({"anthropic_version": "vertex-2023-10-16", "max_tokens": 5})
        bearer = {**h, "authorization": f"Bearer {self.secrets['alice']}"}
        for i in range(5):
            path = f"{vertex}claude-{'v' * 20_000}{i}:rawPredict"
            await self.refused(path, content, bearer, 400, "at most 256")
            path = f"/bedrock/model/{quote(f'claude-x{i}' + chr(0), safe='')}/invoke"
            await self.refused(path, content, h, 400, "not a model id")
        for i in range(20):  # odd but acceptable: served, and cut in the event
            await self.good("alice", body(text=f"odd {i}"), False, headers={
                "x-claude-code-session-id": f"{i}-" + "s" * 20_000,
                "user-agent": "claude-cli/2.1.197 " + "u" * 20_000,
                **metadata({f"k{n}": "m" * 2000 for n in range(16)}),
            })  # fmt: skip

    async def big_bodies_during_outage(self, cp: ControlPlaneProcess, after: int) -> None:
        """Finding 1: full body logging, 3 MB bodies, while the control plane is down."""
        while self.served < after:
            await asyncio.sleep(0.05)
        cp.kill()
        big = "z" * BIG_BODY
        for i in range(LOGGED):
            await self.good("bob", body(text=f"{i} {big}"), False)
        await asyncio.sleep(1.0)
        await cp.start()

    async def early_closed(self, n: int) -> None:
        """Finding 2: streams read to their last text, then closed before the final usage."""
        content = body(SONNET, "early", stream=True, max_tokens=1000)
        for _ in range(n):
            stream = self.c.stream("POST", "/v1/messages", content=content, headers=self.headers("carol"))  # fmt: skip
            async with stream as r:
                got = b""
                async for chunk in r.aiter_raw():
                    got += chunk
                    if b"content_block_stop" in got:
                        break  # read the whole answer, then hang up
            self.sent += 1
            assert r.status_code == 200 and b"message_delta" not in got
            self.expect[r.headers["x-tollgate-request-id"]] = Expect(
                200, sonnet_cost(20, EARLY_ESTIMATE), 20, EARLY_ESTIMATE, estimated=True,
                disconnected=True, model=SONNET,
            )  # fmt: skip

    async def abandoned(self, first: int, n: int) -> None:
        """Finding 2: plain calls whose client hangs up while the upstream writes the answer."""
        content = body(SONNET, "abandon", max_tokens=1000)
        for i in range(first, first + n):
            session = f"abandon-{i}"
            headers = self.headers("carol", **{"x-claude-code-session-id": session})
            call = asyncio.create_task(
                self.c.post("/v1/messages", content=content, headers=headers)
            )
            await self.anthropic.wait_arrived(session)
            call.cancel()  # closes the connection
            await asyncio.gather(call, return_exceptions=True)
            self.sent += 1
            self.by_session[session] = Expect(
                499, sonnet_cost(20, ABANDONED_OUTPUT), 20, ABANDONED_OUTPUT, disconnected=True
            )

    async def searches(self, n: int) -> None:
        """Finding 5: answers reporting 1 to 5 web searches, streamed and not."""
        for i in range(n):
            searches, stream = 1 + i % 5, i % 2 == 0
            content = body(SONNET, f"search {searches}", stream, 1000)
            r = await self.post("/v1/messages", content, self.headers("carol"))
            assert r.status_code == 200, r.text[:300]
            out = search_output(searches)
            self.expect[r.headers["x-tollgate-request-id"]] = Expect(
                200, sonnet_cost(20, out, searches), 20, out, searches=searches, model=SONNET
            )

    async def count_flood(self, n: int, messages: int) -> None:
        """Finding 5: ``n`` count_tokens (and ``messages`` Messages requests, refused) from a key
        whose budget is spent: served within its rpm, then rate-limited; all at cost 0."""
        await self.good("dave", body(text="spends the budget"), False)
        counted = body(text="how many tokens is this?")
        h = self.headers("dave")
        for i in range(n):
            if i % (n // messages) == 0:
                r = await self.post("/v1/messages", body(), h)
                assert r.status_code == 429, r.text[:300]
                message = r.json()["error"]["message"]
                assert message.startswith(("Budget of", "Rate limit of")), message
                self.expect[r.headers["x-tollgate-request-id"]] = Expect(429, cost=0)
            r = await self.post("/v1/messages/count_tokens", counted, h)
            if r.status_code == 200:
                assert r.json()["input_tokens"] > 0
            else:
                needle = f"Rate limit of {RPM} requests per minute"
                self.refusals.append((r, 429, "rate_limit_error", needle))
            self.expect[r.headers["x-tollgate-request-id"]] = Expect(
                r.status_code, cost=0, input_tokens=0, output_tokens=0, count_tokens=True
            )

    async def console_strings(self, rounds: int) -> None:
        """Finding 7: Rich markup and terminal escapes in every client string that can carry
        them; the ones that cannot (a model id, metadata) are refused."""
        for i in range(rounds):
            for model in MARKUP:  # valid model ids: served (priced as an unknown model)
                price = haiku_cost if model.startswith(MODEL) else fallback_cost
                await self.good("mallory", body(model, f"markup {i}"), False, price)
            await self.good("mallory", body(text=f"session {i}"), False, headers={
                "x-claude-code-session-id": MARKUP[i % 2],
                "user-agent": f"claude-cli/2.1.197 {MARKUP[1]}",
                **metadata({"note": MARKUP[1], "x": MARKUP[0]}),
            })  # fmt: skip
            stream = i % 2 == 0  # the simulator quotes the prompt: the escapes are in the answer
            content = body(text=f"{ESC} {MARKUP[1]} {i}", stream=stream, max_tokens=200)
            self.escaped.append(await self.good("mallory", content, stream))
            h = self.headers("mallory")
            await self.refused("/v1/messages", body(f"claude-{ESC}"), h, 400, "not a model id")
            h = self.headers("mallory", **metadata({"t": ESC}))
            await self.refused("/v1/messages", body(), h, 400, "control character")

    async def cloud_denied(self, n: int) -> None:
        """Finding 9: Bedrock refuses with a message naming the AWS account."""
        needle = "Amazon Bedrock (provider 'bedrock') refused the request: AccessDeniedException."
        for i in range(n):
            content = body(SONNET, f"denied {i}", stream=i % 2 == 0, max_tokens=100)
            await self.refused("/v1/messages", content, self.headers("erin"), 403, needle, "permission_error")  # fmt: skip
