"""Errors raised while resolving, starting or stopping the local Kafka broker."""

from __future__ import annotations


class KafkaLocalError(RuntimeError):
    """Base class: something about the local broker went wrong (the message says what to do)."""


class KafkaResolveError(KafkaLocalError):
    """The Kafka jars could not be resolved from Maven (or Maven/Java is missing)."""


class PortInUseError(KafkaLocalError):
    """A port the broker needs is taken by another process."""


class KafkaStartError(KafkaLocalError):
    """The broker process failed to format its storage, start, or become ready in time."""
