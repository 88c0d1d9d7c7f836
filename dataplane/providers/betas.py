"""Which ``anthropic-beta`` values each provider kind accepts — data, applied when translating.

Contract:

* ``filter_betas(kind, betas)`` returns the values ``kind`` accepts, in their first-seen order,
  each once. Values are stripped of surrounding whitespace; empty ones are dropped.
* ``anthropic`` (and any kind not in :data:`ACCEPTED`, e.g. ``simulator``) accepts **everything**:
  Anthropic direct gets every beta untouched, unknown ones included (ARCHITECTURE.md rule 1).
* Every other kind is an **allowlist of exact values**. A beta Bedrock or Vertex does not know
  makes the whole request fail (Bedrock: 400 "invalid beta flag"; Vertex: 400 "Unexpected
  value(s) … for the anthropic-beta header"), while a dropped beta only loses its feature; so an
  unlisted value — including a new dated version of a listed family — is dropped until someone
  adds it here. Claude Code sends new betas every few weeks: this table is the place to edit.
* ``header_betas(headers)`` splits every ``anthropic-beta`` request header (comma-separated,
  possibly repeated) into its values.

Sources (checked 2026; re-check when adding):

* Bedrock: the AWS Bedrock user guide, "Anthropic Claude Messages API → Request and Response"
  (``anthropic_beta`` and its listed values: computer use, token-efficient tools, interleaved
  thinking, 128K output, dev full thinking, 1M context, context management, effort, tool search,
  tool examples); Claude Code's own Bedrock body betas (interleaved thinking, 1M context,
  ``tool-search-tool-2025-10-19``); LiteLLM's per-provider table for the Bedrock Invoke API
  (``computer-use-2025-11-24``, ``compact-2026-01-12``, fine-grained tool streaming).
  ``claude-code-20250219`` is *not* accepted by Bedrock.
* Vertex: Claude Code's Vertex allowlist (``claude-code-20250219``, interleaved thinking, context
  management); the Claude Code maintainers confirming interleaved thinking on Vertex
  (anthropics/claude-code#1229); LiteLLM's Vertex table (computer use, 1M context, tool search,
  compact). Reported rejected by Vertex and therefore absent: ``effort-2025-11-24``,
  ``adaptive-thinking-2026-01-28``, ``prompt-caching-scope-2026-01-05``,
  ``structured-outputs-2025-11-13``, ``redact-thinking-2026-02-12``, ``advisor-tool-2026-03-01``
  (anthropics/claude-code#34802, BerriAI/litellm#19984, vercel/ai#10981).
* ``vertex_count_tokens``: Vertex's count-tokens model is stricter than Messages; Claude Code
  itself sends it only these three (anthropics/claude-code#11154, #12429).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from dataplane.asgi import Header

__all__ = ["ACCEPTED", "filter_betas", "header_betas"]

_BEDROCK = frozenset(
    {
        "computer-use-2024-10-22",
        "computer-use-2025-01-24",
        "computer-use-2025-11-24",
        "token-efficient-tools-2025-02-19",
        "interleaved-thinking-2025-05-14",
        "output-128k-2025-02-19",
        "dev-full-thinking-2025-05-14",
        "context-1m-2025-08-07",
        "context-management-2025-06-27",
        "effort-2025-11-24",
        "tool-search-tool-2025-10-19",
        "tool-examples-2025-10-29",
        "fine-grained-tool-streaming-2025-05-14",
        "compact-2026-01-12",
    }
)

_VERTEX = frozenset(
    {
        "claude-code-20250219",
        "interleaved-thinking-2025-05-14",
        "context-management-2025-06-27",
        "context-1m-2025-08-07",
        "computer-use-2024-10-22",
        "computer-use-2025-01-24",
        "computer-use-2025-11-24",
        "tool-search-tool-2025-10-19",
        "compact-2026-01-12",
    }
)

_VERTEX_COUNT_TOKENS = frozenset(
    {
        "claude-code-20250219",
        "interleaved-thinking-2025-05-14",
        "context-management-2025-06-27",
    }
)

# kind -> the exact beta values it accepts. Kinds absent from this table accept everything.
ACCEPTED: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "bedrock": _BEDROCK,
        "vertex": _VERTEX,
        "vertex_count_tokens": _VERTEX_COUNT_TOKENS,
    }
)


def filter_betas(kind: str, betas: Iterable[str]) -> list[str]:
    """The values of ``betas`` that provider ``kind`` accepts: order kept, duplicates dropped."""
    allowed = ACCEPTED.get(kind)
    out: list[str] = []
    seen: set[str] = set()
    for raw in betas:
        beta = raw.strip()
        if not beta or beta in seen:
            continue
        seen.add(beta)
        if allowed is None or beta in allowed:
            out.append(beta)
    return out


def header_betas(headers: Iterable[Header]) -> list[str]:
    """Every value of the (possibly repeated, comma-separated) ``anthropic-beta`` headers."""
    out: list[str] = []
    for name, value in headers:
        if name.lower() == b"anthropic-beta":
            out.extend(v.strip() for v in value.decode("latin-1").split(",") if v.strip())
    return out
