"""Files the DAGs use but Airflow never scans: templates, baselines, the sandbox AWS, the demo.

The demo and the headless cycle read the runs' artifacts through the plugin package's contract
(patchcycle.run_artifacts); Airflow puts plugins/ on sys.path, and so does this package for its tools.
"""

import sys
from pathlib import Path

_PLUGINS = str(Path(__file__).resolve().parents[1] / "plugins")
if _PLUGINS not in sys.path:
    sys.path.append(_PLUGINS)
