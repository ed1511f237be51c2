"""The record logic: a feed row validated, normalized into an event, or dead-lettered with its rule."""
