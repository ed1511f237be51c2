"""A local stand-in for the provider's billing feed, for development, tests, demos and benchmarks."""

from cdr_stream.simulator.generator import FeedGenerator, GeneratorConfig, InvalidKind
from cdr_stream.simulator.server import FeedSimulator, RequestRecord, SimulatorConfig

__all__ = [
    "FeedGenerator",
    "FeedSimulator",
    "GeneratorConfig",
    "InvalidKind",
    "RequestRecord",
    "SimulatorConfig",
]
