"""Claude Code's own telemetry (OTLP/HTTP) on the data plane.

``POST /v1/metrics``, ``/v1/logs`` and ``/v1/traces`` sit behind the auth middleware like the
Messages API. Each export is decoded (:mod:`.otlp`), stamped with the caller's identity
(:mod:`.identity`), answered 200 at once, then forwarded in the background to the collectors the
snapshot lists (:mod:`.forwarder`); signed-in developers' metrics also feed the per-developer
activity figures reported to the control plane (:mod:`.activity`, :mod:`.activity_reporter`).
:mod:`.endpoint` ties these together for one request; :mod:`.service` owns the background parts.
"""
