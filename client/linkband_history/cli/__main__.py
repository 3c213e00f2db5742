"""``python -m linkband_history.cli``: the tool, every subcommand registered."""
import sys

from linkband_history.cli import main

sys.exit(main())
