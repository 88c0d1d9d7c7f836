"""OpenTelemetry traces of the gateway itself (``--otlp-endpoint``); see :mod:`.spans`.

Imported only when tracing is on: a data plane without ``--otlp-endpoint`` never loads the
OpenTelemetry SDK, and its request path pays one ``None`` check per hook.
"""
