"""Notifier's logic: validation, subscriptions, events and the per-process hub."""
