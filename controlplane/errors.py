"""The one place domain errors become gRPC statuses.

:func:`grpc_errors` decorates a servicer class: every RPC method is wrapped so that a
:class:`~controlplane.domain.errors.DomainError` aborts the call with the status from
:data:`STATUS_BY_ERROR` and the error's message (written for the caller), a database outage
becomes UNAVAILABLE, and anything unexpected becomes INTERNAL with a generic message; its
traceback goes to the server log only. Servicers never build statuses by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import grpc
from sqlalchemy.exc import OperationalError

from controlplane.domain import errors as d

log = logging.getLogger(__name__)

STATUS_BY_ERROR: dict[type[d.DomainError], grpc.StatusCode] = {
    d.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    d.NotFound: grpc.StatusCode.NOT_FOUND,
    d.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    d.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    d.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    d.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    d.Unavailable: grpc.StatusCode.UNAVAILABLE,
}
INTERNAL_MESSAGE = "internal error in the control plane; see its log"
UNAVAILABLE_MESSAGE = "the control plane's database is unavailable; retry shortly"

C = TypeVar("C", bound=type)


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status and caller-safe message for ``exc``."""
    for cls in type(exc).__mro__:
        code = STATUS_BY_ERROR.get(cls)
        if code is not None:
            return code, str(exc)
    if isinstance(exc, OperationalError):
        return grpc.StatusCode.UNAVAILABLE, UNAVAILABLE_MESSAGE
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE


async def _abort(context: grpc.aio.ServicerContext, method: str, exc: Exception) -> None:
    code, message = status_for(exc)
    if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE):
        log.error("%s failed", method, exc_info=exc)
    await context.abort(code, message)


def _wrap(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(fn):

        @functools.wraps(fn)
        async def stream(self: Any, request: Any, context: Any) -> AsyncIterator[Any]:
            try:
                # aclosing: when the client goes away, the wrapped generator's `finally` blocks
                # run now, not whenever the garbage collector finalises it.
                async with contextlib.aclosing(fn(self, request, context)) as items:
                    async for item in items:
                        yield item
            except (asyncio.CancelledError, grpc.aio.AbortError):
                raise
            except Exception as exc:
                await _abort(context, name, exc)

        return stream

    @functools.wraps(fn)
    async def unary(self: Any, request: Any, context: Any) -> Any:
        try:
            return await fn(self, request, context)
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as exc:
            await _abort(context, name, exc)

    return unary


def grpc_errors(cls: C) -> C:
    """Class decorator: wrap every public coroutine / async-generator method of a servicer."""
    for attr, fn in list(vars(cls).items()):
        if attr.startswith("_") or not (
            inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)
        ):
            continue
        setattr(cls, attr, _wrap(f"{cls.__name__}.{attr}", fn))
    return cls
