"""Query the coordinator with pyarrow's standard Flight client over mutual TLS.

Usage: pyarrow_flight.py HOST:PORT CERT_DIR DATASET PURPOSE [WHERE]
Prints one JSON line: the columns, the row count and the first row.
"""
import json
import sys

import pyarrow.flight as flight


def main() -> int:
    address, cert_dir, dataset, purpose = sys.argv[1:5]
    where = sys.argv[5] if len(sys.argv) > 5 else ""

    def read(name: str) -> bytes:
        with open(f"{cert_dir}/{name}", "rb") as f:
            return f.read()

    client = flight.FlightClient(
        f"grpc+tls://{address}",
        tls_root_certs=read("ca.crt"),
        cert_chain=read("client.crt"),
        private_key=read("client.key"),
    )
    command = {"dataset": dataset, "purpose": purpose, "where": where, "user": "pyarrow test", "limit": 50}
    try:
        info = client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps(command)))
        table = client.do_get(info.endpoints[0].ticket).read_all()
    except flight.FlightError as e:
        print(json.dumps({"error": str(e)}, ensure_ascii=False))
        return 0
    first = table.slice(0, 1).to_pylist()
    print(json.dumps({"columns": table.column_names, "rows": table.num_rows, "first": first[0] if first else None}, ensure_ascii=False, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
