"""Puts the named sweep presets (`sweeps/conf/sweep/*.yaml`) on every Hydra app's search path.

`python -m mer.run -m +sweep=paper_grid` then finds the group `sweep` in the installed package
`sweeps.conf`, whether the project is installed editable or as a wheel.
"""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class MerSweepsSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="mer-sweeps", path="pkg://sweeps.conf")
