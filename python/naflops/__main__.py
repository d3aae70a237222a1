"""python -m naflops"""
import sys

from naflops.cli import main

sys.exit(main())
