"""Exchange for Python: the federation from notebooks and scripts.

A thin, typed layer on grpcio and pyarrow.flight, generated from the
repository's ``proto/`` (``exchange.v1``). It reads the same
``exchange.toml`` and certificate files as the ``exchange`` command line,
and every call goes through the coordinator's ordinary, authorized, masked
and audited paths: nothing here decides who may read what.

    import exchange
    ex = exchange.connect()                 # $EXCHANGE_CONFIG or ~/.exchange/exchange.toml
    ex.catalog.search("低保")                # datasets (exchange.v1.Dataset)
    ex.access.request("real-estate/leases", purpose="低保家庭财产核查")
    table = ex.query("real-estate/leases", purpose="低保家庭财产核查", limit=100)
    exchange.to_pandas(table)               # nullable dtypes
    ex.lookup("person_id", "110101199003074514", purpose="低保家庭财产核查")
    ex.batch_lookup("person_id", keys, purpose="...")
    ex.audit.log(dataset="real-estate/leases")
    ex.report("departments")
"""

from .client import (
    BatchResult,
    Config,
    Exchange,
    ExchangeError,
    LookupAnswer,
    LookupResult,
    connect,
    to_pandas,
)

__all__ = [
    "BatchResult",
    "Config",
    "Exchange",
    "ExchangeError",
    "LookupAnswer",
    "LookupResult",
    "connect",
    "to_pandas",
]
__version__ = "0.1.0"
