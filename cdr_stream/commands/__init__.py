"""The `cdr-stream` subcommands, one module each; `cdr_stream.cli` builds the parser from them."""
