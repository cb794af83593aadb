"""`python -m genq_client ...`: the genq-client CLI."""

import sys

from genq_client.cli import main

sys.exit(main())
