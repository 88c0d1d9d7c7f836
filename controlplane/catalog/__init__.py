"""Catalog operations: validated create/read/update/delete of workspaces, keys, providers, routes
and prices. Each function takes an open SQLModel ``Session`` (run it through
``Database.run``), speaks ``gwapi.v1`` messages at its edge, applies the rules in
:mod:`controlplane.domain` and raises domain errors; none of it knows about gRPC status codes.
"""
