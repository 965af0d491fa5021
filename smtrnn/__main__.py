import sys

from smtrnn.cli import main

sys.exit(main())
