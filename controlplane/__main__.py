"""``python -m controlplane --listen 127.0.0.1:50051 --db sqlite:///.tollgate/tollgate.db``"""

import sys

from controlplane.server import main

sys.exit(main())
