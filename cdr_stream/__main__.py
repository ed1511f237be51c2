"""`python -m cdr_stream`: the `cdr-stream` command."""

import sys

from cdr_stream.cli import main

sys.exit(main())
