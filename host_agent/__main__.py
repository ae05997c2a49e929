from __future__ import annotations

import sys

from host_agent.cli import main

sys.exit(main())
