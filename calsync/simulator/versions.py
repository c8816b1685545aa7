"""Exchange versions the simulator can pose as: build numbers and the EWS schema version names."""

from __future__ import annotations

from dataclasses import dataclass

#: RequestServerVersion values in the order the schema enumerates them (older first).
REQUEST_VERSIONS = (
    "Exchange2007",
    "Exchange2007_SP1",
    "Exchange2009",
    "Exchange2010",
    "Exchange2010_SP1",
    "Exchange2010_SP2",
    "Exchange2012",
    "Exchange2013",
    "Exchange2013_SP1",
    "Exchange2015",
    "Exchange2016",
)


@dataclass(frozen=True, slots=True)
class ServerVersion:
    name: str
    major: int
    minor: int
    major_build: int
    minor_build: int
    #: The Version attribute of ServerVersionInfo, and the newest RequestServerVersion accepted.
    api_version: str

    def accepts(self, requested: str) -> bool:
        if requested not in REQUEST_VERSIONS:
            return False
        return REQUEST_VERSIONS.index(requested) <= REQUEST_VERSIONS.index(self.api_version)

    @property
    def build(self) -> str:
        return f"{self.major}.{self.minor}.{self.major_build}.{self.minor_build}"


# Builds are the last cumulative update of each line, what on-premises servers run today. Exchange
# 2013 CU23 understands the Exchange2013_SP1 schema, so the default server accepts what calsync
# sends (Version(build=Build(15, 0, 1497, 2)) -> Exchange2013_SP1) without a version retry.
VERSIONS: dict[str, ServerVersion] = {
    v.name: v
    for v in (
        ServerVersion("Exchange2010", 14, 0, 722, 0, "Exchange2010"),
        ServerVersion("Exchange2010_SP1", 14, 1, 438, 0, "Exchange2010_SP1"),
        ServerVersion("Exchange2010_SP2", 14, 2, 247, 5, "Exchange2010_SP2"),
        ServerVersion("Exchange2013", 15, 0, 1497, 2, "Exchange2013_SP1"),
        ServerVersion("Exchange2013_SP1", 15, 0, 1497, 2, "Exchange2013_SP1"),
        ServerVersion("Exchange2016", 15, 1, 2507, 6, "Exchange2016"),
        # The schema's version enumeration stops at Exchange2016; Exchange 2019 reports that.
        ServerVersion("Exchange2019", 15, 2, 1118, 7, "Exchange2016"),
    )
}
DEFAULT_VERSION = "Exchange2013"


def server_version(name: str) -> ServerVersion:
    try:
        return VERSIONS[name]
    except KeyError:
        raise ValueError(f"unknown Exchange version {name!r}; choose from {sorted(VERSIONS)}") from None
