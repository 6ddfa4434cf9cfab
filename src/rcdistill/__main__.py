"""`python -m rcdistill` is `rcd`."""
import sys

from .cli import main

sys.exit(main())
