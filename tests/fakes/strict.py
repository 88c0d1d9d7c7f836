"""Strict fakes record protocol violations; a test passes only if none was recorded during it.

A strict fake (:class:`Strict`: the Anthropic, Bedrock and Vertex upstreams, the OIDC provider,
the OTLP collector, the sign-in control plane) answers a request the real service would refuse as
that service would, and appends a line to ``violations``. It calls :func:`watch` when it starts,
and the autouse fixture in tests/conftest.py wraps every test in :func:`no_new_violations`: at
teardown it fails the test if a fake recorded a violation while the test ran, whether the test
started the fake or a wider-scoped fixture did (then only the violations added during this test
count). No test has to remember to check.

A test that provokes a violation on purpose says so by taking it, which also checks it::

    assert fake.take_violations() == ["token endpoint: invalid JWT signature"]
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator


class Strict:
    """A fake whose ``violations`` must stay empty unless the test takes them."""

    violations: list[str]

    def take_violations(self) -> list[str]:
        """The violations recorded so far, removed: the test expected them."""
        taken = list(self.violations)
        self.violations.clear()
        return taken


# Every fake started in this process, weakly (dataclass fakes are unhashable: no WeakSet), and
# the ones started during the current test, kept alive until it is checked.
_known: list[weakref.ref[Strict]] = []
_this_test: list[Strict] = []


def watch(fake: Strict) -> None:
    """Called by a strict fake when it starts serving."""
    _known.append(weakref.ref(fake))
    _this_test.append(fake)


def _alive() -> list[Strict]:
    fakes = {id(f): f for f in (ref() for ref in _known) if f is not None}
    _known[:] = [weakref.ref(f) for f in fakes.values()]
    return list(fakes.values())


@contextlib.contextmanager
def no_new_violations() -> Iterator[None]:
    """Fail on exit if any strict fake recorded a violation inside the block and it was not
    taken (:meth:`Strict.take_violations`)."""
    checks = [(f, len(f.violations)) for f in _alive()]
    _this_test.clear()
    try:
        yield
        known = {id(f) for f, _ in checks}
        for fake in _this_test:  # started during the block: everything it recorded counts
            if id(fake) not in known:
                known.add(id(fake))
                checks.append((fake, 0))
        found = [f"{type(f).__name__}: {v}" for f, n in checks for v in f.violations[n:]]
        assert not found, f"strict fakes recorded protocol violations: {found}"
    finally:
        _this_test.clear()
