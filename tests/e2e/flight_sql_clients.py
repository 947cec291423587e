"""Drive the coordinator with the clients analysts already use: ADBC's
Flight SQL driver and pyarrow's plain Flight client, over mutual TLS.

Usage: flight_sql_clients.py < JOB_JSON
JOB_JSON (on standard input): {"address", "cert_dir", "purpose", "sql": [...], "table": [schema, table],
           "path": [dept, dataset]}
Prints one JSON object with what each step returned or the error it raised.
"""
import json
import sys
import urllib.parse

import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow.flight as flight
from adbc_driver_flightsql import DatabaseOptions


def read(cert_dir: str, name: str) -> str:
    with open(f"{cert_dir}/{name}") as f:
        return f.read()


def connect(job: dict, purpose: str | None):
    options = {
        DatabaseOptions.TLS_ROOT_CERTS.value: read(job["cert_dir"], "ca.crt"),
        DatabaseOptions.MTLS_CERT_CHAIN.value: read(job["cert_dir"], "client.crt"),
        DatabaseOptions.MTLS_PRIVATE_KEY.value: read(job["cert_dir"], "client.key"),
    }
    if purpose is not None:
        header = DatabaseOptions.RPC_CALL_HEADER_PREFIX.value
        options[header + "x-exchange-purpose"] = urllib.parse.quote(purpose)
        options[header + "x-exchange-user"] = urllib.parse.quote("ADBC 测试员")
    return flight_sql.connect(f"grpc+tls://{job['address']}", db_kwargs=options)


def run_sql(conn, sql: str) -> dict:
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            table = cur.fetch_arrow_table()
    except Exception as e:  # the driver's errors carry the server's status text
        return {"sql": sql[:200], "error": str(e)}
    first = table.slice(0, 1).to_pylist()
    return {
        "sql": sql[:200],
        "columns": table.column_names,
        "types": [str(t) for t in table.schema.types],
        "rows": table.num_rows,
        "first": first[0] if first else None,
    }


def catalog(conn, job: dict) -> dict:
    objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
    tables = []
    for cat in objects:
        for schema in cat["catalog_db_schemas"] or []:
            for t in schema["db_schema_tables"] or []:
                tables.append([cat["catalog_name"], schema["db_schema_name"], t["table_name"]])
    schema_name, table_name = job["table"]
    schema = conn.adbc_get_table_schema(table_name, db_schema_filter=schema_name)
    return {"tables": tables, "schema": {f.name: str(f.type) for f in schema}}


def plain_flight(job: dict) -> dict:
    cert = lambda n: read(job["cert_dir"], n).encode()
    client = flight.FlightClient(
        f"grpc+tls://{job['address']}",
        tls_root_certs=cert("ca.crt"),
        cert_chain=cert("client.crt"),
        private_key=cert("client.key"),
    )
    out = {}
    path = flight.FlightDescriptor.for_path(*job["path"])
    schema = client.get_schema(path).schema
    out["get_schema"] = {f.name: str(f.type) for f in schema}
    out["list_flights"] = [
        ["/".join(p.decode() for p in f.descriptor.path), len(f.schema)] for f in client.list_flights()
    ]
    try:
        client.get_flight_info(path)
        out["path_without_purpose"] = "accepted"
    except Exception as e:  # pyarrow raises ArrowInvalid for INVALID_ARGUMENT
        out["path_without_purpose"] = str(e)
    headers = [(b"x-exchange-purpose", urllib.parse.quote(job["purpose"]).encode())]
    options = flight.FlightCallOptions(headers=headers)
    info = client.get_flight_info(path, options)
    table = client.do_get(info.endpoints[0].ticket, options).read_all()
    out["path_query"] = {
        "info_schema": info.schema.names,
        "columns": table.column_names,
        "same_schema": info.schema.equals(table.schema),
        "rows": table.num_rows,
    }
    try:
        client.get_flight_info(flight.FlightDescriptor.for_command(b"\x08\x96\x01 not json"))
    except Exception as e:  # pyarrow raises ArrowInvalid for INVALID_ARGUMENT
        out["garbage_command"] = str(e)
    return out


def reflected_services(job: dict, address: str) -> list:
    """The services a server lists through gRPC reflection, as grpcurl's
    `list` would show them, with no proto file at hand."""
    import grpc
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    cert = lambda n: read(job["cert_dir"], n).encode()
    credentials = grpc.ssl_channel_credentials(cert("ca.crt"), cert("client.key"), cert("client.crt"))
    with grpc.secure_channel(address, credentials) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = sorted(database.get_services())
        # A method's input type resolves too, as grpcurl describe needs.
        described = database.FindFileContainingSymbol("exchange.v1.Catalog")
        return services + [f"file:{described.name}"]


def main() -> int:
    job = json.load(sys.stdin)
    out = {}
    with connect(job, job["purpose"]) as conn:
        out["catalog"] = catalog(conn, job)
        out["sql"] = [run_sql(conn, sql) for sql in job["sql"]]
    with connect(job, None) as conn:
        out["without_purpose"] = run_sql(conn, job["sql"][0])
    out["flight"] = plain_flight(job)
    out["reflection"] = {
        "coordinator": reflected_services(job, job["address"]),
        "node": reflected_services(job, job["node_address"]),
    }
    print(json.dumps(out, ensure_ascii=False, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
