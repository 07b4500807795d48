#!/usr/bin/env python3
"""Start DDPM Studio from a clone: `python main.py` (an installed copy: `ddpm-studio`)."""

import sys

from ddpm_gui.app import main

if __name__ == "__main__":
    sys.exit(main())
