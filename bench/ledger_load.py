"""Bulk loading for ``bench.ledger``: a year of usage events generated inside PostgreSQL, and the
ledger's derived tables computed from them in SQL, the way ingest would have kept them.

Why SQL: tens of millions of rows through Python (or through ingest at ~5k/s) take hours; a
``generate_series`` insert with the indexes dropped and rebuilt afterwards takes minutes. The
derived tables are computed by set-based SQL with the definitions of
:mod:`controlplane.usage.totals` and :mod:`controlplane.usage.rollups` (periods in each
workspace's time zone via ``AT TIME ZONE``); ``bench.ledger --verify`` checks on a small load that
they equal what ``controlplane.usage.rebuild`` (ingest's own code) builds. Only ``dims_key``
differs (an md5 here, a BLAKE2b there): it is an opaque cell key that no query reads.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection

DAY_MS = 86_400_000
YEAR_MS = 365 * DAY_MS
ZONES = ("", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Asia/Tokyo")

# usage_event indexes are dropped during the load and created again after it (much faster).
_EVENT_INDEXES = (
    "ix_usage_event_time_ms",
    "ix_usage_event_session_id",
    "ix_usage_event_key_time_cost",
    "ix_usage_event_workspace_time_cost",
    "ix_usage_event_developer_time_cost",
)


def index_ddl(conn: Connection) -> list[str]:
    rows = conn.execute(
        text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'usage_event' "
            "AND schemaname = current_schema()"
        )
    ).all()
    return [ddl for name, ddl in rows if name in _EVENT_INDEXES]


_COUNTED_COLUMN = ",\n                  ledger_counted)"
_COUNTED_VALUE = (
    ",\n                  true  -- counted: the derived tables are built from these rows\n"
)
_EVENTS_SQL = """
                INSERT INTO usage_event (
                  request_id, time_ms, workspace, key_id, key_name, session_id, metadata_json,
                  model_requested, model_served, provider, attempts, status, error_type,
                  error_message, ttfb_ms, latency_ms, input_tokens, output_tokens,
                  cache_creation_input_tokens, cache_read_input_tokens, cache_write_5m_tokens,
                  cache_write_1h_tokens, cost_micros, priced_as, stream, path, user_agent,
                  client_version, dataplane_id, upstream_request_id, client_disconnected,
                  received_at_ms, developer_id, developer_email, attempt_log_json, cache_status,
                  cost_saved_micros, web_search_requests, web_fetch_requests, output_estimated,
                  ledger_counted)
                SELECT
                  'bench-' || g,
                  t,
                  'ws-' || lpad((d % :ws)::text, 3, '0'),
                  CASE WHEN keyed THEN 'key_' || lpad((g % 500)::text, 4, '0') ELSE '' END,
                  CASE WHEN keyed THEN 'ci-' || (g % 500) ELSE '' END,
                  'sess-' || d || '-' || (t / 14400000),
                  '{}',
                  m, m, 'anthropic', 1,
                  CASE WHEN g % 97 = 0 THEN 429 ELSE 200 END,
                  '', '', 300, 2000,
                  (g * 7919) % 20000, (g * 104729) % 2000, 0, (g * 31) % 50000, 0, 0,
                  100 + (g * 2654435761) % 40000,
                  '', true, '/v1/messages', 'claude-cli/2.0.1', '2.0.1', 'dp-bench', '', false,
                  t,
                  CASE WHEN keyed THEN '' ELSE 'dev_' || lpad(d::text, 5, '0') END,
                  CASE WHEN keyed THEN '' ELSE 'dev' || d || '@example.com' END,
                  '[]', CASE WHEN g % 13 = 0 THEN 'hit' ELSE '' END, 0, 0, 0, false,
                  true  -- counted: the derived tables are built from these rows
                FROM (
                  SELECT g,
                         :now - ((g * 48271::bigint) % :year) AS t,
                         CASE WHEN keyed THEN ((g % 500) % :ws) ELSE g % :devs END AS d,
                         keyed,
                         (ARRAY['claude-sonnet-4-5','claude-opus-4-1','claude-haiku-4-5'])
                           [1 + (g % 3)] AS m
                  FROM (SELECT g, g % 10 = 0 AS keyed
                        FROM generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint)) AS g) AS s
                ) AS x
                """


def load_events(
    conn: Connection,
    lo: int,
    hi: int,
    developers: int,
    workspaces: int,
    now_ms: int,
    *,
    previous_release: bool = False,
) -> None:
    """Events number ``lo`` to ``hi - 1`` of the year before ``now_ms``: event ``g`` is made by
    developer ``g % developers`` (in workspace ``dev % workspaces``), except every 10th, made
    with one of 500 virtual keys. ``previous_release``: only the columns revision 0003 has (no
    ``ledger_counted``), as in a database from before the ledger (:mod:`bench.ledger_upgrade`)."""
    if lo < hi:
        sql = _EVENTS_SQL
        if previous_release:
            sql = sql.replace(_COUNTED_COLUMN, ")").replace(_COUNTED_VALUE, "\n")
        conn.execute(
            text(sql),
            {
                "lo": lo,
                "hi": hi - 1,
                "now": now_ms,
                "year": YEAR_MS,
                "ws": workspaces,
                "devs": developers,
            },
        )


_MEASURES = """
  count(*), sum(CASE WHEN status >= 400 THEN 1 ELSE 0 END), sum(input_tokens),
  sum(output_tokens), sum(cache_creation_input_tokens), sum(cache_read_input_tokens),
  sum(cost_micros), sum(web_search_requests), sum(web_fetch_requests), sum(cost_saved_micros),
  sum(CASE WHEN cache_status = 'hit' THEN 1 ELSE 0 END), min(time_ms), max(time_ms),
  max(key_name), max(developer_email), :now
