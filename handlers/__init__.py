"""Tornado handlers: HTTP and WebSocket in, JSON out."""
