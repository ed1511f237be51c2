"""cdr-stream: call detail records from a billing feed into Kafka, exactly once."""

__version__ = "0.1.0"