"""
_MEASURE_COLUMNS = """
  requests, errors, input_tokens, output_tokens, cache_creation_input_tokens,
  cache_read_input_tokens, cost_micros, web_search_requests, web_fetch_requests,
  cost_saved_micros, cache_hits, first_ms, last_ms, key_name, developer_email, updated_at_ms
"""
_MODEL = "CASE WHEN model_served <> '' THEN model_served ELSE model_requested END"


def build_rollups(conn: Connection, now_ms: int) -> None:
    hour_dims = (
        f"workspace, key_id, developer_id, {_MODEL}, provider, client_version, session_id, "
        "metadata_json"
    )
    conn.execute(
        text(
            f"""
            INSERT INTO usage_rollup_hour (bucket_ms, dims_key, workspace, key_id, developer_id,
              model, provider, client_version, session_id, metadata_json, {_MEASURE_COLUMNS})
            SELECT time_ms - time_ms % 3600000,
                   md5(concat_ws(chr(31), {hour_dims})), {hour_dims}, {_MEASURES}
            FROM usage_event GROUP BY time_ms - time_ms % 3600000, {hour_dims}
            ORDER BY 1  -- stored in time order, as a year of ingest writes them
            """
        ),
        {"now": now_ms},
    )
    day_dims = f"workspace, key_id, developer_id, {_MODEL}, provider, client_version"
    conn.execute(
        text(
            f"""
            INSERT INTO usage_rollup_day (bucket_ms, dims_key, workspace, key_id, developer_id,
              model, provider, client_version, {_MEASURE_COLUMNS})
            SELECT time_ms - time_ms % 86400000, md5(concat_ws(chr(31), {day_dims})),
                   {day_dims}, {_MEASURES}
            FROM usage_event GROUP BY time_ms - time_ms % 86400000, {day_dims}
            ORDER BY 1  -- stored in time order, as a year of ingest writes them
            """
        ),
        {"now": now_ms},
    )


def _start(unit: str) -> str:
    """The period start (ms) of ``time_ms`` in zone ``tz``, as current_window computes it."""
    return (
        f"(extract(epoch FROM date_trunc('{unit}', to_timestamp(time_ms / 1000.0) AT TIME ZONE "
        f"tz) AT TIME ZONE tz) * 1000)::bigint"
    )


def build_totals(conn: Connection, now_ms: int) -> None:
    conn.execute(
        text(
            f"""
            CREATE TEMP TABLE bench_cells ON COMMIT DROP AS
            SELECT e.workspace, e.key_id, e.developer_id, {_start("day")} AS day_start,
                   {_start("week")} AS week_start, {_start("month")} AS month_start,
                   sum(e.cost_micros) AS spent, count(*) AS requests
            FROM (SELECT u.*, coalesce(nullif(w.timezone, ''), 'UTC') AS tz
                  FROM usage_event u LEFT JOIN workspace w ON w.name = u.workspace) AS e
            GROUP BY 1, 2, 3, 4, 5, 6
            """
        )
    )
    for kind, column, cond in (
        ("workspace", "workspace", "true"),
        ("key", "key_id", "key_id <> ''"),
        ("developer", "developer_id", "developer_id <> ''"),
    ):
        for period, start in (
            ("day", "day_start"),
            ("week", "week_start"),
            ("month", "month_start"),
            ("lifetime", "0"),
        ):
            conn.execute(
                text(
                    f"""
                    INSERT INTO spend_total (scope_kind, scope_id, period, period_start_ms,
                      spent_micros, requests, updated_at_ms)
                    SELECT '{kind}', {column}, '{period}', {start}, sum(spent), sum(requests), :now
                    FROM bench_cells WHERE {cond} GROUP BY {column}, 4
                    """
                ),
                {"now": now_ms},
            )
