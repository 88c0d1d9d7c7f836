"""Screens pushed over the views: help, confirmation, request detail."""
