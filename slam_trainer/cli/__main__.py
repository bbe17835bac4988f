import sys

from slam_trainer.cli.main import main


sys.exit(main())
